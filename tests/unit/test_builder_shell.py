"""Word expansion as Docker's builder does it: quotes, escapes, $VAR and ${VAR...} modifiers."""

from __future__ import annotations

import pytest

from dockyard.builder.shell import Lexer, ShellError
from dockyard.errors import InvalidArgument

ENV = {"HOME": "/root", "EMPTY": "", "SPACED": "a  b", "PATHV": "/usr/local/bin/app.tar.gz", "X": "x",
       "N1": "one", "UNI": "한국어"}


@pytest.fixture
def lexer() -> Lexer:
    return Lexer()


# -- quotes and escapes ------------------------------------------------------------------------------

@pytest.mark.parametrize(("word", "expanded"), [
    ("plain", "plain"),
    ("he'll'o", "hello"),
    ("he\\'llo", "he'llo"),
    ("a\\ b", "a b"),
    ("abc\\tdef", "abctdef"),               # outside quotes the escape makes the next char literal
    ('"abc\\tdef"', "abc\\tdef"),           # inside double quotes only " $ \ are escapable
    ('"abc\\\\tdef"', "abc\\tdef"),
    ('"a\\"b"', 'a"b'),
    ('"a\\$HOME"', "a$HOME"),
    ("'abc\\tdef'", "abc\\tdef"),           # single quotes: everything literal
    ("'hello\\'", "hello\\"),
    ("hello\\", "hello"),                   # a trailing escape is dropped
    ("hello\\\\", "hello\\"),
    ('"hel\'lo"', "hel'lo"),
    ("'\"$HOME\"'", '"$HOME"'),
    ('"\'\'"', "''"),
    ('""', ""),
    ("''", ""),
    ("a  b", "a  b"),                       # one word: spaces kept
    ('x"a b"y', "xa by"),
])
def test_quotes_and_escapes(lexer: Lexer, word: str, expanded: str) -> None:
    assert lexer.process_word(word, ENV) == expanded


@pytest.mark.parametrize("word", ["he'llo", "'hello", '"hello', '"hello\\"', "he\\\\'llo"])
def test_unbalanced_quotes(lexer: Lexer, word: str) -> None:
    with pytest.raises(ShellError, match="unexpected end of statement"):
        lexer.process_word(word, ENV)


def test_shell_error_is_an_invalid_argument_naming_the_word(lexer: Lexer) -> None:
    with pytest.raises(InvalidArgument) as info:
        lexer.process_word("a'b", ENV)
    assert "a'b" in str(info.value)


# -- variables ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("word", "expanded"), [
    ("$HOME", "/root"),
    ("${HOME}", "/root"),
    ("$HOME/bin", "/root/bin"),
    ("${HOME}bin", "/rootbin"),
    ("$HOMEbin", ""),                      # the name runs on
    ("$UNSET", ""),
    ("a${UNSET}b", "ab"),
    ("$UNI", "한국어"),
    ('"$HOME"', "/root"),
    ("'$HOME'", "$HOME"),
    ("\\$HOME", "$HOME"),
    ("$", "$"),
    ("a$", "a$"),
    ("$.", "$."),
    ("$/x", "$/x"),
    ("$ x", "$ x"),
    ('"$"', "$"),
    ("$1", ""),                            # positional and special parameters: looked up, unset
    ("$12a", "a"),
    ("$@", ""),
    ("$$", ""),
    ("$N1", "one"),
])
def test_variables(lexer: Lexer, word: str, expanded: str) -> None:
    assert lexer.process_word(word, ENV) == expanded


@pytest.mark.parametrize(("word", "expanded"), [
    # - and :- (default)
    ("${UNSET:-def}", "def"),
    ("${EMPTY:-def}", "def"),
    ("${X:-def}", "x"),
    ("${UNSET-def}", "def"),
    ("${EMPTY-def}", ""),
    ("${X-def}", "x"),
    ("${UNSET:-$HOME/x}", "/root/x"),      # the word is expanded too
    ("${UNSET:-${ALSO:-nested}}", "nested"),
    ("${UNSET:-'a b'}", "a b"),
    ('${UNSET:-"$HOME"}', "/root"),
    ("${UNSET:-}", ""),
    ("${UNSET:-a\\}b}", "a}b"),
    # + and :+ (alternative)
    ("${X:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${X:+$HOME}", "/root"),
    # ? and :? when set
    ("${X:?msg}", "x"),
    ("${EMPTY?msg}", ""),
    # # ## % %% (patterns)
    ("${PATHV#*/}", "usr/local/bin/app.tar.gz"),
    ("${PATHV##*/}", "app.tar.gz"),
    ("${PATHV%.*}", "/usr/local/bin/app.tar"),
    ("${PATHV%%.*}", "/usr/local/bin/app"),
    ("${PATHV#/usr}", "/local/bin/app.tar.gz"),
    ("${PATHV#nomatch}", "/usr/local/bin/app.tar.gz"),
    ("${PATHV%.?z}", "/usr/local/bin/app.tar"),
    ("${UNSET#x}", ""),
    ("${X#\\*}", "x"),
    # / and // (replacement)
    ("${PATHV/\\//:}", ":usr/local/bin/app.tar.gz"),
    ("${PATHV//\\//:}", ":usr:local:bin:app.tar.gz"),
    ("${SPACED/ /_}", "a_ b"),
    ("${SPACED// /_}", "a__b"),
    ("${PATHV/*bin/X}", "X/app.tar.gz"),
    ("${X/y/z}", "x"),
    ("${PATHV//./$X}", "/usr/local/bin/appxtarxgz"),
])
def test_modifiers(lexer: Lexer, word: str, expanded: str) -> None:
    assert lexer.process_word(word, ENV) == expanded


@pytest.mark.parametrize(("word", "message"), [
    ("${UNSET:?}", "UNSET: is not allowed to be unset"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${UNSET:?need it}", "UNSET: need it"),
    ("${EMPTY:?set $X}", "EMPTY: set x"),
    ("${HOME", "syntax error: missing '}'"),
    ("${", "syntax error: missing '}'"),
    ("${}", "syntax error: bad substitution"),
    ("${:x}", "syntax error: bad substitution"),
    ("${{x}", "syntax error: bad substitution"),
    ("${HOME:-x", "syntax error: missing '}'"),
    ("${HOME:x}", "unsupported modifier (:x) in substitution"),
    ("${HOME:#x}", "unsupported modifier (:#) in substitution"),
    ("${HOME!}", "unsupported modifier (!) in substitution"),
    ("${HOME/x}", "syntax error: missing '/' in ${}"),
    ("${HOME/x/y", "syntax error: missing '}'"),
    ("${HOME#\\q}", "invalid escape"),
])
def test_expansion_errors(lexer: Lexer, word: str, message: str) -> None:
    with pytest.raises(ShellError) as info:
        lexer.process_word(word, ENV)
    assert message in str(info.value)


def test_env_is_any_mapping(lexer: Lexer) -> None:
    from types import MappingProxyType
    assert lexer.process_word("$A-$B", MappingProxyType({"A": "1", "B": "2"})) == "1-2"


# -- words ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "words"), [
    ("a b  c", ["a", "b", "c"]),
    ("  lead trail  ", ["lead", "trail"]),
    ("", []),
    ("   ", []),
    ('"a b" c', ["a b", "c"]),
    ("'a b'c d", ["a bc", "d"]),
    ("a\\ b c", ["a b", "c"]),
    ("$SPACED", ["a", "b"]),              # unquoted expansion is split
    ('"$SPACED"', ["a  b"]),
    ("x$SPACED", ["xa", "b"]),
    ("x${SPACED}y", ["xa", "by"]),
    ("$EMPTY", []),
    ('"$EMPTY"', []),                     # Docker drops empty words, quoted or not
    ("80/tcp ${X}:443", ["80/tcp", "x:443"]),
    ("${UNSET:-8080 9090}", ["8080", "9090"]),
    ("a\tb\nc", ["a", "b", "c"]),
])
def test_process_words(lexer: Lexer, text: str, words: list[str]) -> None:
    assert lexer.process_words(text, ENV) == words


# -- the backtick escape ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("word", "expanded"), [
    ("c:\\path\\to", "c:\\path\\to"),      # backslash is literal
    ("a` b", "a b"),
    ("`$HOME", "$HOME"),
    ('"a`"b"', 'a"b'),
    ('"c:\\x"', "c:\\x"),
    ('"``"', "`"),
    ("$HOME\\bin", "/root\\bin"),
    ("x`", "x"),
])
def test_backtick_escape(word: str, expanded: str) -> None:
    assert Lexer("`").process_word(word, ENV) == expanded


def test_backtick_escape_splits_words() -> None:
    assert Lexer("`").process_words("a` b c:\\d", ENV) == ["a b", "c:\\d"]


def test_bad_escape_character() -> None:
    with pytest.raises(ShellError, match="invalid escape token"):
        Lexer("x")


# -- used variables -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("word", "names"), [
    ("plain", set()),
    ("$A", {"A"}),
    ("${A}${B}", {"A", "B"}),
    ("${A:-$B}", {"A", "B"}),
    ("${A:+${B:-$C}}", {"A", "B", "C"}),
    ("${A:?must}", {"A"}),                 # does not fail when collecting names
    ("${A#$P}", {"A", "P"}),
    ("${A/$P/$R}", {"A", "P", "R"}),
    ("'$A' \\$B \"$C\"", {"C"}),
    ("$1 $@", {"1", "@"}),
])
def test_used_variables(lexer: Lexer, word: str, names: set[str]) -> None:
    assert lexer.used_variables(word) == names


# -- heredoc bodies and raw modes ----------------------------------------------------------------------------

def test_heredoc_body_keeps_quotes() -> None:
    body = "echo \"$HOME\" '$X' \\$X\n${UNSET:-d}\n"
    assert Lexer().process_heredoc(body, ENV) == "echo \"/root\" 'x' $X\nd\n"


def test_raw_modes_keep_quotes_escapes_and_unset_references() -> None:
    raw = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    assert raw.process_word("'a' \"$X\" \\n $UNSET ${UNSET:-d} ${U/a/b}", ENV) == \
        "'a' \"x\" \\n $UNSET ${UNSET:-d} ${U/a/b}"
    assert raw.process_words("RUN <<EOF cat << 'E F'", {}) == ["RUN", "<<EOF", "cat", "<< 'E F'"]
