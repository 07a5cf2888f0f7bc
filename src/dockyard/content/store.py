"""A content-addressed blob store.

    <root>/blobs/<algorithm>/<encoded>     committed blobs, read-only files
    <root>/ingest/<owner>-<random>/data    data being written; invisible to readers

A writer streams into its ingest file while hashing, then `commit` checks the size and digest,
fsyncs, and renames the file into blobs/ (then fsyncs the directory). A blob is therefore either
absent or complete and verified; a crash leaves only an ingest directory, which `recover`
removes once its owner process is gone.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import NotFound, SystemFailure
from dockyard.types.digest import SHA256, Digest, Digester, DigestMismatch
from dockyard.utils.liveness import owner_alive, owner_token

CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    created: bool = False  # the commit that returned it added the blob (it was not there before)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """One ingest: write(), then commit() (verifies) or abort(). A context manager aborts on error."""

    def __init__(self, store: ContentStore, expected: Digest | None, size: int | None, sync: bool) -> None:
        self._store = store
        self.expected = expected
        self.expected_size = size
        self._sync = sync
        self._dir = os.path.join(store.ingest_dir, f"{owner_token()}-{secrets.token_hex(8)}")
        os.mkdir(self._dir, 0o700)
        self._path = os.path.join(self._dir, "data")
        self._file: BinaryIO | None = open(self._path, "wb")
        self._digester = Digester(expected.algorithm if expected else SHA256)
        self.info: BlobInfo | None = None

    @property
    def written(self) -> int:
        return self._digester.size

    def write(self, data: bytes | memoryview) -> None:
        if self._file is None:
            raise SystemFailure("write to a closed content writer")
        if self.expected_size is not None and self._digester.size + len(data) > self.expected_size:
            raise DigestMismatch(f"blob {self.expected or '(unnamed)'} is longer than its announced size {self.expected_size}")
        self._digester.update(data)
        self._file.write(data)

    def copy_from(self, stream: BinaryIO, limit: int | None = None) -> None:
        """Copy a stream (up to `limit` bytes, or to its end) into the blob."""
        remaining = limit
        while remaining is None or remaining > 0:
            chunk = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                break
            self.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)

    def commit(self) -> BlobInfo:
        """Verify and move the data into place; returns the blob, with created=False if it was already there."""
        if self._file is None:
            raise SystemFailure("commit of a closed content writer")
        digest = self._digester.digest()
        size = self._digester.size
        try:
            if self.expected_size is not None and size != self.expected_size:
                raise DigestMismatch(f"blob {self.expected or digest}: size {size} does not match the announced size {self.expected_size} (truncated?)")
            if self.expected is not None and digest != self.expected:
                raise DigestMismatch(f"digest mismatch: expected {self.expected}, content has {digest}")
            self._file.flush()
            if self._sync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            target = self._store.path(digest)
            created = not os.path.exists(target)
            if created:
                os.chmod(self._path, 0o444)
                os.rename(self._path, target)
                if self._sync:
                    _fsync_dir(os.path.dirname(target))
        finally:
            self.abort()
        self.info = BlobInfo(digest, size, created)
        return self.info

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class ContentStore:
    def __init__(self, root: str, *, sync: bool = True) -> None:
        self.root = root
        self.sync = sync
        self.ingest_dir = os.path.join(root, "ingest")
        self._blobs = os.path.join(root, "blobs")
        for d in (self.ingest_dir, os.path.join(self._blobs, "sha256"), os.path.join(self._blobs, "sha512")):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def path(self, digest: Digest) -> str:
        return os.path.join(self._blobs, digest.algorithm, digest.encoded)

    def exists(self, digest: Digest) -> bool:
        return os.path.exists(self.path(digest))

    def info(self, digest: Digest) -> BlobInfo:
        try:
            return BlobInfo(digest, os.stat(self.path(digest)).st_size)
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def open(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def read(self, digest: Digest, max_size: int | None = None) -> bytes:
        with self.open(digest) as f:
            if max_size is not None and os.fstat(f.fileno()).st_size > max_size:
                raise DigestMismatch(f"content {digest} is larger than {max_size} bytes")
            return f.read()

    def writer(self, expected: Digest | None = None, size: int | None = None) -> Writer:
        return Writer(self, expected, size, self.sync)

    def ingest(self, stream: BinaryIO, expected: Digest | None = None, size: int | None = None) -> BlobInfo:
        """Copy a whole stream into the store (verified against `expected`/`size` when given)."""
        with self.writer(expected, size) as w:
            w.copy_from(stream)
            return w.commit()

    def put(self, data: bytes, expected: Digest | None = None) -> BlobInfo:
        with self.writer(expected, None) as w:
            w.write(data)
            return w.commit()

    def adopt(self, path: str, digest: Digest, size: int) -> BlobInfo:
        """Move a complete file the caller has hashed (it must sit on this store's filesystem)
        into place as blob `digest`: fsync, read-only, rename. Checks the size, not the hash."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size != size:
                raise DigestMismatch(f"blob {digest}: {os.fstat(fd).st_size} bytes on disk, {size} expected")
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        target = self.path(digest)
        created = not os.path.exists(target)
        if created:
            os.chmod(path, 0o444)
            os.rename(path, target)
            if self.sync:
                _fsync_dir(os.path.dirname(target))
        else:
            os.unlink(path)
        return BlobInfo(digest, size, created)

    def verify(self, digest: Digest) -> None:
        """Re-hash a stored blob (for fsck); raises DigestMismatch when it was corrupted on disk."""
        d = Digester(digest.algorithm)
        with self.open(digest) as f:
            while chunk := f.read(CHUNK):
                d.update(chunk)
        if d.digest() != digest:
            raise DigestMismatch(f"content {digest} is corrupt on disk: it hashes to {d.digest()}")

    def delete(self, digest: Digest) -> bool:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def walk(self) -> Iterator[BlobInfo]:
        for algorithm in sorted(os.listdir(self._blobs)):
            directory = os.path.join(self._blobs, algorithm)
            for encoded in sorted(os.listdir(directory)):
                try:
                    digest = Digest.parse(f"{algorithm}:{encoded}")
                    size = os.stat(os.path.join(directory, encoded)).st_size
                except (ValueError, OSError):
                    continue
                yield BlobInfo(digest, size)

    def usage(self) -> int:
        return sum(b.size for b in self.walk())

    def recover(self) -> list[str]:
        """Remove the ingests of processes that died; returns what was removed."""
        removed = []
        for name in os.listdir(self.ingest_dir):
            owner = name.split("-", 1)[0]
            if not owner_alive(owner):
                shutil.rmtree(os.path.join(self.ingest_dir, name), ignore_errors=True)
                removed.append(name)
        return removed
