"""Images built on this machine, so that Dockyard is useful offline.

busybox:latest is made from the host's static busybox (Debian's busybox-static) as a proper
OCI image: /bin/busybox with a hard link per applet (as the official image has), a small /etc
(passwd, group, hosts, nsswitch.conf), and Cmd ["sh"].

Debian's busybox-static is glibc linked statically. Static glibc still loads NSS modules for
name lookups when /etc/nsswitch.conf asks for them, so the image carries the host's
libnss_files, libnss_dns, libresolv, libc and the dynamic loader, in the paths static glibc
searches: `wget http://name/` resolves through /etc/hosts and DNS inside the container.

The layer is reproducible: entries sorted, owned by root, every time stamp the newest
modification time of the host files it is made of. The same host files give the same image ID.
"""

from __future__ import annotations

import io
import os
import subprocess
import sysconfig
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import NotFound
from dockyard.image.builder import new_config, rfc3339, store_image, store_layer
from dockyard.image.model import Image
from dockyard.image.store import ImageStore
from dockyard.types.oci import host_platform
from dockyard.types.reference import parse_image

BUSYBOX = "/bin/busybox"
BUSYBOX_REF = "docker.io/library/busybox:latest"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
"""
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_NSSWITCH = """passwd:   files
group:    files
shadow:   files
hosts:    files dns
networks: files
protocols: files
services: files
"""
_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "lib": 0o755, "proc": 0o555, "root": 0o700,
         "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/sbin": 0o755, "var": 0o755, "var/spool": 0o755,
         "var/spool/mail": 0o755, "var/www": 0o755}
_NSS_LIBS = ("libc.so.6", "libnss_files.so.2", "libnss_dns.so.2", "libresolv.so.2", "ld-linux-x86-64.so.2",
             "ld-linux-aarch64.so.1")


@dataclass(frozen=True)
class _File:
    path: str
    mode: int
    data: bytes | None = None       # content, or None for a copy of `source`
    source: str | None = None
    link: str | None = None         # hard link target
    symlink: str | None = None


def _static_busybox() -> str:
    path = os.path.realpath(BUSYBOX)
    if not os.path.exists(path):
        raise NotFound(f"embedded image busybox: {BUSYBOX} is missing (install Debian's busybox-static)")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if b"/lib64/ld-linux" in head or b"/lib/ld-linux" in head:
        raise NotFound(f"embedded image busybox: {BUSYBOX} is dynamically linked; it needs the static one (busybox-static)")
    return path


def _glibc_files() -> list[tuple[str, str]]:
    """(path in the image, host file) of the NSS modules and what they need."""
    triplet = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    out = []
    for name in _NSS_LIBS:
        for host_dir in (f"/lib/{triplet}", f"/usr/lib/{triplet}"):
            host = os.path.join(host_dir, name)
            if os.path.exists(host):
                out.append((f"lib/{triplet}/{name}", os.path.realpath(host)))
                break
    return out


def busybox_files() -> tuple[list[_File], float]:
    busybox = _static_busybox()
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    files = [_File("bin/busybox", 0o755, source=busybox)]
    files += [_File(f"bin/{a}", 0o755, link="bin/busybox") for a in sorted(set(applets)) if a != "busybox" and "/" not in a]
    files += [_File("etc/passwd", 0o644, _PASSWD.encode()), _File("etc/group", 0o644, _GROUP.encode()),
              _File("etc/hosts", 0o644, _HOSTS.encode()), _File("etc/nsswitch.conf", 0o644, _NSSWITCH.encode())]
    libs = _glibc_files()
    triplet_dir = os.path.dirname(libs[0][0]) if libs else None
    for image_path, host in libs:
        files.append(_File(image_path, 0o755, source=host))
        if image_path.endswith("ld-linux-x86-64.so.2"):
            files.append(_File("lib64/ld-linux-x86-64.so.2", 0o777, symlink=f"/{image_path}"))
    sources = [busybox] + [h for _, h in libs]
    epoch = float(int(max(os.stat(s).st_mtime for s in sources)))
    dirs = dict(_DIRS)
    if triplet_dir:
        dirs[triplet_dir] = 0o755
    if any(f.path.startswith("lib64/") for f in files):
        dirs["lib64"] = 0o755
    entries = [_File(d, mode | 0o040000) for d, mode in dirs.items()] + files
    # hard links after their target: a link must name a file already in the archive
    return sorted(entries, key=lambda f: (f.link is not None, f.path)), epoch


def write_busybox_tar(out: BinaryIO) -> None:
    entries, epoch = busybox_files()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mtime = int(epoch)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = e.mode & 0o7777
            if e.mode & 0o040000:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.link is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = e.link
                tar.addfile(info)
            elif e.symlink is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = e.symlink
                tar.addfile(info)
            elif e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                assert e.source is not None
                info.size = os.stat(e.source).st_size
                with open(e.source, "rb") as f:
                    tar.addfile(info, f)


def build_busybox(store: ImageStore) -> Image:
    _, epoch = busybox_files()
    created = rfc3339(epoch)
    with store.operation() as op:
        layer, diff_id = store_layer(store, op, write_busybox_tar)
        config = new_config(host_platform(), [diff_id], {"Env": [PATH_ENV], "Cmd": ["sh"]},
                            [{"created": created, "created_by": "dockyard: embedded busybox from the host's /bin/busybox (busybox-static)",
                              "comment": "built locally by Dockyard"}], created)
        manifest = store_image(store, op, config, [layer])
        return store.create(op, manifest, [parse_image(BUSYBOX_REF)])


EMBEDDED: dict[str, Callable[[ImageStore], Image]] = {BUSYBOX_REF: build_busybox}


def is_embedded(text: str) -> bool:
    try:
        return str(parse_image(text)) in EMBEDDED
    except Exception:  # noqa: BLE001 - not a reference at all
        return False


def ensure_embedded(store: ImageStore, text: str) -> Image:
    """The embedded image named `text`, built into the store if it is not there yet."""
    ref = str(parse_image(text))
    builder = EMBEDDED.get(ref)
    if builder is None:
        raise NotFound(f"No such image: {text} (and it is not one of the embedded images: {', '.join(sorted(EMBEDDED))})")
    existing = store.lookup(ref)
    return existing if existing is not None else builder(store)


def get_or_embedded(store: ImageStore, text: str) -> Image:
    """An image from the store, falling back to the embedded source for the embedded names only."""
    found = store.lookup(text)
    if found is not None:
        return found
    if is_embedded(text):
        return ensure_embedded(store, text)
    raise NotFound(f"No such image: {text}")
