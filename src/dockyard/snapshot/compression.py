"""Layer compression: gzip (through isal, several times faster than zlib), zstd, or none.

The compression of a blob is found from its first bytes, whatever its media type says: Docker
archives carry no media types, and a wrong one is more common than a wrong magic number.
Never recompress a layer that came from elsewhere: another compressor gives other bytes,
and so another digest.
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

from dockyard.errors import InvalidArgument

GZIP = "gzip"
ZSTD = "zstd"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class CorruptLayer(InvalidArgument):
    """A layer whose compressed stream is damaged or cut short."""


def detect(head: bytes) -> str | None:
    if head.startswith(_GZIP_MAGIC):
        return GZIP
    if head.startswith(_ZSTD_MAGIC):
        return ZSTD
    return None


def peekable(stream: BinaryIO) -> BinaryIO:
    if hasattr(stream, "peek"):
        return stream
    return io.BufferedReader(stream)  # type: ignore[arg-type]


def decompressed(stream: BinaryIO, threads: int = 0) -> tuple[BinaryIO, str | None]:
    """A reader of the uncompressed bytes of `stream`, and the compression found.

    With `threads`, gzip is inflated in a background thread (isal releases the GIL), so that
    it overlaps the Python work of reading the tar.
    """
    stream = peekable(stream)
    kind = detect(stream.peek(4)[:4])  # type: ignore[attr-defined]
    if kind == GZIP:
        if threads:
            from isal import igzip_threaded

            return igzip_threaded.open(stream, "rb", threads=threads), kind  # type: ignore[return-value]
        from isal import igzip

        return igzip.IGzipFile(fileobj=stream, mode="rb"), kind  # type: ignore[return-value]
    if kind == ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True, closefd=False), kind  # type: ignore[return-value]
    return stream, None


def decompression_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a damaged or truncated compressed stream raises while it is read."""
    errors: list[type[BaseException]] = [EOFError, zlib.error, OSError]
    try:
        from isal import isal_zlib

        errors.append(isal_zlib.error)
    except ImportError:  # pragma: no cover
        pass
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def compressor(out: BinaryIO, kind: str | None, level: int | None = None) -> BinaryIO:
    """A writer that compresses into `out` (close it to finish the stream; `out` stays open)."""
    if kind is None:
        return _NoClose(out)  # type: ignore[return-value]
    if kind == GZIP:
        from isal import igzip

        # mtime=0: the same tar gives the same gzip bytes, so the same digest
        return igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=2 if level is None else level, mtime=0)  # type: ignore[return-value]
    if kind == ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3 if level is None else level).stream_writer(out, closefd=False)  # type: ignore[return-value]
    raise InvalidArgument(f"unknown compression {kind!r} (gzip, zstd or none)")


class _NoClose(io.RawIOBase):
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._out.write(data)
        return len(data)
