"""The Dockerfile parser: directives, continuations, comments, JSON and shell forms, flags,
heredocs; stages. Nothing is expanded here (see dockyard.builder.shell); errors name the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument


class DockerfileError(InvalidArgument):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"Dockerfile parse error line {line}: {message}")
        self.line = line
        self.problem = message


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool
    chomp: bool


@dataclass
class Instruction:
    keyword: str
    args: list[str]
    json_form: bool
    flags: list[tuple[str, str | None]]
    line: int
    original: str
    heredocs: list[Heredoc] = field(default_factory=list)
    pairs: list[tuple[str, str | None]] = field(default_factory=list)
    sub: Instruction | None = None

    def flag(self, name: str) -> str | None:
        value = None
        for key, v in self.flags:
            if key == name:
                value = v if v is not None else "true"
        return value

    def flag_values(self, name: str) -> list[str]:
        return [v if v is not None else "true" for k, v in self.flags if k == name]


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    platform: str | None
    line: int
    instructions: list[Instruction]
    from_instruction: Instruction


@dataclass
class Dockerfile:
    directives: dict[str, str]
    escape: str
    meta_args: list[Instruction]
    stages: list[Stage]


# instruction -> the flags it takes
FLAGS: dict[str, tuple[str, ...]] = {
    "FROM": ("platform",),
    "RUN": ("mount", "network", "security"),
    "COPY": ("from", "chown", "chmod", "link", "parents", "exclude"),
    "ADD": ("chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
KEYWORDS = ("FROM", "RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "ENV", "LABEL", "ARG", "WORKDIR", "USER",
            "EXPOSE", "VOLUME", "HEALTHCHECK", "STOPSIGNAL", "ONBUILD", "MAINTAINER")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(?:(['\"])([A-Za-z0-9_.-]+)\2|([A-Za-z0-9_.-]+))")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")


@dataclass
class _Line:
    number: int
    text: str


def parse(text: str) -> Dockerfile:
    if text.startswith("\ufeff"):
        text = text[1:]
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    directives, first = _directives(raw)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(1, f"invalid escape token '{escape}' does not match ` or \\")
    instructions = _instructions(raw, first, escape)
    return _stages(instructions, directives, escape)


def _directives(raw: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    for i, line in enumerate(raw):
        m = _DIRECTIVE.match(line.strip())
        if not m:
            return found, i
        name = m.group(1).lower()
        if name not in ("syntax", "escape", "check"):
            return found, i  # an unknown directive is a comment, and ends the directives
        if name in found:
            raise DockerfileError(i + 1, f"only one {name} parser directive can be used")
        found[name] = m.group(2)
    return found, len(raw)


def _continues(line: str, escape: str) -> tuple[bool, str]:
    """Docker's rule: the escape character, then only blanks, at the end of a line."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return True, stripped[:-1]
    return False, line


def _instructions(raw: list[str], start: int, escape: str) -> list[Instruction]:
    out: list[Instruction] = []
    i = start
    while i < len(raw):
        line = raw[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        number = i + 1
        parts: list[str] = []
        more, piece = _continues(line, escape)
        parts.append(piece)
        i += 1
        while more and i < len(raw):
            nxt = raw[i]
            i += 1
            if nxt.strip().startswith("#") or not nxt.strip():
                continue  # comments and empty lines inside a continuation
            more, piece = _continues(nxt, escape)
            parts.append(piece)
        logical = "".join(parts).strip()
        ins, consumed = _instruction(logical, number, raw, i, escape)
        i = consumed
        out.append(ins)
    return out


def _split_keyword(logical: str) -> tuple[str, str]:
    m = re.match(r"(\S+)\s*(.*)$", logical, re.S)
    assert m is not None
    return m.group(1), m.group(2)


def _instruction(logical: str, number: int, raw: list[str], next_line: int, escape: str) -> tuple[Instruction, int]:
    word, rest = _split_keyword(logical)
    keyword = word.upper()
    if keyword not in KEYWORDS:
        raise DockerfileError(number, f"unknown instruction: {word}")
    original = f"{keyword} {rest}".strip() if rest else keyword
    flags, rest = _flags(keyword, rest, number)
    heredocs: list[Heredoc] = []
    if keyword in _HEREDOC_KEYWORDS and "<<" in rest and not rest.lstrip().startswith("["):
        heredocs, next_line = _heredocs(rest, number, raw, next_line)
    ins = Instruction(keyword, [], False, flags, number, original, heredocs)
    _arguments(ins, rest, number, escape)
    return ins, next_line


def _flags(keyword: str, rest: str, number: int) -> tuple[list[tuple[str, str | None]], str]:
    flags: list[tuple[str, str | None]] = []
    allowed = FLAGS.get(keyword, ())
    while rest.startswith("--"):
        m = re.match(r"--([A-Za-z0-9-]*)(?:=(\S*))?(?:\s+|$)", rest)
        if m is None:
            break
        name, value = m.group(1), m.group(2)
        if not name:
            break  # "--" alone: the end of the flags
        if name not in allowed:
            raise DockerfileError(number, f"unknown flag: --{name}")
        flags.append((name, _unquote_flag(value) if value is not None else None))
        rest = rest[m.end():]
    return flags, rest.strip()


def _unquote_flag(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _heredocs(rest: str, number: int, raw: list[str], i: int) -> tuple[list[Heredoc], int]:
    docs: list[Heredoc] = []
    for m in _HEREDOC.finditer(rest):
        chomp = m.group(1) == "-"
        quoted = m.group(2) is not None
        name = m.group(3) or m.group(4)
        body: list[str] = []
        while True:
            if i >= len(raw):
                raise DockerfileError(number, f"unterminated heredoc {name}")
            line = raw[i]
            i += 1
            check = line.lstrip("\t") if chomp else line
            if check == name:
                break
            body.append(check)
        content = "\n".join(body) + ("\n" if body else "")
        docs.append(Heredoc(name, content, not quoted, chomp))
    return docs, i


def _json_array(rest: str) -> list[str] | None:
    text = rest.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _need(ins: Instruction, rest: str, number: int) -> None:
    if not rest.strip():
        raise DockerfileError(number, f"{ins.keyword} requires at least one argument")


def _arguments(ins: Instruction, rest: str, number: int, escape: str) -> None:
    k = ins.keyword
    if k in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        _need(ins, rest, number)
        array = _json_array(rest)
        if array is not None:
            ins.args, ins.json_form = array, True
        elif k == "SHELL":
            raise DockerfileError(number, "SHELL requires the arguments to be in JSON form")
        else:
            ins.args = [rest] if rest else []
        if k == "RUN" and ins.json_form and not ins.args:
            raise DockerfileError(number, "RUN requires at least one argument")
    elif k in ("COPY", "ADD"):
        _need(ins, rest, number)
        array = _json_array(rest)
        if array is not None:
            ins.args, ins.json_form = array, True
        else:
            ins.args = _words(rest, escape)
        if len(ins.args) < 2 and not ins.heredocs:
            raise DockerfileError(number, f"{k} requires at least two arguments, but only one was provided. "
                                          "Destination could not be determined")
    elif k == "FROM":
        _need(ins, rest, number)
        ins.args = rest.split()
        if len(ins.args) not in (1, 3) or (len(ins.args) == 3 and ins.args[1].upper() != "AS"):
            raise DockerfileError(number, "FROM requires either one or three arguments")
    elif k in ("ENV", "LABEL"):
        _need(ins, rest, number)
        ins.pairs = _name_values(k, rest, number, escape)
        ins.args = [x for pair in ins.pairs for x in (pair[0], pair[1] or "")]
    elif k == "ARG":
        _need(ins, rest, number)
        for word in _words(rest, escape):
            name, sep, default = word.partition("=")
            if not name:
                raise DockerfileError(number, "ARG names can not be blank")
            ins.pairs.append((name, default if sep else None))
        ins.args = [w for w in _words(rest, escape)]
    elif k in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"):
        _need(ins, rest, number)
        ins.args = [rest]
    elif k == "EXPOSE":
        _need(ins, rest, number)
        ins.args = rest.split()
    elif k == "VOLUME":
        _need(ins, rest, number)
        array = _json_array(rest)
        if array is not None:
            ins.args, ins.json_form = array, True
        else:
            ins.args = rest.split()
    elif k == "HEALTHCHECK":
        _need(ins, rest, number)
        kind, _, command = rest.partition(" ")
        kind_up = kind.upper()
        if kind_up == "NONE":
            if command.strip():
                raise DockerfileError(number, "HEALTHCHECK NONE takes no arguments")
            ins.args = ["NONE"]
        elif kind_up == "CMD":
            command = command.strip()
            if not command:
                raise DockerfileError(number, "Missing command after HEALTHCHECK CMD")
            array = _json_array(command)
            if array is not None:
                ins.args, ins.json_form = ["CMD", *array], True
            else:
                ins.args = ["CMD", command]
        else:
            raise DockerfileError(number, f"Unknown type \"{kind}\" in HEALTHCHECK (try CMD)")
    elif k == "ONBUILD":
        _need(ins, rest, number)
        word, _ = _split_keyword(rest)
        inner = word.upper()
        if inner in ("ONBUILD",):
            raise DockerfileError(number, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if inner in ("FROM", "MAINTAINER"):
            raise DockerfileError(number, f"{inner} isn't allowed as an ONBUILD trigger")
        ins.sub, _ = _instruction(rest, number, [], 0, escape)
        ins.args = [rest]


def _words(rest: str, escape: str) -> list[str]:
    """Words split on whitespace outside quotes; quotes and escapes kept as written."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(rest):
        ch = rest[i]
        if ch == escape and quote != "'" and i + 1 < len(rest):
            current.append(ch + rest[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
            current.append(ch)
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if current:
        words.append("".join(current))
    return words


def _name_values(keyword: str, rest: str, number: int, escape: str) -> list[tuple[str, str | None]]:
    words = _words(rest, escape)
    if not words:
        raise DockerfileError(number, f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        # the legacy form: ENV key value with spaces
        m = re.match(r"(\S+)\s+(.*)$", rest.strip(), re.S)
        if m is None:
            raise DockerfileError(number, f"{keyword} must have two arguments")
        return [(m.group(1), m.group(2).strip())]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(number, f"Syntax error - can't find = in \"{word}\". Must be of the form: name=value")
        if not name:
            raise DockerfileError(number, f"{keyword} names can not be blank")
        pairs.append((name, value))
    return pairs


def _stages(instructions: list[Instruction], directives: dict[str, str], escape: str) -> Dockerfile:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            platform = ins.flag("platform")
            name = ins.args[2].lower() if len(ins.args) == 3 else None
            if name is not None and not re.fullmatch(r"[a-z][a-z0-9-_.]*", name):
                raise DockerfileError(ins.line, f"invalid name for build stage: \"{ins.args[2]}\", "
                                                "name can't start with a number or contain symbols")
            if name is not None and any(s.name == name for s in stages):
                raise DockerfileError(ins.line, f"duplicate name {name}")
            stages.append(Stage(len(stages), ins.args[0], name, platform, ins.line, [], ins))
        elif not stages:
            if ins.keyword != "ARG":
                raise DockerfileError(ins.line, f"no build stage in current context: {ins.keyword} needs a FROM "
                                                "before it")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(1, "the Dockerfile has no FROM instruction (file with no instructions)")
    return Dockerfile(directives, escape, meta, stages)
