"""The content store: ingest, verify, commit; nothing half-written is ever visible."""

from __future__ import annotations

import io
import os

import pytest

from dockyard.content import ContentStore
from dockyard.errors import NotFound
from dockyard.types.digest import Digest, DigestMismatch, digest_bytes
from dockyard.utils.liveness import owner_alive, owner_token


def test_put_read_and_dedup(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    info = store.put(b"hello")
    assert info.digest == digest_bytes(b"hello") and info.size == 5 and info.created
    assert store.read(info.digest) == b"hello"
    assert not store.put(b"hello").created
    assert oct(os.stat(store.path(info.digest)).st_mode & 0o777) == "0o444"
    assert [b.digest for b in store.walk()] == [info.digest]
    assert os.listdir(store.ingest_dir) == []


def test_expected_digest_is_verified_before_anything_is_visible(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    wrong = digest_bytes(b"other")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        store.ingest(io.BytesIO(b"hello"), expected=wrong)
    assert not store.exists(wrong) and not store.exists(digest_bytes(b"hello"))
    assert os.listdir(store.ingest_dir) == []


def test_size_is_verified(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    d = digest_bytes(b"hello")
    with pytest.raises(DigestMismatch, match="truncated"):
        store.ingest(io.BytesIO(b"hell"), expected=d, size=5)
    with pytest.raises(DigestMismatch, match="longer"):
        store.ingest(io.BytesIO(b"hello!"), expected=d, size=5)
    assert list(store.walk()) == []


def test_sha512(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    d = digest_bytes(b"x", "sha512")
    info = store.ingest(io.BytesIO(b"x"), expected=d)
    assert info.digest == d and store.read(d) == b"x"


def test_missing_blob_is_not_found(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    with pytest.raises(NotFound):
        store.open(Digest.parse("sha256:" + "0" * 64))


def test_verify_finds_corruption(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    info = store.put(b"data")
    path = store.path(info.digest)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"evil")
    with pytest.raises(DigestMismatch, match="corrupt"):
        store.verify(info.digest)


def test_recover_removes_ingests_of_dead_owners(tmp_path) -> None:
    store = ContentStore(str(tmp_path))
    dead = os.path.join(store.ingest_dir, "999999999.1-abc")
    os.makedirs(dead)
    w = store.writer()
    w.write(b"in progress")
    assert store.recover() == ["999999999.1-abc"]
    assert len(os.listdir(store.ingest_dir)) == 1  # our own, live ingest stays
    w.abort()
    assert owner_alive(owner_token()) and not owner_alive("1.0")
