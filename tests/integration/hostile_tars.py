"""A corpus of hostile (and a few merely broken) layer archives, made on the fly.

Each case is a list of layers applied in order, and what must happen: "hostile" (HostileLayer),
"invalid" (any InvalidArgument: InvalidLayer, CorruptLayer, DigestMismatch), or "ok" with a
check of where things landed. Escapes aim at `outside`, a directory beside the snapshots that
must stay empty, so that a failure is visible instead of damaging the host.

Run as a script to write the corpus to a directory: python hostile_tars.py DIR
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Case:
    name: str
    layers: list[bytes]
    expect: str                      # "hostile", "invalid" or "ok"
    check: Callable[[str], None] | None = None   # called with the top snapshot's merged view root (ok cases)
    limits: dict[str, int | str] = field(default_factory=dict)


def _info(name: str, type_: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def tar(*entries: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return out.getvalue()


def f(name: str, data: bytes = b"x", **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, **kw), data


def d(name: str, **kw: object) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.DIRTYPE, **kw), None


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.SYMTYPE, linkname=target), None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.LNKTYPE, linkname=target), None


def dev(name: str, major: int, minor: int, block: bool = False) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.BLKTYPE if block else tarfile.CHRTYPE, devmajor=major, devminor=minor), None


def _raw_header(name: str, size: int, type_: bytes = tarfile.REGTYPE) -> bytes:
    """A ustar header that claims `size` bytes, whatever follows it."""
    info = _info(name, type_)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _exists(rel: str) -> Callable[[str], None]:
    def check(root: str) -> None:
        assert os.path.lexists(os.path.join(root, rel)), f"{rel} should be in the snapshot"
    return check


def _no_overlay_xattr(root: str) -> None:
    path = os.path.join(root, "file")
    assert os.path.exists(path)
    names = os.listxattr(path)
    assert not any(n.startswith("trusted.overlay.") for n in names), names
    assert "user.ok" in names


def corpus(outside: str) -> list[Case]:
    big_header = tarfile.TarInfo("x")
    big_header.pax_headers = {"comment": "y" * (2 << 20)}
    zero_bomb = gzip.compress(tar(f("zeros", b"\0" * (20 << 20))), compresslevel=9)
    sane = tar(f("a", b"hello"))
    return [
        Case("dotdot", [tar(f("../escape"))], "hostile"),
        Case("dotdot-deep", [tar(d("a"), f("a/../../escape"))], "hostile"),
        Case("dotdot-hidden-in-middle", [tar(f("a/b/../../../escape"))], "hostile"),
        Case("absolute-path-is-confined", [tar(f(outside + "/abs-escape"))], "ok", _exists(outside.lstrip("/") + "/abs-escape")),
        Case("write-through-planted-symlink", [tar(sym("evil", outside), f("evil/escape"))], "hostile"),
        Case("write-through-relative-symlink", [tar(d("a"), sym("a/up", "."), f("a/up/up/escape"))], "hostile"),
        Case("mkdir-through-planted-symlink", [tar(sym("evil", outside), d("evil/newdir"))], "hostile"),
        Case("symlink-replaces-dir-then-write", [tar(d("d"), f("d/x"), sym("d", outside), f("d/y"))], "hostile"),
        Case("relative-symlink-points-outside", [tar(sym("evil", "../../../../../../" + outside.lstrip("/")))], "hostile"),
        Case("deep-relative-symlink-points-outside", [tar(d("a"), d("a/b"), sym("a/b/evil", "../../../x"))], "hostile"),
        Case("absolute-symlink-is-kept", [tar(sym("etc-link", "/etc"))], "ok", _exists("etc-link")),
        Case("hardlink-outside", [tar(hard("x", "../../../etc/passwd"))], "hostile"),
        Case("hardlink-absolute-host-file", [tar(hard("x", "/etc/passwd"))], "invalid"),
        Case("hardlink-through-symlink", [tar(sym("evil", "/etc"), hard("x", "evil/passwd"))], "hostile"),
        Case("hardlink-name-through-symlink", [tar(f("t"), sym("evil", outside), hard("evil/x", "t"))], "hostile"),
        Case("hardlink-to-directory", [tar(d("dir"), hard("x", "dir"))], "hostile"),
        Case("symlink-in-lower-then-write", [tar(sym("evil", outside)), tar(f("evil/escape"))], "hostile"),
        Case("symlink-in-lower-then-hardlink", [tar(sym("evil", "/etc")), tar(hard("x", "evil/passwd"))], "hostile"),
        Case("symlink-in-lower-then-whiteout", [tar(sym("evil", outside)), tar(f("evil/.wh.x", b""))], "hostile"),
        Case("opaque-through-symlink", [tar(sym("evil", outside), f("evil/.wh..wh..opq", b""))], "hostile"),
        Case("whiteout-dotdot", [tar(d("a"), f("a/.wh...", b""))], "hostile"),
        Case("device-outside-dev", [tar(dev("null2", 1, 3))], "hostile"),
        Case("block-device-outside-dev", [tar(dev("disk", 8, 0, block=True))], "hostile"),
        Case("device-in-dev-is-allowed", [tar(d("dev"), dev("dev/null", 1, 3))], "ok", _exists("dev/null")),
        Case("device-in-dev-refused-by-policy", [tar(d("dev"), dev("dev/null", 1, 3))], "hostile", limits={"devices": "none"}),
        Case("absurd-file-size", [_raw_header("big", 100 << 30) + b"\0" * 1024], "hostile", limits={"max_file_size": 1 << 30}),
        Case("size-larger-than-data", [_raw_header("cut", 10_000) + b"x" * 512], "invalid"),
        Case("huge-pax-header", [tar((big_header, b""))], "hostile"),
        Case("decompression-bomb", [zero_bomb], "hostile", limits={"max_total_size": 10 << 20}),
        Case("too-many-entries", [tar(*[f(f"f{i}") for i in range(50)])], "hostile", limits={"max_entries": 20}),
        Case("long-name-component", [tar(f("a" * 300))], "hostile"),
        Case("overlay-xattrs-are-dropped",
             [tar((_info("file", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                               "SCHILY.xattr.trusted.overlay.opaque": "y",
                                               "SCHILY.xattr.user.ok": "1"}), b"x"))],
             "ok", _no_overlay_xattr),
        Case("truncated-archive", [sane[:700]], "invalid"),
        Case("corrupt-gzip", [gzip.compress(sane)[:40] + b"garbage" * 10], "invalid"),
        Case("bad-header-checksum", [sane[:148] + b"99999999" + sane[156:]], "invalid"),
        Case("unknown-entry-type", [tar((_info("vol", b"V"), None))], "invalid"),
    ]


def main(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for case in corpus("/tmp/dockyard-outside"):
        for i, layer in enumerate(case.layers):
            with open(os.path.join(directory, f"{case.name}.{i}.{case.expect}.tar"), "wb") as out:
                out.write(layer)


if __name__ == "__main__":
    main(sys.argv[1])
