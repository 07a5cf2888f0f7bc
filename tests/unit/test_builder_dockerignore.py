""".dockerignore: reading the file, matching paths with exceptions and `**`, walking a context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.builder.dockerignore import IgnoreMatcher, go_clean, read_patterns, walk_context
from dockyard.errors import InvalidArgument


def test_read_patterns() -> None:
    text = (
        "\ufeff# a comment\n"
        "\n"
        "   \n"
        "node_modules  \n"
        "  *.log\t\n"
        "/abs/path/\n"
        "a/./b/../c\n"
        "!keep.log\n"
        "! /spaced/exception\n"
        " # not a comment: it does not start the line\n"
        "//double\n"
        "/\n"
        "!\n"
        "dir\\name\r\n"
    )
    assert read_patterns(text) == [
        "node_modules", "*.log", "abs/path", "a/c", "!keep.log", "!spaced/exception", "# not a comment: it does "
        "not start the line", "double", "/", "!", "dir\\name",
    ]


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), (".", "."), ("a/", "a"), ("./a//b/./c/..", "a/b"), ("//a", "/a"), ("/../a", "/a"),
    ("a/../..", ".."),
])
def test_go_clean(path: str, cleaned: str) -> None:
    assert go_clean(path) == cleaned


# -- matching -------------------------------------------------------------------------------------

CASES: list[tuple[list[str], str, bool]] = [
    # plain names, and what lies below them
    (["build"], "build", True),
    (["build"], "build/out/a.o", True),
    (["build"], "src/build", False),
    (["build"], "builder", False),
    (["a/b"], "a/b/c", True),
    (["a/b"], "a", False),
    # * and ? stay inside one component
    (["*.log"], "x.log", True),
    (["*.log"], "dir/x.log", False),
    (["*/*.log"], "dir/x.log", True),
    (["*"], "anything/below", True),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["a?b"], "a/b", False),
    (["a*b"], "a/b", False),
    # classes and escapes
    (["[abc].txt"], "b.txt", True),
    (["[abc].txt"], "d.txt", False),
    (["[a-c]x"], "bx", True),
    (["[^a]x"], "bx", True),
    (["[^a]x"], "ax", False),
    (["\\*"], "*", True),
    (["\\*"], "a", False),
    (["a\\?"], "a?", True),
    (["file.txt"], "fileXtxt", False),           # '.' is literal
    (["a+b(c)"], "a+b(c)", True),
    (["$x{1}"], "$x{1}", True),
    # **
    (["**"], "anything/at/all", True),
    (["**/foo"], "foo", True),
    (["**/foo"], "a/b/foo", True),
    (["**/foo"], "a/b/foo/inner", True),
    (["**/foo"], "a/xfoo", False),
    (["**/*.go"], "a/b/c.go", True),
    (["**/*.go"], "c.go", True),
    (["a/**"], "a/x/y", True),
    (["a/**"], "a", False),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["a/**/b"], "a/x/y/c", False),
    (["a/**/*.md"], "a/x/r.md", True),
    (["a**"], "abc/d", True),
    # cleaning
    (["/a/./b/"], "a/b/c", True),
    (["a"], "./a", True),
    (["a"], "/a", True),
    # exceptions, the last matching pattern wins
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README.md", "README*"], "README.md", True),
    (["docs", "!docs/keep"], "docs/keep", False),
    (["docs", "!docs/keep"], "docs/keep/inner.txt", False),
    (["docs", "!docs/keep"], "docs/other", True),
    (["docs", "!docs/keep"], "docs", True),
    (["**/*.pyc", "!important/**"], "important/x.pyc", False),
    (["**/*.pyc", "!important/**"], "other/x.pyc", True),
    (["!a"], "a", False),                          # an exception with nothing to undo
    (["*", "!a", "a/b"], "a/b/c", True),
    (["*", "!a", "a/b"], "a/c", False),
    # the root itself is never excluded
    (["*"], ".", False),
    (["**"], "", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matches(patterns: list[str], path: str, excluded: bool) -> None:
    assert IgnoreMatcher(patterns).matches(path) is excluded


@pytest.mark.parametrize("pattern", ["[", "a[", "[]", "[a-]", "[-a]", "a\\", "[a", "!["])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        IgnoreMatcher([pattern])


def test_lone_exclamation_mark() -> None:
    with pytest.raises(InvalidArgument, match='illegal exclusion pattern: "!"'):
        IgnoreMatcher(["!"])


def test_blank_patterns_are_skipped() -> None:
    matcher = IgnoreMatcher(["", "  ", "a"])
    assert matcher.matches("a") and not matcher.matches("b")
    assert matcher.has_exceptions is False
    assert IgnoreMatcher(["a", "!b"]).has_exceptions is True


@pytest.mark.parametrize(("patterns", "directory", "may"), [
    (["docs"], "docs", False),
    (["docs"], "src", True),                      # not excluded at all
    (["docs", "!docs/keep"], "docs", True),
    (["docs", "!docs/keep"], "other", True),
    (["*", "!docs/keep"], "docs", True),
    (["*", "!docs/keep"], "src", False),
    (["*", "!*/keep"], "src", True),
    (["*", "!**/keep"], "src/deep", True),
    (["*", "!src/*/keep"], "src/a", True),
    (["*", "!src/*/keep"], "lib/a", False),
    (["*", "![a-c]*/x"], "beta", True),
    (["*", "![a-c]*/x"], "zeta", False),
])
def test_may_include_under(patterns: list[str], directory: str, may: bool) -> None:
    assert IgnoreMatcher(patterns).may_include_under(directory) is may


# -- walking a context --------------------------------------------------------------------------------

@pytest.fixture
def context(tmp_path: Path) -> Path:
    for rel in ["Dockerfile", "a.txt", "b.log", "src/main.py", "src/main.pyc", "src/sub/x.pyc",
                "docs/keep/k.md", "docs/drop.md", "node_modules/m/index.js", "z/z.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    os.symlink("/etc", tmp_path / "link-to-etc")
    os.symlink("src", tmp_path / "link-to-src")
    return tmp_path


def test_walk_everything(context: Path) -> None:
    assert list(walk_context(str(context), IgnoreMatcher([]))) == [
        "Dockerfile", "a.txt", "b.log", "docs", "docs/drop.md", "docs/keep", "docs/keep/k.md", "link-to-etc",
        "link-to-src", "node_modules", "node_modules/m", "node_modules/m/index.js", "src", "src/main.py",
        "src/main.pyc", "src/sub", "src/sub/x.pyc", "z", "z/z.txt",
    ]


def test_walk_with_patterns(context: Path) -> None:
    matcher = IgnoreMatcher(read_patterns("node_modules\n**/*.pyc\n*.log\ndocs\n!docs/keep\nlink-to-etc\n"))
    assert list(walk_context(str(context), matcher)) == [
        "Dockerfile", "a.txt", "docs", "docs/keep", "docs/keep/k.md", "link-to-src", "src", "src/main.py",
        "src/sub", "z", "z/z.txt",
    ]


class RecordingMatcher(IgnoreMatcher):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__(patterns)
        self.asked: list[str] = []

    def matches(self, path: str) -> bool:
        self.asked.append(path)
        return super().matches(path)


def test_walk_skips_excluded_directories_without_looking_inside(context: Path) -> None:
    matcher = RecordingMatcher(["node_modules"])
    walked = list(walk_context(str(context), matcher))
    assert "node_modules" not in walked and "src/main.py" in walked
    assert not [p for p in matcher.asked if p.startswith("node_modules/")]


def test_walk_looks_inside_when_an_exception_may_apply(context: Path) -> None:
    matcher = RecordingMatcher(["docs", "!docs/nothing-here"])
    assert [p for p in walk_context(str(context), matcher) if p.startswith("docs")] == []
    assert "docs/keep" in matcher.asked


def test_walk_everything_excluded_but_one_file(context: Path) -> None:
    matcher = IgnoreMatcher(["*", "!src/sub/x.pyc", "!Dockerfile"])
    assert list(walk_context(str(context), matcher)) == ["Dockerfile", "src", "src/sub", "src/sub/x.pyc"]
