"""The Dockerfile parser: text in, stages of instructions out, with Docker's syntax rules.

What is handled here, as Docker's parser (buildkit ``frontend/dockerfile/parser`` and
``instructions``) does it:

- parser directives (``# syntax=``, ``# escape=``, ``# check=``) on the first lines only;
- comment lines, also inside continuations; empty continuation lines are skipped;
- line continuation with the escape character at the end of a line (blanks may follow it);
- JSON form, used only when the rest of the line is a JSON array (else the shell form);
- ``--flags`` after the keyword, checked against the flags each instruction takes;
- heredocs (``<<EOF``, ``<<-EOF``, ``<<'EOF'``) on RUN, COPY and ADD;
- ENV/LABEL name=value pairs and the legacy ``ENV name value`` form, ARG names and defaults.

Nothing is expanded: values keep their quotes and ``$VARS`` (see ``dockyard.builder.shell``).
Every error is a `DockerfileError` naming the line where the instruction starts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dockyard.builder.shell import Lexer, ShellError
from dockyard.errors import InvalidArgument

KEYWORDS = frozenset({"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                      "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                      "WORKDIR"})
DIRECTIVES = frozenset({"syntax", "escape", "check"})

_BOOL, _STRING, _STRINGS = "bool", "string", "strings"
# the flags each instruction takes, and their kind (a repeatable "strings" flag may appear often)
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _STRING},
    "RUN": {"mount": _STRINGS, "network": _STRING, "security": _STRING},
    "COPY": {"from": _STRING, "chown": _STRING, "chmod": _STRING, "link": _BOOL, "parents": _BOOL,
             "exclude": _STRINGS},
    "ADD": {"chown": _STRING, "chmod": _STRING, "link": _BOOL, "keep-git-dir": _BOOL, "checksum": _STRING,
            "unpack": _BOOL, "exclude": _STRINGS},
    "HEALTHCHECK": {"interval": _STRING, "timeout": _STRING, "start-period": _STRING,
                    "start-interval": _STRING, "retries": _STRING},
}
_HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
_NOT_ONBUILD = frozenset({"FROM", "MAINTAINER"})

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$", re.S)
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


class DockerfileError(InvalidArgument):
    """A Dockerfile that does not parse; `line` is where the instruction starts (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"Dockerfile parse error line {line}: {message}")
        self.line = line
        self.problem = message


@dataclass(frozen=True)
class Heredoc:
    name: str      # the delimiter word, quotes removed
    content: str   # the body, every line ending in "\n"; leading tabs gone when chomp
    expand: bool   # False when the delimiter was quoted: the body is taken literally
    chomp: bool    # <<-EOF


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
        """The last value given to --name; "true" for a boolean flag given without a value."""
        values = self.flag_values(name)
        return values[-1] if values else None

    def flag_values(self, name: str) -> list[str]:
        """Every value given to --name, in order (for repeatable flags such as --mount)."""
        return ["true" if value is None else value for key, value in self.flags if key == name]


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


def parse(text: str) -> Dockerfile:
    """Parse a whole Dockerfile; raises DockerfileError."""
    lines = _physical_lines(text)
    directives = _read_directives(lines)
    escape = directives.get("escape", "\\")
    instructions = _LineReader(lines, escape).instructions()
    if not instructions:
        raise DockerfileError(max(len(lines), 1), "file with no instructions (no FROM)")
    meta_args, stages = _group_stages(instructions)
    return Dockerfile(directives, escape, meta_args, stages)


# -- physical lines and directives ---------------------------------------------------------------

def _physical_lines(text: str) -> list[str]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line starts no new line
    return lines


def _read_directives(lines: list[str]) -> dict[str, str]:
    """The `# name=value` lines at the very top; the first other line ends them."""
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.lstrip()
        if not stripped.startswith("#"):
            break
        match = _DIRECTIVE.match(stripped[1:].lstrip())
        if match is None or match.group(1).lower() not in DIRECTIVES:
            break
        name, value = match.group(1).lower(), match.group(2)
        if name in found:
            raise DockerfileError(number, f"only one {name} parser directive can be used")
        if name == "escape" and value not in ("\\", "`"):
            raise DockerfileError(number, f"invalid escape token '{value}' does not match ` or \\")
        found[name] = value
    return found


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")


class _LineReader:
    """Walks the physical lines, joining continuations and reading heredoc bodies."""

    def __init__(self, lines: list[str], escape: str) -> None:
        self.lines = lines
        self.escape = escape
        self.pos = 0  # index of the next physical line
        self.continuation = _continuation_regex(escape)

    def instructions(self) -> list[Instruction]:
        out: list[Instruction] = []
        while self.pos < len(self.lines):
            logical = self._logical_line()
            if logical is None:
                continue
            start, text = logical
            instruction = _parse_instruction(text, start, self.escape)
            self._attach_heredocs(instruction, text, start)
            out.append(instruction)
        return out

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """The line without its continuation mark, and whether the instruction goes on."""
        match = self.continuation.search(line)
        if match is None:
            return line, False
        return line[:match.start()] + (match.group(1) or ""), True

    def _logical_line(self) -> tuple[int, str] | None:
        """The next instruction's text with continuations joined, and its first line number."""
        start = self.pos + 1
        first = self.lines[self.pos].lstrip()
        self.pos += 1
        if first.startswith("#"):
            return None
        text, more = self._trim_continuation(first)
        if not more and not text.strip():
            return None
        parts = [text]
        while more and self.pos < len(self.lines):
            line = self.lines[self.pos]
            self.pos += 1
            if _is_comment(line) or not line.strip():
                continue
            text, more = self._trim_continuation(line)
            parts.append(text)
        joined = "".join(parts)
        return (start, joined) if joined.strip() else None

    def _attach_heredocs(self, instruction: Instruction, text: str, start: int) -> None:
        target = instruction.sub if instruction.keyword == "ONBUILD" else instruction
        if target is None or target.keyword not in _HEREDOC_KEYWORDS or target.json_form or "<<" not in text:
            return
        docs = [self._read_heredoc(word, start) for word in heredoc_words(text)]
        instruction.heredocs = docs
        if target is not instruction:
            target.heredocs = docs
        if target.keyword in ("COPY", "ADD"):
            _check_copy_heredocs(target)

    def _read_heredoc(self, doc: Heredoc, start: int) -> Heredoc:
        body: list[str] = []
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            self.pos += 1
            if doc.chomp:
                line = line.lstrip("\t")
            if line == doc.name:
                content = "".join(f"{piece}\n" for piece in body)
                return Heredoc(doc.name, content, doc.expand, doc.chomp)
            body.append(line)
        raise DockerfileError(start, f"unterminated heredoc {doc.name}")


# -- heredoc words --------------------------------------------------------------------------------

def heredoc_words(text: str) -> list[Heredoc]:
    """The heredocs a line opens (`<<EOF`, `<<-EOF`, `<<"EOF"`), in order; bodies left empty."""
    lexer = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process_words(text, {})
    except ShellError:
        return []
    docs = []
    for word in words:
        doc = parse_heredoc_word(word)
        if doc is not None:
            docs.append(doc)
    return docs


def parse_heredoc_word(word: str) -> Heredoc | None:
    """A heredoc from one word such as `<<-"EOF"`, or None when the word is not one."""
    match = _HEREDOC_WORD.match(word)
    if match is None or not match.group(3):
        return None
    rest = match.group(3)
    plain = Lexer("\\", skip_unset=True).process_words(rest, {})
    if len(plain) != 1:
        return None
    raw = Lexer("\\", raw_quotes=True, skip_unset=True).process_words(rest, {})
    quotes_plain = plain[0].count("'") + plain[0].count('"')
    quotes_raw = raw[0].count("'") + raw[0].count('"') if len(raw) == 1 else -1
    return Heredoc(plain[0], "", quotes_plain == quotes_raw, match.group(2) == "-")


def _check_copy_heredocs(ins: Instruction) -> None:
    if ins.args and parse_heredoc_word(ins.args[-1]) is not None:
        raise DockerfileError(ins.line, f"{ins.keyword} cannot accept a heredoc as a destination")


# -- one instruction ------------------------------------------------------------------------------

def _parse_instruction(text: str, line: int, escape: str) -> Instruction:
    head = _WHITESPACE.split(text.strip(), maxsplit=1)
    word, rest = head[0], head[1] if len(head) == 2 else ""
    keyword = word.upper()
    if keyword not in KEYWORDS:
        raise DockerfileError(line, f"unknown instruction: {word}")
    raw_flags, rest = extract_flags(rest, escape)
    original = f"{keyword} {head[1].strip()}" if len(head) == 2 else keyword
    instruction = Instruction(keyword, [], False, [], line, original)
    try:
        instruction.flags = _check_flags(keyword, raw_flags, rest)
        _ARGUMENT_PARSERS[keyword](instruction, rest.strip(), escape)
    except InvalidArgument as e:
        if isinstance(e, DockerfileError):
            raise
        raise DockerfileError(line, str(e)) from None
    return instruction


def extract_flags(rest: str, escape: str) -> tuple[list[str], str]:
    """Split leading `--name[=value]` words (quotes and escapes removed) from the arguments.

    A lone `--` ends the flags and is dropped."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            return flags, rest[pos:]
        word, pos = _flag_word(rest, pos, escape)
        if word == "--":
            return flags, rest[pos:]
        flags.append(word)


def _flag_word(text: str, pos: int, escape: str) -> tuple[str, int]:
    """One flag word starting at `pos`, unquoted and unescaped, and the position after it."""
    out: list[str] = []
    quote = ""
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if not quote and ch.isspace():
            break
        if not quote and ch in "'\"":
            quote = ch
            continue
        if quote and ch == quote:
            quote = ""
            continue
        if ch == escape:
            if pos == len(text):
                break
            ch = text[pos]
            pos += 1
        out.append(ch)
    return "".join(out), pos


def _check_flags(keyword: str, raw: list[str], rest: str) -> list[tuple[str, str | None]]:
    if keyword == "HEALTHCHECK" and rest.strip().upper() == "NONE":
        return []  # Docker does not look at the flags of HEALTHCHECK NONE
    allowed = FLAGS.get(keyword, {})
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for word in raw:
        flag_name, sep, value = word.partition("=")
        name = flag_name[2:]
        kind = allowed.get(name)
        if kind is None:
            raise InvalidArgument(f"unknown flag: {flag_name}")
        if name in seen and kind != _STRINGS:
            raise InvalidArgument(f"duplicate flag specified: {flag_name}")
        seen.add(name)
        out.append((name, _flag_value(kind, flag_name, value, bool(sep))))
    return out


def _flag_value(kind: str, flag_name: str, value: str, has_value: bool) -> str | None:
    if kind != _BOOL:
        if not has_value:
            raise InvalidArgument(f"missing a value on flag: {flag_name}")
        return value
    if not has_value:
        return None
    if value == "":
        raise InvalidArgument(f"missing a value on flag: {flag_name}")
    if value.lower() not in ("true", "false"):
        raise InvalidArgument(f"expecting boolean value for flag {flag_name}, not: {value}")
    return value.lower()


# -- arguments, per instruction -------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: not JSON for Go's decoder either


def json_array(rest: str) -> list[str] | None:
    """The rest of a line as a JSON array of strings; None when it is not a JSON array."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise InvalidArgument("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def whitespace_words(rest: str) -> list[str]:
    return [w for w in _WHITESPACE.split(rest) if w] if rest else []


def quoted_words(rest: str, escape: str) -> list[str]:
    """Words split on whitespace outside quotes; quotes and escapes stay as written."""
    words: list[str] = []
    current: list[str] = []
    started = False
    quote = ""
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        pos += 1
        if not quote and ch.isspace():
            if started:
                words.append("".join(current))
            current, started = [], False
            continue
        started = True
        if ch == escape and quote != "'":
            if pos == len(rest):
                break  # an escape at the very end is dropped
            current.append(ch + rest[pos])
            pos += 1
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        current.append(ch)
    if started:
        words.append("".join(current))
    return words


def _maybe_json(ins: Instruction, rest: str) -> None:
    array = json_array(rest)
    if array is not None:
        ins.args, ins.json_form = array, True
    elif rest:
        ins.args = [rest]


def _command(ins: Instruction, rest: str, escape: str) -> None:
    _maybe_json(ins, rest)
    if ins.keyword == "RUN" and not ins.args:
        raise InvalidArgument("RUN requires at least one argument")


def _shell(ins: Instruction, rest: str, escape: str) -> None:
    _maybe_json(ins, rest)
    if not ins.args:
        raise InvalidArgument("SHELL requires at least one argument")
    if not ins.json_form:
        raise InvalidArgument("SHELL requires the arguments to be in JSON form")


def _copy(ins: Instruction, rest: str, escape: str) -> None:
    array = json_array(rest)
    if array is not None:
        ins.args, ins.json_form = array, True
    else:
        ins.args = whitespace_words(rest)
    if len(ins.args) < 2:
        raise InvalidArgument(f"{ins.keyword} requires at least two arguments, but only one was provided. "
                              "Destination could not be determined")


def _from(ins: Instruction, rest: str, escape: str) -> None:
    ins.args = whitespace_words(rest)
    if len(ins.args) == 3 and ins.args[1].lower() == "as":
        if not _STAGE_NAME.match(ins.args[2].lower()):
            raise InvalidArgument(f'invalid name for build stage: "{ins.args[2]}", '
                                  "name can't start with a number or contain symbols")
    elif len(ins.args) != 1:
        raise InvalidArgument("FROM requires either one or three arguments")


def _name_values(ins: Instruction, rest: str, escape: str) -> None:
    """ENV and LABEL: `a=1 b="x y"`, or the legacy `name value with spaces`."""
    words = quoted_words(rest, escape)
    if not words:
        raise InvalidArgument(f"{ins.keyword} requires at least one argument")
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise InvalidArgument(f"{ins.keyword} must have two arguments")
        ins.pairs = [(parts[0], parts[1])]
    else:
        for word in words:
            if "=" not in word:
                raise InvalidArgument(f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value')
            name, _, value = word.partition("=")
            ins.pairs.append((name, value))
    if any(not name for name, _ in ins.pairs):
        raise InvalidArgument(f"{ins.keyword} names can not be blank")
    ins.args = [item for name, value in ins.pairs for item in (name, value or "")]


def _arg(ins: Instruction, rest: str, escape: str) -> None:
    ins.args = quoted_words(rest, escape)
    if not ins.args:
        raise InvalidArgument("ARG requires at least one argument")
    for word in ins.args:
        name, sep, default = word.partition("=")
        if not name:
            raise InvalidArgument("ARG names can not be blank")
        ins.pairs.append((name, default if sep else None))


def _single(ins: Instruction, rest: str, escape: str) -> None:
    if not rest:
        raise InvalidArgument(f"{ins.keyword} requires exactly one argument")
    ins.args = [rest]


def _expose(ins: Instruction, rest: str, escape: str) -> None:
    ins.args = whitespace_words(rest)
    if not ins.args:
        raise InvalidArgument("EXPOSE requires at least one argument")


def _volume(ins: Instruction, rest: str, escape: str) -> None:
    array = json_array(rest)
    if array is not None:
        ins.args, ins.json_form = array, True
    else:
        ins.args = whitespace_words(rest)
    if not ins.args:
        raise InvalidArgument("VOLUME requires at least one argument")
    if any(not value.strip() for value in ins.args):
        raise InvalidArgument("VOLUME specified can not be an empty string")


def _healthcheck(ins: Instruction, rest: str, escape: str) -> None:
    head = _WHITESPACE.split(rest, maxsplit=1)
    kind = head[0].upper()
    command = head[1] if len(head) == 2 else ""
    if not kind:
        raise InvalidArgument("HEALTHCHECK requires at least one argument")
    if kind == "NONE":
        if command:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        ins.args = ["NONE"]
        return
    if kind != "CMD":
        raise InvalidArgument(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    probe = Instruction("CMD", [], False, [], ins.line, "")
    _maybe_json(probe, command)
    if not probe.args:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    ins.args, ins.json_form = ["CMD", *probe.args], probe.json_form


def _onbuild(ins: Instruction, rest: str, escape: str) -> None:
    if not rest:
        raise InvalidArgument("ONBUILD requires at least one argument")
    trigger = _WHITESPACE.split(rest, maxsplit=1)[0].upper()
    if trigger == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in _NOT_ONBUILD:
        raise InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
    ins.args = [rest]
    ins.sub = _parse_instruction(rest, ins.line, escape)


_ARGUMENT_PARSERS = {
    "RUN": _command, "CMD": _command, "ENTRYPOINT": _command, "SHELL": _shell,
    "COPY": _copy, "ADD": _copy, "FROM": _from, "ENV": _name_values, "LABEL": _name_values,
    "ARG": _arg, "WORKDIR": _single, "USER": _single, "STOPSIGNAL": _single, "MAINTAINER": _single,
    "EXPOSE": _expose, "VOLUME": _volume, "HEALTHCHECK": _healthcheck, "ONBUILD": _onbuild,
}


# -- stages ----------------------------------------------------------------------------------------

def _group_stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[Stage]]:
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            stage = _new_stage(len(stages), ins)
            if stage.name is not None and any(s.name == stage.name for s in stages):
                raise DockerfileError(ins.line, f"duplicate name {stage.name}")
            stages.append(stage)
        elif stages:
            stages[-1].instructions.append(ins)
        elif ins.keyword == "ARG":
            meta_args.append(ins)
        else:
            raise DockerfileError(ins.line, f"no build stage in current context: {ins.keyword} needs a FROM before it")
    if not stages:
        raise DockerfileError(instructions[-1].line, "dockerfile contains no stages to build")
    return meta_args, stages


def _new_stage(index: int, ins: Instruction) -> Stage:
    name = ins.args[2].lower() if len(ins.args) == 3 else None
    return Stage(index, ins.args[0], name, ins.flag("platform"), ins.line, [], ins)
