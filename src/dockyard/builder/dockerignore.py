""".dockerignore: which files of a context are not sent, with Docker's pattern rules.

Patterns use Go's filepath.Match syntax (`*`, `?`, `[...]`, `\\` escapes; none crosses a `/`)
plus `**`, which matches any number of directories. A pattern matches a path, or any parent
directory of it (so `build` excludes everything below build/). Lines starting with `!` are
exceptions that bring matches back; the last matching line wins. Paths and patterns are
relative to the context root; a leading `/` is ignored.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass


def read_patterns(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        if not line:
            continue
        cleaned = posixpath.normpath(line.replace("\\", "/") if os.sep == "\\" else line)
        cleaned = cleaned.lstrip("/") or "."
        out.append(("!" if negate else "") + cleaned)
    return out


def _component_regex(part: str) -> str:
    """One path component of a Go filepath.Match pattern as a regex (no `/` crossing)."""
    out = []
    i = 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = part.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = part[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        elif ch == "\\" and i + 1 < len(part):
            i += 1
            out.append(re.escape(part[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = pattern.split("/")
    pieces: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:.*/)?")
            continue
        pieces.append(_component_regex(part) + ("" if last else "/"))
    return re.compile("^" + "".join(pieces) + "$", re.S)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    exclusion: bool    # True for `!pattern`
    text: str


class IgnoreMatcher:
    def __init__(self, patterns: list[str]) -> None:
        self.rules = [_Rule(_pattern_regex(p[1:] if p.startswith("!") else p), p.startswith("!"),
                            p[1:] if p.startswith("!") else p) for p in patterns]
        self.has_exceptions = any(r.exclusion for r in self.rules)

    @staticmethod
    def _candidates(path: str) -> list[str]:
        parts = path.split("/")
        return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]

    def matches(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) is excluded."""
        path = posixpath.normpath(path).lstrip("/")
        candidates = self._candidates(path)
        excluded = False
        for rule in self.rules:
            if any(rule.regex.match(c) for c in candidates):
                excluded = not rule.exclusion
        return excluded

    def may_include_under(self, directory: str) -> bool:
        """False when `directory` is excluded and no exception could bring back anything below it."""
        if not self.matches(directory):
            return True
        directory = posixpath.normpath(directory).lstrip("/")
        for rule in self.rules:
            if not rule.exclusion:
                continue
            text = rule.text
            if "**" in text or text.startswith(directory + "/") or text == directory:
                return True
            # a wildcard in the directory part may cover it: compare component by component
            dparts, pparts = directory.split("/"), text.split("/")
            if len(pparts) > len(dparts) and all(
                    re.fullmatch(_component_regex(p), d) for p, d in zip(pparts, dparts)):
                return True
        return False


def walk_context(root: str, matcher: IgnoreMatcher) -> Iterator[str]:
    """The context's paths that are sent: directories before their contents, sorted; symlinks
    are listed, never followed."""
    def walk(rel: str) -> Iterator[str]:
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            child = f"{rel}/{name}" if rel else name
            path = os.path.join(root, child)
            is_dir = os.path.isdir(path) and not os.path.islink(path)
            if not matcher.matches(child):
                yield child
            elif not is_dir or not matcher.may_include_under(child):
                continue
            if is_dir:
                yield from walk(child)
    yield from walk("")
