"""The build context: globbing, symlinks kept inside the root, content hashes; the cache store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.builder.cache import BuildCache, cache_key
from dockyard.builder.context import BuildContext, Source
from dockyard.errors import NotFound


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("a")
    (tmp_path / "src" / "b.md").write_text("b")
    (tmp_path / "src" / "sub" / "c.txt").write_text("c")
    (tmp_path / "top.txt").write_text("top")
    os.symlink("/etc", tmp_path / "escape")          # absolute: resolved inside the context
    os.symlink("../../..", tmp_path / "src" / "up")  # climbing: stops at the context root
    return BuildContext(str(tmp_path))


def test_plain_paths_and_globs(ctx: BuildContext) -> None:
    assert ctx.resolve("top.txt") == [Source("top.txt", False)]
    assert ctx.resolve("./src/") == [Source("src", True)]
    assert [s.rel for s in ctx.resolve("src/*.txt")] == ["src/a.txt"]
    assert [s.rel for s in ctx.resolve("src/*/c.txt")] == ["src/sub/c.txt"]
    assert [s.rel for s in ctx.resolve("src/[ab].*")] == ["src/a.txt", "src/b.md"]
    assert [s.rel for s in ctx.resolve("src/[^a].*")] == ["src/b.md"]
    with pytest.raises(NotFound, match="missing"):
        ctx.resolve("missing")
    with pytest.raises(NotFound, match="matches nothing"):
        ctx.resolve("*.none")


def test_symlinks_cannot_leave_the_context(ctx: BuildContext) -> None:
    assert ctx.path("escape") == os.path.join(ctx.root, "etc")
    assert ctx.path("src/up/top.txt") == os.path.join(ctx.root, "top.txt")
    assert ctx.path("../../top.txt") == os.path.join(ctx.root, "top.txt")
    with pytest.raises(NotFound):
        ctx.resolve("escape/passwd")


def test_tree_hash_follows_content_not_times(ctx: BuildContext) -> None:
    src = ctx.resolve("src")[0]
    before = ctx.tree_hash(src)
    os.utime(os.path.join(ctx.root, "src", "a.txt"), (1, 1))
    assert BuildContext(ctx.root).tree_hash(src) == before
    with open(os.path.join(ctx.root, "src", "a.txt"), "w") as f:
        f.write("changed")
    assert BuildContext(ctx.root).tree_hash(src) != before
    os.chmod(os.path.join(ctx.root, "src", "b.md"), 0o600)
    changed = BuildContext(ctx.root).tree_hash(src)
    os.chmod(os.path.join(ctx.root, "src", "b.md"), 0o644)
    assert BuildContext(ctx.root).tree_hash(src) != changed


def test_cache_entries(tmp_path: Path) -> None:
    cache = BuildCache(str(tmp_path / "cache"))
    key = cache_key("sha256:" + "1" * 64, ["run", ["sh", "-c", "true"]])
    assert key != cache_key("sha256:" + "2" * 64, ["run", ["sh", "-c", "true"]])
    assert cache.get(key) is None
    cache.put(key, "sha256:" + "a" * 64)
    assert cache.get(key) == "sha256:" + "a" * 64
    other = cache_key("scratch", ["nop", "ENV A=1"])
    cache.put(other, "sha256:" + "b" * 64)
    assert cache.prune(live={"sha256:" + "b" * 64}) == 1
    assert cache.get(key) is None and cache.get(other) is not None
    cache.put(key, "garbage")
    assert cache.get(key) is None
