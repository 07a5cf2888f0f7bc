""".dockerignore: which paths of a build context are left out, with Docker's rules.

The rules are those of moby/patternmatcher and its ``ignorefile`` reader:

- a pattern is a Go ``filepath.Match`` pattern (``*`` and ``?`` never cross a ``/``, ``[...]``
  classes, ``\\`` escapes) plus ``**``, which matches any number of directories (also none);
- a pattern matches a path when it matches the path itself or one of its parent directories,
  so ``build`` leaves out everything below ``build/``;
- ``!pattern`` is an exception: it brings back what an earlier pattern left out; for every
  path the last pattern that matches decides;
- patterns are cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped, so
  ``/a/./b/`` and ``a/b`` are the same pattern.
"""

from __future__ import annotations

import os
import posixpath
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

_REGEX_ESCAPE = frozenset(".+()|{}$")


def go_clean(path: str) -> str:
    """Go's filepath.Clean on a '/'-separated path ("" becomes ".", "//a" becomes "/a")."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file: comments and blank lines dropped, paths cleaned."""
    patterns = []
    for line in text.removeprefix("\ufeff").splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        exception = pattern.startswith("!")
        if exception:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if exception else pattern)
    return patterns


# -- one pattern ------------------------------------------------------------------------------------

def _check_syntax(pattern: str) -> None:
    """Reject what Go's filepath.Match rejects: a trailing '\\', a bad or unclosed '[...]'."""
    pos = 0
    while pos < len(pattern):
        ch = pattern[pos]
        if ch == "\\":
            if pos + 1 == len(pattern):
                raise _bad_pattern(pattern)
            pos += 2
        elif ch == "[":
            pos = _check_class(pattern, pos + 1)
        else:
            pos += 1


def _check_class(pattern: str, pos: int) -> int:
    """Check a class body starting after '['; the position after its ']'."""
    if pos < len(pattern) and pattern[pos] == "^":
        pos += 1
    ranges = 0
    while True:
        if pos >= len(pattern):
            raise _bad_pattern(pattern)
        if pattern[pos] == "]" and ranges > 0:
            return pos + 1
        pos = _class_char(pattern, pos)
        if pos < len(pattern) and pattern[pos] == "-":
            pos = _class_char(pattern, pos + 1)
        ranges += 1


def _class_char(pattern: str, pos: int) -> int:
    if pos >= len(pattern) or pattern[pos] in "-]":
        raise _bad_pattern(pattern)
    if pattern[pos] == "\\":
        pos += 1
        if pos >= len(pattern):
            raise _bad_pattern(pattern)
    return pos + 1


def _bad_pattern(pattern: str) -> InvalidArgument:
    return InvalidArgument(f"syntax error in pattern: {pattern!r}")


@dataclass
class _Pattern:
    """A compiled pattern; `kind` is how it matches: exact, prefix, suffix or regex."""

    text: str
    exception: bool
    kind: str = "exact"
    regex: re.Pattern[str] | None = None
    dirs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dirs = self.text.split("/")
        self._compile()

    def _compile(self) -> None:
        out: list[str] = []
        kind = "exact"
        in_class = False
        text = self.text
        pos = 0
        step = 0
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch == "*" and not in_class:
                if pos < len(text) and text[pos] == "*":
                    pos += 1
                    if pos < len(text) and text[pos] == "/":
                        pos += 1
                    if pos == len(text):
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            out.append(".*")
                            kind = "regex"
                    else:
                        out.append("(.*/)?")
                        kind = "regex"
                    if step == 0:
                        kind = "suffix"
                else:
                    out.append("[^/]*")
                    kind = "regex"
            elif ch == "?" and not in_class:
                out.append("[^/]")
                kind = "regex"
            elif ch == "\\":
                if pos < len(text):
                    out.append(re.escape(text[pos]))
                    pos += 1
                    kind = "regex"
                else:
                    out.append(re.escape(ch))
            elif ch == "[" and not in_class:
                in_class = True
                out.append("[")
                kind = "regex"
            elif ch == "]" and in_class:
                in_class = False
                out.append("]")
            elif ch in _REGEX_ESCAPE or (in_class and ch in "[&~"):
                out.append("\\" + ch)
            elif ch == "]":
                out.append("\\]")
                kind = "regex"
            else:
                out.append(ch if in_class else re.escape(ch))
            step += 1
        self.kind = kind
        if kind == "regex":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.regex = re.compile("^" + "".join(out) + "$", re.DOTALL)

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None

    def match_or_parent(self, path: str) -> bool:
        if self.match(path):
            return True
        parts = path.split("/")
        return any(self.match("/".join(parts[:i])) for i in range(1, len(parts)))


def component_matches(pattern: str, name: str) -> bool:
    """Whether one pattern component (Go's filepath.Match syntax) matches one path component."""
    return _Pattern(pattern, False).match(name)


# -- the matcher ---------------------------------------------------------------------------------------

class IgnoreMatcher:
    """Decides which context paths a .dockerignore leaves out."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            exception = text.startswith("!")
            if exception:
                if text == "!":
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                text = text[1:].strip()
            text = go_clean(text)
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]
            _check_syntax(text)
            self.patterns.append(_Pattern(text, exception))
        self.has_exceptions = any(p.exception for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether `path` (relative to the context, '/'-separated) is left out."""
        path = go_clean(path).lstrip("/") or "."
        if path == ".":
            return False  # the context root itself is never left out
        excluded = False
        for pattern in self.patterns:
            # an exclusion only matters once something matched, an inclusion only before
            if pattern.exception != excluded:
                continue
            if pattern.match_or_parent(path):
                excluded = not pattern.exception
        return excluded

    def may_include_under(self, directory: str) -> bool:
        """False when `directory` is left out and no exception could bring back anything
        below it, so a walker can skip the whole directory."""
        if not self.matches(directory):
            return True
        parts = go_clean(directory).strip("/").split("/")
        return any(self._could_reach(p, parts) for p in self.patterns if p.exception)

    @staticmethod
    def _could_reach(pattern: _Pattern, parts: list[str]) -> bool:
        """Whether an exception pattern might match a path below the directory `parts`."""
        for index, name in enumerate(parts):
            if index >= len(pattern.dirs):
                return True  # it matches the directory or a parent: be safe and look inside
            component = pattern.dirs[index]
            if "**" in component:
                return True
            if not component_matches(component, name):
                return False
        return True


def walk_context(root: str, matcher: IgnoreMatcher) -> Iterator[str]:
    """The paths of the context that are sent, relative and '/'-separated, sorted by name with
    each directory before its contents. Symlinks are listed, never followed. A left-out
    directory is still listed (just before) when an exception brings back something inside it,
    as Docker sends the parents of every file it sends."""
    yield from _walk(root, "", matcher, [])


def _walk(root: str, rel: str, matcher: IgnoreMatcher, pending: list[str]) -> Iterator[str]:
    directory = os.path.join(root, rel) if rel else root
    with os.scandir(directory) as listing:
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if not matcher.matches(child):
            yield from pending
            pending.clear()
            yield child
            if is_dir:
                yield from _walk(root, child, matcher, pending)
        elif is_dir and matcher.may_include_under(child):
            pending.append(child)
            yield from _walk(root, child, matcher, pending)
            if pending and pending[-1] == child:
                pending.pop()
