"""Word expansion for Dockerfile instructions, following the rules of Docker's builder.

Docker does not run a shell to expand ``$VAR`` in ENV, COPY, WORKDIR and friends: its builder
has a small lexer of its own (buildkit ``frontend/dockerfile/shell``). This module behaves the
same way:

- single quotes keep everything literally; double quotes allow ``$`` expansion and let the
  escape character escape ``"``, ``$`` and itself (any other escape stays as written);
- outside quotes the escape character (``\\``, or a backtick after ``# escape=```) makes the
  next character literal; a trailing escape character is dropped;
- ``$NAME``, ``${NAME}`` and the modifiers ``:-  -  :+  +  :?  ?  #  ##  %  %%  /  //``;
  unset variables expand to ""; ``$`` not followed by a name stays ``$``;
- the positional and special parameters (``$1``, ``$@``, ``$*``, ``$#``, ``$?``, ``$-``,
  ``$$``, ``$!``) are looked up like any other name, so they normally expand to "".

Words produced by ``process_words`` are split on unquoted whitespace, including whitespace
that comes out of an unquoted variable expansion.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_HEREDOC_SPACE = frozenset("\t\r ")


class ShellError(InvalidArgument):
    """A word that cannot be expanded: unbalanced quotes, a bad ``${...}``, ``${X:?}``."""


@dataclass
class _Words:
    """Collects the words of ``process_words``: spaces split, quoted text does not. A word
    that stays empty (``""``, an empty variable) is dropped, as Docker does."""

    buf: str = ""
    words: list[str] = field(default_factory=list)
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
            return
        self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.buf += text
        self.in_word = True

    def add_expanded(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False
        return self.words


class _Scan:
    """One pass over one word: a cursor, the environment, the names looked up."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str], collect: bool,
                 quotes: bool = True) -> None:
        self.lexer = lexer
        self.quotes = quotes
        self.text = text
        self.pos = 0
        self.env = env
        self.collect = collect
        self.raw_escapes = lexer.raw_escapes
        self.names: set[str] = set()

    # -- cursor -------------------------------------------------------------------------
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    # -- environment --------------------------------------------------------------------
    def lookup(self, name: str) -> tuple[str, bool]:
        self.names.add(name)
        if name in self.env:
            return self.env[name], True
        return "", False

    # -- the word -----------------------------------------------------------------------
    def process_until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to `stop` (consumed) or the end of the text when `stop` is ""."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._process_until(stop)
        finally:
            self.raw_escapes = saved

    def _process_until(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        handlers = self._handlers()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.finish()
            handler = handlers.get(ch)
            if handler is not None:
                piece = handler()
                result.append(piece)
                if ch == "$":
                    words.add_expanded(piece)
                else:
                    words.add_raw(piece)
                continue
            self.next()
            if ch != self.lexer.escape:
                words.add_char(ch)
                result.append(ch)
                continue
            if self.raw_escapes:
                words.add_raw(ch)
                result.append(ch)
            escaped = self.next()
            if not escaped:
                break
            words.add_raw(escaped)
            result.append(escaped)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def _handlers(self) -> dict[str, Callable[[], str]]:
        handlers: dict[str, Callable[[], str]] = {"$": self.dollar, "<": self.possible_heredoc}
        if self.quotes:
            handlers["'"] = self.single_quote
            handlers['"'] = self.double_quote
        return handlers

    def single_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lexer.raw_quotes else []
        while True:
            ch = self.next()
            if not ch:
                raise ShellError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lexer.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lexer.raw_quotes else []
        while True:
            ch = self.peek()
            if not ch:
                raise ShellError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lexer.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch == self.lexer.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.lexer.escape):
                    ch = self.next()
            out.append(ch)

    def possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        spaces = []
        while self.peek() and self.peek() in _HEREDOC_SPACE:
            spaces.append(self.next())
        return "<<" + "".join(spaces)

    # -- $ --------------------------------------------------------------------------------
    def name(self) -> str:
        """A variable name: letters, digits, '_'; or digits only; or one special parameter."""
        start = self.pos
        first = self.peek()
        if first.isdigit():
            while self.peek().isdigit():
                self.next()
            return self.text[start:self.pos]
        if first and first in _SPECIAL_PARAMS:
            return self.next()
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.text[start:self.pos]

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lexer.skip_unset:
                return "$" + name
            return value
        self.next()
        if not self.peek():
            raise ShellError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if not op:
            raise ShellError("syntax error: missing '}'")
        if op == "}":
            value, found = self.lookup(name)
            if not found and self.lexer.skip_unset:
                return "${" + name + "}"
            return value
        if op == "/":
            return self.substitute(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
        return self.modifier(name, op, null_is_unset)

    def modifier(self, name: str, op: str, null_is_unset: bool) -> str:
        shown = (":" if null_is_unset else "") + op
        if op not in ("+", "-", "?", "#", "%"):
            raise ShellError(f"unsupported modifier ({shown}) in substitution")
        pattern_op = op in ("#", "%")
        if null_is_unset and pattern_op:
            raise ShellError(f"unsupported modifier ({shown}) in substitution")
        word = self._word_until("}", raw_escapes=pattern_op, missing="syntax error: missing '}'")
        value, found = self.lookup(name)
        if not found and self.lexer.skip_unset:
            return "${" + name + shown + word + "}"
        empty = not found or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            return self._required(name, value, found, null_is_unset, word)
        greedy = word.startswith(op)
        if greedy:
            word = word[1:]
        if op == "%":
            return trim_suffix(word, value, greedy)
        return trim_prefix(word, value, greedy)

    def _required(self, name: str, value: str, found: bool, null_is_unset: bool, word: str) -> str:
        if self.collect:
            return value
        if not found:
            raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
        if null_is_unset and value == "":
            raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
        return value

    def substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self._word_until("/", raw_escapes=True, missing="syntax error: missing '/' in ${}")
        replacement = self._word_until("}", raw_escapes=True, missing="syntax error: missing '}'")
        value, found = self.lookup(name)
        if not found and self.lexer.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        return regex.sub(lambda _m: replacement, value, count=1)

    def _word_until(self, stop: str, raw_escapes: bool, missing: str) -> str:
        try:
            word, _ = self.process_until(stop, raw_escapes)
        except ShellError:
            if not self.peek():
                raise ShellError(missing) from None
            raise
        return word


class Lexer:
    """Expands Dockerfile words against an environment (build args and ENV values)."""

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False) -> None:
        """`raw_quotes`, `raw_escapes` and `skip_unset` keep quotes, escape characters and
        references to unset variables in the output; the Dockerfile parser uses them to find
        heredoc words without expanding anything."""
        if escape not in ("\\", "`"):
            raise ShellError(f"invalid escape token {escape!r} does not match ` or \\")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """One word with quotes removed and variables expanded; whitespace is kept."""
        return self._run(word, env, collect=False)[0]

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """Split on unquoted whitespace (also inside expanded values), then expand."""
        return self._run(text, env, collect=False)[1]

    def process_heredoc(self, content: str, env: Mapping[str, str]) -> str:
        """A heredoc body (``<<EOF``, not quoted): variables expanded, quotes left alone."""
        return self._process(_Scan(self, content, env, collect=False, quotes=False), content)[0]

    def used_variables(self, word: str) -> set[str]:
        """Every variable name the word refers to, set or not (``${X:?}`` does not fail here)."""
        scan = _Scan(self, word, {}, collect=True)
        self._process(scan, word)
        return scan.names

    def _run(self, word: str, env: Mapping[str, str], collect: bool) -> tuple[str, list[str]]:
        return self._process(_Scan(self, word, env, collect), word)

    @staticmethod
    def _process(scan: _Scan, word: str) -> tuple[str, list[str]]:
        try:
            return scan.process_until("", scan.raw_escapes)
        except ShellError as e:
            raise ShellError(f"failed to process {word!r}: {e}") from None


# -- shell patterns (for # % / modifiers) -------------------------------------------------------

_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell pattern (``*``, ``?``, ``\\`` escapes; no bracket expressions) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                raise ShellError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'")
            out.append("\\" + following)
            i += 1
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = pattern_regex(pattern, greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each escape before the character it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    """Shortest (or longest) matching suffix removed: a prefix trim on the reversed strings."""
    return trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
