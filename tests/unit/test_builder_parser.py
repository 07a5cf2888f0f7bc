"""The Dockerfile parser, word expansion and .dockerignore rules (no root, no daemon)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.builder.dockerfile import DockerfileError, parse
from dockyard.builder.dockerignore import IgnoreMatcher, read_patterns, walk_context
from dockyard.builder.instructions import StageState, expand_ports, parse_duration
from dockyard.builder import instructions
from dockyard.builder.shell import Lexer, ShellError
from dockyard.errors import InvalidArgument


def only(text: str):  # type: ignore[no-untyped-def]
    return parse("FROM scratch\n" + text).stages[0].instructions


def test_directives_continuations_and_comments() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# ESCAPE=`\nFROM busybox\nRUN echo a `\n  # inside\n\n  b\n# x=1\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"} and df.escape == "`"
    ins = df.stages[0].instructions[0]
    assert ins.keyword == "RUN" and ins.args == ["echo a   b"] and ins.line == 4
    # a directive after an instruction or a comment is only a comment
    assert parse("# hello\n# escape=`\nFROM a\n").escape == "\\"
    with pytest.raises(DockerfileError, match="line 1: invalid escape"):
        parse("# escape=x\nFROM a\n")


def test_json_and_shell_forms() -> None:
    cmd, entry, run, bad = only('CMD ["a", "b c"]\nENTRYPOINT exec app\nRUN ["sh"]\nCMD [not json\n')
    assert (cmd.args, cmd.json_form) == (["a", "b c"], True)
    assert (entry.args, entry.json_form) == (["exec app"], False)
    assert run.json_form and run.args == ["sh"]
    assert (bad.args, bad.json_form) == (["[not json"], False)
    with pytest.raises(DockerfileError, match="SHELL requires the arguments to be in JSON form"):
        only("SHELL /bin/bash -c\n")


def test_env_label_arg_pairs() -> None:
    env, legacy, label, arg = only('ENV A=1 B="two words" C=x\\ y\nENV LEGACY value with spaces\n'
                                   'LABEL "k 1"=v\nARG NAME\n')
    assert env.pairs == [("A", "1"), ("B", '"two words"'), ("C", "x\\ y")]
    assert legacy.pairs == [("LEGACY", "value with spaces")]
    assert label.pairs == [('"k 1"', "v")]
    assert arg.pairs == [("NAME", None)]
    with pytest.raises(DockerfileError, match="line 2: .*can't find ="):
        only("ENV A=1 B\n")


def test_flags_heredocs_and_onbuild() -> None:
    copy, run, heredoc, onbuild = only(
        "COPY --from=build --chown=1:2 a b /dst/\nRUN --network=none true\n"
        "RUN <<-EOF python3 <<'PY'\n\techo hi\n\tEOF\nprint($x)\nPY\nONBUILD RUN make\n")
    assert copy.flags == [("from", "build"), ("chown", "1:2")] and copy.args == ["a", "b", "/dst/"]
    assert copy.flag("from") == "build" and run.flag("network") == "none"
    first, second = heredoc.heredocs
    assert (first.name, first.content, first.chomp, first.expand) == ("EOF", "echo hi\n", True, True)
    assert (second.name, second.content, second.expand) == ("PY", "print($x)\n", False)
    assert onbuild.sub is not None and onbuild.sub.keyword == "RUN" and onbuild.args == ["RUN make"]
    with pytest.raises(DockerfileError, match="unknown flag: --nope"):
        only("COPY --nope=1 a b\n")
    with pytest.raises(DockerfileError, match="ONBUILD ONBUILD"):
        only("ONBUILD ONBUILD RUN x\n")


@pytest.mark.parametrize("text,message", [
    ("FROM a\nFROOM b\n", "line 2: unknown instruction: FROOM"),
    ("RUN true\n", "line 1: no build stage"),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM a\nCOPY onlyone\n", "line 2: COPY requires at least two arguments"),
    ("FROM a\nRUN\n", "RUN requires at least one argument"),
    ("FROM a\nHEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD"),
    ("FROM a AS x\nFROM b AS x\n", "duplicate name x"),
    ("", "no FROM"),
    ("FROM a\nRUN <<EOF\nnever ends\n", "unterminated heredoc EOF"),
])
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


def test_stages_and_meta_args() -> None:
    df = parse("\ufeffARG V=1\r\nFROM --platform=linux/amd64 img:$V AS Build\r\nRUN x\r\nFROM build\r\n")
    assert [i.pairs for i in df.meta_args] == [[("V", "1")]]
    assert [(s.base, s.name, s.platform) for s in df.stages] == [("img:$V", "build", "linux/amd64"),
                                                                   ("build", None, None)]


@pytest.mark.parametrize("word,expected", [
    ("$A", "x"), ("${A}b", "xb"), ("${NOPE:-dflt}", "dflt"), ("${E:-d}", "d"), ("${E-d}", ""), ("${NOPE-d}", "d"),
    ("${A:+yes}", "yes"), ("${E:+yes}", ""), ("${E+yes}", "yes"), ("'$A'", "$A"), ('"$A b"', "x b"),
    ("\\$A", "$A"), ("a\\ b", "a b"), ("$", "$"), ("$1", ""), ("${P##*/}", "bin"), ("${P#/}", "usr/bin"),
    ("${P%/*}", "/usr"), ("${P/usr/opt}", "/opt/bin"), ('"a\\"b"', 'a"b'), ("${NOPE:-$A}", "x"),
])
def test_expansion(word: str, expected: str) -> None:
    assert Lexer().process_word(word, {"A": "x", "E": "", "P": "/usr/bin"}) == expected


def test_expansion_words_errors_and_backtick_escape() -> None:
    lexer = Lexer()
    # an unquoted expansion is split too (Docker's ProcessWords)
    assert lexer.process_words('a "b c" $A\t d', {"A": "x y"}) == ["a", "b c", "x", "y", "d"]
    with pytest.raises(ShellError):
        lexer.process_word("${NOPE:?must be set}", {})
    with pytest.raises(ShellError):
        lexer.process_word("'open", {})
    assert Lexer("`").process_word("C:\\dir `$A", {"A": "x"}) == "C:\\dir $A"
    assert lexer.used_variables("$A ${B:-$C}") >= {"A", "B"}


def test_dockerignore_rules(tmp_path: Path) -> None:
    patterns = read_patterns("# comment\n*.log\n!keep.log\nbuild\n**/tmp\n/docs/*.md\n\n")
    assert patterns == ["*.log", "!keep.log", "build", "**/tmp", "docs/*.md"]
    m = IgnoreMatcher(patterns)
    cases = {"x.log": True, "keep.log": False, "build/a/b": True, "src/tmp/x": True, "tmp": True,
             "docs/a.md": True, "docs/sub/a.md": False, "a/x.log": False, "src/main.c": False}
    assert {p: m.matches(p) for p in cases} == cases
    for rel in ("build/out", "src", "keep"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "build" / "out" / "bin").write_text("x")
    (tmp_path / "src" / "a.c").write_text("x")
    (tmp_path / "x.log").write_text("x")
    (tmp_path / "keep.log").write_text("x")
    os.symlink("/etc", tmp_path / "src" / "etc")
    sent = list(walk_context(str(tmp_path), IgnoreMatcher(read_patterns("build\n*.log\n!keep.log\n"))))
    assert sent == ["keep", "keep.log", "src", "src/a.c", "src/etc"]
    # an exception below an excluded directory brings it back
    sent = list(walk_context(str(tmp_path), IgnoreMatcher(read_patterns("build\n!build/out/bin\n"))))
    assert "build/out/bin" in sent


def test_metadata_instructions() -> None:
    state = StageState(0, None, None, {"Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"]})
    lexer = Lexer()
    for ins in only('ENV A=new B=$A\nLABEL x="$B"\nEXPOSE 80 53/udp 8000-8001\nWORKDIR /srv\nWORKDIR app\n'
                    'ENTRYPOINT ["run"]\nVOLUME /data $A\nHEALTHCHECK --interval=1m30s --retries=2 CMD true\n'):
        instructions.METADATA[ins.keyword](state, ins, lexer, {})
    cfg = state.config
    assert cfg["Env"] == ["PATH=/bin", "A=new", "B=old"]  # replaced in place; $A is the value before the line
    assert cfg["Labels"] == {"x": "old"}
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}
    assert cfg["WorkingDir"] == "/srv/app" and cfg["Entrypoint"] == ["run"] and cfg["Cmd"] is None
    assert cfg["Volumes"] == {"/data": {}, "new": {}}
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000, "Retries": 2}
    assert parse_duration("500ms", "x") == 500_000_000
    with pytest.raises(InvalidArgument):
        expand_ports("80/xyz")
