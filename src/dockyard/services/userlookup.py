"""Resolve a Docker ``--user`` string against a container rootfs's /etc/passwd and /etc/group."""
from __future__ import annotations

import os
import stat

from dockyard.errors import InvalidArgument


MAX_TABLE = 4 << 20


def _read_table(rootfs: str, name: str) -> list[list[str]]:
    """/etc/NAME of the container, resolved inside its root (a symlink there cannot point the
    daemon at a host file)."""
    from dockyard.errors import SystemFailure
    from dockyard.linux import libc

    try:
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        # O_NONBLOCK: a FIFO planted there must not hang the daemon
        fd = libc.openat2(root, f"/etc/{name}", os.O_RDONLY | os.O_NONBLOCK,
                          libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
    except SystemFailure:
        return []
    finally:
        os.close(root)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return []
    with open(fd, "rb") as handle:
        lines = handle.read(MAX_TABLE).decode("utf-8", "replace").splitlines()
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def resolve_user(rootfs: str, user: str, group_add: list[str] | None = None) -> dict[str, object]:
    """The OCI ``process.user`` for ``user`` ("", name, uid, uid:gid, name:group), as moby does.

    A name that is not in /etc/passwd is an error; a numeric uid that is not there runs with
    gid 0.  Supplementary groups are the groups listing the user as a member, then group_add.
    """
    passwd = [row for row in _read_table(rootfs, "passwd") if len(row) >= 4]
    groups = [row for row in _read_table(rootfs, "group") if len(row) >= 3]
    user_part, _, group_part = (user or "").partition(":")
    uid, gid, name = 0, 0, "root"
    entry = next((row for row in passwd if row[0] == user_part or (user_part.isdigit() and row[2] == user_part)),
                 None) if user_part else next((row for row in passwd if row[2] == "0"), None)
    if entry is not None:
        name, uid, gid = entry[0], int(entry[2]), int(entry[3])
    elif user_part.isdigit():
        uid, name = int(user_part), ""
    elif user_part:
        raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
    if group_part:
        gid = _group_id(groups, group_part)
    extra: list[int] = []
    if name:
        extra = [int(row[2]) for row in groups if len(row) > 3 and name in row[3].split(",")]
    for wanted in group_add or []:
        extra.append(_group_id(groups, wanted))
    result: dict[str, object] = {"uid": uid, "gid": gid}
    seen: list[int] = []
    for g in extra:
        if g not in seen:
            seen.append(g)
    if seen:
        result["additionalGids"] = seen
    return result


def _group_id(groups: list[list[str]], wanted: str) -> int:
    for row in groups:
        if row[0] == wanted:
            return int(row[2])
    if wanted.isdigit():
        return int(wanted)
    raise InvalidArgument(f"unable to find group {wanted}: no matching entries in group file")
