"""The Dockerfile parser: syntax, per-instruction arguments, flags, heredocs, stages, errors."""

from __future__ import annotations

import pytest

from dockyard.builder.dockerfile import (
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    parse,
)
from dockyard.errors import InvalidArgument


def only(text: str) -> Instruction:
    """The single instruction of a one-stage Dockerfile after `FROM scratch`."""
    parsed = parse("FROM scratch\n" + text)
    assert len(parsed.stages) == 1
    (ins,) = parsed.stages[0].instructions
    return ins


def parse_error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    return info.value


# -- the error type -----------------------------------------------------------------------------

def test_error_names_the_line_and_is_an_invalid_argument() -> None:
    err = parse_error("FROM scratch\n\nFOO bar\n")
    assert isinstance(err, InvalidArgument)
    assert str(err) == "Dockerfile parse error line 3: unknown instruction: FOO"
    assert err.line == 3
    assert err.problem == "unknown instruction: FOO"


# -- a complete file ---------------------------------------------------------------------------

FULL = """\
# syntax=docker/dockerfile:1
# check=skip=all
ARG BASE=alpine:3.20
ARG VERSION
FROM --platform=$BUILDPLATFORM ${BASE} AS Build
RUN --mount=type=cache,target=/root/.cache \\
    --mount=type=secret,id=tok \\
    apk add curl
FROM scratch
COPY --from=build /out /out
"""


def test_full_file_stages_and_meta_args() -> None:
    parsed = parse(FULL)
    assert isinstance(parsed, Dockerfile)
    assert parsed.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}
    assert parsed.escape == "\\"
    assert [a.pairs for a in parsed.meta_args] == [[("BASE", "alpine:3.20")], [("VERSION", None)]]
    first, second = parsed.stages
    assert (first.index, first.base, first.name, first.platform, first.line) == \
        (0, "${BASE}", "build", "$BUILDPLATFORM", 5)
    assert first.from_instruction.keyword == "FROM"
    (run,) = first.instructions
    assert run.line == 6
    assert run.flag_values("mount") == ["type=cache,target=/root/.cache", "type=secret,id=tok"]
    assert run.flag("mount") == "type=secret,id=tok"
    assert run.args == ["apk add curl"]
    assert (second.index, second.base, second.name, second.platform) == (1, "scratch", None, None)
    assert second.instructions[0].flag("from") == "build"


# -- lines: comments, continuations, CRLF, BOM --------------------------------------------------

@pytest.mark.parametrize(("text", "args", "line"), [
    ("RUN echo hi", ["echo hi"], 2),
    ("  run   echo hi  ", ["echo hi"], 2),
    ("RUN echo \\\n  hi", ["echo   hi"], 2),
    ("RUN echo \\   \n  hi", ["echo   hi"], 2),                       # blanks after the escape
    ("RUN a \\\n# a comment\n   # indented comment\n b", ["a  b"], 2),  # comments inside
    ("RUN a \\\n\n   \n b", ["a  b"], 2),                             # empty continuation lines
    ("\n\n# comment\nRUN x", ["x"], 5),
    ("RUN a\\\\\nRUN b", None, 2),                                     # escaped escape: no continuation
    ("RUN a \\", ["a"], 2),                                            # continuation at end of file
])
def test_lines(text: str, args: list[str] | None, line: int) -> None:
    parsed = parse("FROM scratch\n" + text)
    first = parsed.stages[0].instructions[0]
    if args is not None:
        assert first.args == args
    assert first.line == line


def test_escaped_escape_at_end_of_line_is_not_a_continuation() -> None:
    runs = parse("FROM scratch\nRUN a\\\\\nRUN b\n").stages[0].instructions
    assert [r.args for r in runs] == [["a\\\\"], ["b"]]


def test_crlf_and_bom() -> None:
    parsed = parse("\ufeff# escape=`\r\nFROM scratch\r\nRUN a `\r\n  b\r\nENV X=1\r\n")
    assert parsed.escape == "`"
    run, env = parsed.stages[0].instructions
    assert run.args == ["a   b"]
    assert env.pairs == [("X", "1")]


def test_original_text_joins_continuations() -> None:
    ins = only("run apk add \\\n  x\n")
    assert ins.keyword == "RUN"
    assert ins.original == "RUN apk add   x"
    assert only("COPY --from=a x y").original == "COPY --from=a x y"
    assert parse("FROM scratch").stages[0].from_instruction.original == "FROM scratch"


# -- directives ----------------------------------------------------------------------------------

def test_escape_directive_backtick() -> None:
    parsed = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  /s\nENV P=c:\\x y=a` b\n")
    assert parsed.escape == "`"
    run, env = parsed.stages[0].instructions
    assert run.args == ["dir c:\\   /s"]
    assert env.pairs == [("P", "c:\\x"), ("y", "a` b")]


@pytest.mark.parametrize(("text", "directives", "escape"), [
    ("# ESCAPE = `\nFROM scratch", {"escape": "`"}, "`"),
    ("#syntax=x\n#escape=\\\nFROM scratch", {"syntax": "x", "escape": "\\"}, "\\"),
    ("# comment\n# escape=`\nFROM scratch", {}, "\\"),          # a comment ends the directives
    ("\n# escape=`\nFROM scratch", {}, "\\"),                    # so does a blank line
    ("FROM scratch\n# escape=`\n", {}, "\\"),                    # and an instruction
    ("# unknown=1\n# escape=`\nFROM scratch", {}, "\\"),         # an unknown directive is a comment
])
def test_directives(text: str, directives: dict[str, str], escape: str) -> None:
    parsed = parse(text)
    assert parsed.directives == directives
    assert parsed.escape == escape


@pytest.mark.parametrize(("text", "line", "message"), [
    ("# escape=x\nFROM scratch", 1, "invalid escape token 'x' does not match ` or \\"),
    ("# escape=`\n# escape=\\\nFROM scratch", 2, "only one escape parser directive can be used"),
])
def test_directive_errors(text: str, line: int, message: str) -> None:
    err = parse_error(text)
    assert (err.line, err.problem) == (line, message)


# -- RUN, CMD, ENTRYPOINT, SHELL --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "args", "json_form"), [
    ('RUN ["echo", "a b"]', ["echo", "a b"], True),
    ('RUN   [ "echo" ]  ', ["echo"], True),
    ("RUN echo [a]", ["echo [a]"], False),
    ("CMD [not json", ["[not json"], False),
    ("CMD ['single', 'quotes']", ["['single', 'quotes']"], False),
    ('CMD ["a"] trailing', ['["a"] trailing'], False),
    ("CMD [NaN]", ["[NaN]"], False),
    ("CMD", [], False),
    ("CMD []", [], True),
    ('ENTRYPOINT ["/bin/app", "--flag"]', ["/bin/app", "--flag"], True),
    ("ENTRYPOINT exec app", ["exec app"], False),
    ('SHELL ["/bin/bash", "-c"]', ["/bin/bash", "-c"], True),
    ('RUN echo "it\'s" \'$HOME\'', ['echo "it\'s" \'$HOME\''], False),
])
def test_command_forms(text: str, args: list[str], json_form: bool) -> None:
    ins = only(text)
    assert (ins.args, ins.json_form) == (args, json_form)


@pytest.mark.parametrize(("text", "message"), [
    ("RUN", "RUN requires at least one argument"),
    ("RUN []", "RUN requires at least one argument"),
    ("RUN --network=none", "RUN requires at least one argument"),
    ('RUN ["a", 1]', "when using JSON array syntax, arrays must be comprised of strings only"),
    ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
    ("SHELL", "SHELL requires at least one argument"),
    ("SHELL []", "SHELL requires at least one argument"),
])
def test_command_errors(text: str, message: str) -> None:
    err = parse_error("FROM scratch\n" + text)
    assert (err.line, err.problem) == (2, message)


def test_run_flags() -> None:
    ins = only("RUN --network=none --security=insecure --mount=type=bind,target=/x echo")
    assert ins.flags == [("network", "none"), ("security", "insecure"), ("mount", "type=bind,target=/x")]
    assert ins.args == ["echo"]


# -- flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "flags", "args"), [
    ("COPY --from=builder --chown=1:1 a b", [("from", "builder"), ("chown", "1:1")], ["a", "b"]),
    ("COPY --link a b", [("link", None)], ["a", "b"]),
    ("COPY --link=false a b", [("link", "false")], ["a", "b"]),
    ("COPY --link=TRUE a b", [("link", "true")], ["a", "b"]),
    ("COPY --exclude=*.md --exclude=x a b", [("exclude", "*.md"), ("exclude", "x")], ["a", "b"]),
    ('COPY --chown="a b" x y', [("chown", "a b")], ["x", "y"]),
    ("COPY --chmod=755 --parents a/./b c", [("chmod", "755"), ("parents", None)], ["a/./b", "c"]),
    ("COPY --from= a b", [("from", "")], ["a", "b"]),
    ("COPY -- --weird dest", [], ["--weird", "dest"]),
    ("ADD --checksum=sha256:abc --keep-git-dir --unpack=false u d",
     [("checksum", "sha256:abc"), ("keep-git-dir", None), ("unpack", "false")], ["u", "d"]),
    ("COPY a --from=x b", [], ["a", "--from=x", "b"]),
])
def test_flags(text: str, flags: list[tuple[str, str | None]], args: list[str]) -> None:
    ins = only(text)
    assert (ins.flags, ins.args) == (flags, args)


def test_flag_accessors() -> None:
    ins = only("COPY --link --exclude=a --exclude=b x y")
    assert ins.flag("link") == "true"      # a boolean flag given without a value
    assert ins.flag("from") is None
    assert ins.flag("exclude") == "b"
    assert ins.flag_values("exclude") == ["a", "b"]
    assert ins.flag_values("chown") == []


@pytest.mark.parametrize(("text", "message"), [
    ("COPY --foo a b", "unknown flag: --foo"),
    ("COPY --checksum=x a b", "unknown flag: --checksum"),      # ADD only
    ("ADD --from=x a b", "unknown flag: --from"),                # COPY only
    ("RUN --foo=bar echo", "unknown flag: --foo"),
    ("ENV --x=1 A=1", "unknown flag: --x"),
    ("COPY --from=a --from=b x y", "duplicate flag specified: --from"),
    ("COPY --from a b", "missing a value on flag: --from"),
    ("COPY --link= a b", "missing a value on flag: --link"),
    ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
])
def test_flag_errors(text: str, message: str) -> None:
    err = parse_error("FROM scratch\n" + text)
    assert (err.line, err.problem) == (2, message)


def test_from_platform_flag_and_unknown_flag() -> None:
    assert parse("FROM --platform=linux/arm64 alpine").stages[0].platform == "linux/arm64"
    assert parse_error("FROM --foo=1 alpine").problem == "unknown flag: --foo"


# -- COPY / ADD --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "args", "json_form"), [
    ('COPY ["a b", "c"]', ["a b", "c"], True),
    ('COPY "a b" c', ['"a', 'b"', "c"], False),                  # Docker splits on whitespace only
    ("ADD  a   b\tc ", ["a", "b", "c"], False),
    ("COPY [not json d", ["[not", "json", "d"], False),
])
def test_copy_args(text: str, args: list[str], json_form: bool) -> None:
    ins = only(text)
    assert (ins.args, ins.json_form) == (args, json_form)


@pytest.mark.parametrize("text", ["COPY a", "COPY", "ADD x", 'COPY ["a"]', "COPY <<EOF\nx\nEOF"])
def test_copy_needs_a_destination(text: str) -> None:
    err = parse_error("FROM scratch\n" + text)
    assert err.problem.startswith(f"{text.split()[0]} requires at least two arguments, but only one was provided")


# -- FROM --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "base", "name"), [
    ("FROM alpine", "alpine", None),
    ("from alpine as Builder", "alpine", "builder"),
    ("FROM alpine AS my-stage.1_x", "alpine", "my-stage.1_x"),
    ("FROM ${IMG:-alpine}:$TAG aS x", "${IMG:-alpine}:$TAG", "x"),
])
def test_from(text: str, base: str, name: str | None) -> None:
    stage = parse(text).stages[0]
    assert (stage.base, stage.name) == (base, name)


@pytest.mark.parametrize(("text", "message"), [
    ("FROM", "FROM requires either one or three arguments"),
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM a AS", "FROM requires either one or three arguments"),
    ("FROM a IS b", "FROM requires either one or three arguments"),
    ("FROM a AS b c", "FROM requires either one or three arguments"),
    ("FROM a AS 1st", 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols'),
    ("FROM a AS b$c", 'invalid name for build stage: "b$c", name can\'t start with a number or contain symbols'),
])
def test_from_errors(text: str, message: str) -> None:
    err = parse_error(text)
    assert (err.line, err.problem) == (1, message)


# -- ENV / LABEL -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "pairs"), [
    ("ENV A=1", [("A", "1")]),
    ('ENV A=1 B="x y" C=\'q r\' D=a\\ b E=', [("A", "1"), ("B", '"x y"'), ("C", "'q r'"), ("D", "a\\ b"),
                                               ("E", "")]),
    ("ENV A=$B C=${D:-x}", [("A", "$B"), ("C", "${D:-x}")]),
    ("ENV key value with   spaces", [("key", "value with   spaces")]),
    ('ENV key "quoted value"', [("key", '"quoted value"')]),
    ("ENV A=1 \\\n    B=2", [("A", "1"), ("B", "2")]),
    ("ENV A=b=c", [("A", "b=c")]),
    ('LABEL "com.example.vendor"="ACME Inc" version=1.0', [('"com.example.vendor"', '"ACME Inc"'),
                                                           ("version", "1.0")]),
    ("LABEL description Legacy form", [("description", "Legacy form")]),
])
def test_name_value_pairs(text: str, pairs: list[tuple[str, str]]) -> None:
    ins = only(text)
    assert ins.pairs == pairs
    assert ins.args == [x for pair in pairs for x in pair]


@pytest.mark.parametrize(("text", "message"), [
    ("ENV", "ENV requires at least one argument"),
    ("ENV A", "ENV must have two arguments"),
    ("LABEL A", "LABEL must have two arguments"),
    ("ENV A=1 B", 'Syntax error - can\'t find = in "B". Must be of the form: name=value'),
    ("ENV =1", "ENV names can not be blank"),
    ("LABEL a=1 =2", "LABEL names can not be blank"),
])
def test_name_value_errors(text: str, message: str) -> None:
    err = parse_error("FROM scratch\n" + text)
    assert (err.line, err.problem) == (2, message)


# -- ARG ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "pairs"), [
    ("ARG A", [("A", None)]),
    ("ARG A=", [("A", "")]),
    ("ARG A=1 B C=\"x y\"", [("A", "1"), ("B", None), ("C", '"x y"')]),
    ("ARG A=${B:-x}", [("A", "${B:-x}")]),
])
def test_arg(text: str, pairs: list[tuple[str, str | None]]) -> None:
    assert only(text).pairs == pairs


def test_arg_errors() -> None:
    assert parse_error("FROM a\nARG").problem == "ARG requires at least one argument"
    assert parse_error("FROM a\nARG =1").problem == "ARG names can not be blank"


def test_args_before_from_are_meta_args_and_after_are_stage_args() -> None:
    parsed = parse("ARG A=1\nARG B\nFROM x\nARG A\n")
    assert [m.pairs for m in parsed.meta_args] == [[("A", "1")], [("B", None)]]
    assert parsed.stages[0].instructions[0].pairs == [("A", None)]


# -- single-argument instructions, EXPOSE, VOLUME ---------------------------------------------------------

@pytest.mark.parametrize(("text", "args"), [
    ("WORKDIR /a b", ["/a b"]),
    ("USER app:app", ["app:app"]),
    ("STOPSIGNAL SIGKILL", ["SIGKILL"]),
    ("MAINTAINER Jane <j@example.com>", ["Jane <j@example.com>"]),
    ("EXPOSE 80 443/tcp  53/udp", ["80", "443/tcp", "53/udp"]),
    ("VOLUME /a /b", ["/a", "/b"]),
    ('VOLUME ["/a b", "/c"]', ["/a b", "/c"]),
])
def test_simple_arguments(text: str, args: list[str]) -> None:
    assert only(text).args == args


@pytest.mark.parametrize(("text", "message"), [
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("USER", "USER requires exactly one argument"),
    ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
    ("MAINTAINER", "MAINTAINER requires exactly one argument"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("VOLUME", "VOLUME requires at least one argument"),
    ('VOLUME [""]', "VOLUME specified can not be an empty string"),
])
def test_simple_argument_errors(text: str, message: str) -> None:
    assert parse_error("FROM a\n" + text).problem == message


# -- HEALTHCHECK --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "args", "json_form", "flags"), [
    ("HEALTHCHECK NONE", ["NONE"], False, []),
    ("HEALTHCHECK none", ["NONE"], False, []),
    ("HEALTHCHECK CMD curl -f http://x/ || exit 1", ["CMD", "curl -f http://x/ || exit 1"], False, []),
    ('HEALTHCHECK --interval=5s --retries=3 CMD ["curl", "-f", "x"]', ["CMD", "curl", "-f", "x"], True,
     [("interval", "5s"), ("retries", "3")]),
    ("HEALTHCHECK --timeout=1s --start-period=2s --start-interval=1s cmd true", ["CMD", "true"], False,
     [("timeout", "1s"), ("start-period", "2s"), ("start-interval", "1s")]),
])
def test_healthcheck(text: str, args: list[str], json_form: bool, flags: list[tuple[str, str]]) -> None:
    ins = only(text)
    assert (ins.args, ins.json_form, ins.flags) == (args, json_form, flags)


@pytest.mark.parametrize(("text", "message"), [
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK --bogus=1 CMD x", "unknown flag: --bogus"),
])
def test_healthcheck_errors(text: str, message: str) -> None:
    assert parse_error("FROM a\n" + text).problem == message


# -- ONBUILD ------------------------------------------------------------------------------------------

def test_onbuild() -> None:
    ins = only("ONBUILD run --network=none echo hi")
    assert ins.args == ["run --network=none echo hi"]
    assert ins.sub is not None
    assert (ins.sub.keyword, ins.sub.args, ins.sub.flags) == ("RUN", ["echo hi"], [("network", "none")])
    env = only("ONBUILD ENV A=1 B=2").sub
    assert env is not None and env.pairs == [("A", "1"), ("B", "2")]


@pytest.mark.parametrize(("text", "message"), [
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD from alpine", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD BOGUS x", "unknown instruction: BOGUS"),
    ("ONBUILD COPY a", "COPY requires at least two arguments, but only one was provided. "
                       "Destination could not be determined"),
])
def test_onbuild_errors(text: str, message: str) -> None:
    err = parse_error("FROM a\n" + text)
    assert (err.line, err.problem) == (2, message)


# -- heredocs -----------------------------------------------------------------------------------------

def test_run_heredoc() -> None:
    ins = only("RUN <<EOF\napk add x\n  echo $HOME\nEOF\n")
    assert ins.args == ["<<EOF"]
    assert ins.json_form is False
    assert ins.heredocs == [Heredoc("EOF", "apk add x\n  echo $HOME\n", True, False)]


def test_heredoc_instruction_is_followed_by_the_next_one() -> None:
    parsed = parse("FROM a\nRUN <<EOF\nx\nEOF\nUSER app\n")
    run, user = parsed.stages[0].instructions
    assert (run.line, user.line) == (2, 5)
    assert user.args == ["app"]


@pytest.mark.parametrize(("text", "args", "docs"), [
    ("RUN python3 <<EOF\nprint(1)\nEOF", ["python3 <<EOF"], [Heredoc("EOF", "print(1)\n", True, False)]),
    ("RUN <<-EOF\n\t\techo a\n\tEOF", ["<<-EOF"], [Heredoc("EOF", "echo a\n", True, True)]),
    ("RUN <<'EOF'\necho $X\nEOF", ["<<'EOF'"], [Heredoc("EOF", "echo $X\n", False, False)]),
    ('RUN <<"EOF"\necho $X\nEOF', ['<<"EOF"'], [Heredoc("EOF", "echo $X\n", False, False)]),
    ("RUN <<E\"O\"F\nx\nEOF", ["<<E\"O\"F"], [Heredoc("EOF", "x\n", False, False)]),
    ("RUN << EOF\nx\nEOF", ["<< EOF"], [Heredoc("EOF", "x\n", True, False)]),
    ("RUN <<EOF\nEOF", ["<<EOF"], [Heredoc("EOF", "", True, False)]),
    ("RUN <<EOF\n\n# not a comment\n\nEOF", ["<<EOF"], [Heredoc("EOF", "\n# not a comment\n\n", True, False)]),
    ("RUN <<A <<B\na\nA\nb\nB", ["<<A <<B"], [Heredoc("A", "a\n", True, False), Heredoc("B", "b\n", True, False)]),
    ("RUN cat <<A > /a && cat 3<<-B\nx\nA\n\ty\n\tB",
     ["cat <<A > /a && cat 3<<-B"], [Heredoc("A", "x\n", True, False), Heredoc("B", "y\n", True, True)]),
    ("COPY <<EOF /dest\nhello\nEOF", ["<<EOF", "/dest"], [Heredoc("EOF", "hello\n", True, False)]),
    ("ADD <<one <<two /d/\n1\none\n2\ntwo", ["<<one", "<<two", "/d/"],
     [Heredoc("one", "1\n", True, False), Heredoc("two", "2\n", True, False)]),
    ("RUN --mount=type=cache,target=/c <<EOF\nx\nEOF", ["<<EOF"], [Heredoc("EOF", "x\n", True, False)]),
    ("RUN echo a \\\n  <<EOF\nx\nEOF", ["echo a   <<EOF"], [Heredoc("EOF", "x\n", True, False)]),
])
def test_heredoc_forms(text: str, args: list[str], docs: list[Heredoc]) -> None:
    ins = only(text + "\n")
    assert ins.args == args
    assert ins.heredocs == docs


@pytest.mark.parametrize("text", [
    'RUN ["cat", "<<EOF"]',             # JSON form: no heredoc
    "RUN echo '<<EOF'",                  # quoted
    "RUN echo a<<EOF",                   # not a word of its own
    "CMD cat <<EOF",                     # CMD does not take heredocs
])
def test_not_heredocs(text: str) -> None:
    assert only(text + "\n").heredocs == []


def test_any_word_after_a_spaced_heredoc_operator_is_a_delimiter() -> None:
    # as in Docker: `<< 2` opens a heredoc named "2", even though a shift was meant
    ins = only("RUN echo $((1 << 2))\nx\n2))\n")
    assert ins.heredocs == [Heredoc("2))", "x\n", True, False)]


def test_onbuild_heredoc() -> None:
    ins = only("ONBUILD RUN <<EOF\necho a\nEOF\n")
    assert ins.heredocs == [Heredoc("EOF", "echo a\n", True, False)]
    assert ins.sub is not None and ins.sub.heredocs == ins.heredocs


def test_heredoc_errors() -> None:
    err = parse_error("FROM a\nRUN <<EOF\necho\n")
    assert (err.line, err.problem) == (2, "unterminated heredoc EOF")
    err = parse_error("FROM a\nRUN <<A <<B\na\nA\nb\n")
    assert (err.line, err.problem) == (2, "unterminated heredoc B")
    err = parse_error("FROM a\nCOPY a <<EOF\nx\nEOF\n")
    assert err.problem == "COPY cannot accept a heredoc as a destination"


def test_heredoc_crlf() -> None:
    ins = only("RUN <<EOF\r\nline\r\nEOF\r\n")
    assert ins.heredocs == [Heredoc("EOF", "line\n", True, False)]


# -- stages and whole-file errors ----------------------------------------------------------------------

def test_stage_instructions_and_indices() -> None:
    parsed = parse("FROM a AS one\nRUN x\nENV A=1\nFROM one\nRUN y\nFROM b AS two\n")
    assert [(s.index, s.name, s.line, [i.keyword for i in s.instructions]) for s in parsed.stages] == [
        (0, "one", 1, ["RUN", "ENV"]), (1, None, 4, ["RUN"]), (2, "two", 6, [])]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("", 1, "file with no instructions (no FROM)"),
    ("# just a comment\n\n", 2, "file with no instructions (no FROM)"),
    ("FROM a AS x\nRUN y\nFROM b AS X\n", 3, "duplicate name x"),
    ("ARG A\nRUN x\n", 2, "no build stage in current context: RUN needs a FROM before it"),
    ("env A=1\nFROM a\n", 1, "no build stage in current context: ENV needs a FROM before it"),
    ("ARG A\nARG B\n", 2, "dockerfile contains no stages to build"),
    ("FROM a\nRUN x\nFOO y\n", 3, "unknown instruction: FOO"),
    ("FROM a\nrun x\nfrobnicate \\\n y\n", 3, "unknown instruction: frobnicate"),
    ("FROM a\nRUN a \\\n b\nCOPY x\n", 4, "COPY requires at least two arguments, but only one was provided. "
                                          "Destination could not be determined"),
])
def test_whole_file_errors(text: str, line: int, message: str) -> None:
    err = parse_error(text)
    assert (err.line, err.problem) == (line, message)
