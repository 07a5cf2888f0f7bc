"""Reading and writing cgroup control files, with errors that name the file and the value.

Every kernel failure becomes a ``SystemFailure`` carrying errno, so callers can tell EBUSY
(memory limit below usage) from EINVAL (a value the kernel refuses) without parsing text.

Files are read and written with os.open/os.read/os.write: a control file is a few bytes, and
Python's buffered text layer would cost more than the system calls.
"""

from __future__ import annotations

import errno
import os
import time

from dockyard.errors import NotFound, SystemFailure

TYPE_CHECKING = False  # typing is not imported at run time: the runtime CLI must start fast
if TYPE_CHECKING:
    from collections.abc import Iterator

PROCS_FILE = "cgroup.procs"
TASKS_FILE = "tasks"  # v1 only: thread ids

# rmdir(2) of a cgroup whose last process is still exiting fails with EBUSY for a moment.
_RMDIR_TRIES = 12
_RMDIR_FIRST_DELAY = 0.002
_READ_SIZE = 16384


def _failure(action: str, path: str, err: OSError) -> SystemFailure:
    code = err.errno or 0
    return SystemFailure(f"{action} {path}: {os.strerror(code) if code else err}", code)


def read_bytes(path: str) -> bytes:
    """The whole of a kernel file (control file, /proc entry); failures are ``SystemFailure``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []  # until EOF: a seq_file gives about a page per read(2)
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        raise _failure("reading", path, e) from None
    return b"".join(chunks)


def read(directory: str, name: str) -> str:
    """The whole control file; a missing file is a ``SystemFailure`` with ENOENT."""
    return read_bytes(os.path.join(directory, name)).decode()


def read_optional(directory: str, name: str) -> str | None:
    """The control file, or None where the kernel or the controller lacks it."""
    try:
        return read(directory, name)
    except SystemFailure as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return None
        raise


def parse_uint(text: str, where: str) -> int:
    """A single unsigned number; v2's "max" reads as 2**64-1 like the v1 kernels print it."""
    value = text.strip()
    if value == "max":
        return 2**64 - 1
    try:
        return int(value)
    except ValueError:
        raise SystemFailure(f"unexpected content {value!r} in {where}") from None


def read_uint(directory: str, name: str) -> int:
    return parse_uint(read(directory, name), os.path.join(directory, name))


def parse_keyed(text: str, where: str) -> dict[str, int]:
    """"key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise SystemFailure(f"malformed line {line!r} in {where}")
        out[parts[0]] = parse_uint(parts[1], where)
    return out


def read_keyed(directory: str, name: str) -> dict[str, int]:
    return parse_keyed(read(directory, name), os.path.join(directory, name))


def write(directory: str, name: str, value: str) -> None:
    """One write(2) of `value`, as the kernel parses each write as one request.

    O_TRUNC is what a shell's `echo x > file` does too: cgroupfs ignores it, plain files
    (fake trees in tests) need it.
    """
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise _failure(f"opening (to write {value!r})", path, e) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise _failure(f"writing {value!r} to", path, e) from None
    finally:
        os.close(fd)


def write_pid(directory: str, pid: int) -> None:
    """Move `pid` into the cgroup; a task still in TASK_NEW gives EINVAL for a moment, so retry."""
    for attempt in range(5):
        try:
            write(directory, PROCS_FILE, str(pid))
            return
        except SystemFailure as e:
            if e.errno == errno.ESRCH:
                raise NotFound(f"process {pid} does not exist (adding it to {directory})") from None
            if e.errno != errno.EINVAL or attempt == 4:
                raise
            time.sleep(0.03)


def procs(directory: str) -> list[int]:
    return [int(line) for line in read(directory, PROCS_FILE).split()]


def walk_dirs(top: str) -> Iterator[str]:
    """`top` and every sub-cgroup below it, parents before children."""
    yield top
    for dirpath, dirnames, _ in os.walk(top):
        for d in sorted(dirnames):
            yield os.path.join(dirpath, d)


def all_procs(top: str) -> list[int]:
    """Every pid in `top` and its sub-cgroups; sub-cgroups that vanish meanwhile are skipped."""
    found: list[int] = []
    for d in walk_dirs(top):
        try:
            found.extend(procs(d))
        except SystemFailure as e:
            if d == top or e.errno not in (errno.ENOENT, errno.ENODEV):
                raise
    return found


def _rmdir_retrying(path: str) -> None:
    delay = _RMDIR_FIRST_DELAY
    for attempt in range(_RMDIR_TRIES):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == _RMDIR_TRIES - 1:
                raise _failure("removing cgroup", path, e) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def remove_tree(top: str) -> None:
    """rmdir `top` and its sub-cgroups, deepest first; a missing directory is already done.

    Plain recursive deletion cannot work here: the control files are not removable, only the
    directories, and the kernel drops the files with each rmdir.
    """
    try:
        os.rmdir(top)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for d in sorted(walk_dirs(top), key=lambda p: p.count("/"), reverse=True):
        _rmdir_retrying(d)


class Write:
    """One planned control-file write.

    `retry_on_einval`: the kernel may refuse this value until a partner write lands (a CFS
    period shorter than the current one before the new quota, for instance), so on EINVAL it
    is retried once after the rest of the plan.
    """

    __slots__ = ("directory", "name", "value", "retry_on_einval")

    def __init__(self, directory: str, name: str, value: str, retry_on_einval: bool = False) -> None:
        self.directory = directory
        self.name = name
        self.value = value
        self.retry_on_einval = retry_on_einval

    def _fields(self) -> tuple[str, str, str, bool]:
        return (self.directory, self.name, self.value, self.retry_on_einval)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Write:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Write({self.directory!r}, {self.name!r}, {self.value!r}, retry_on_einval={self.retry_on_einval})"

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


def check_targets(writes: list[Write], what: dict[str, str]) -> None:
    """Before writing anything: every target file must exist.

    `what` maps a control file name to the setting that asked for it, for the error message.
    """
    for w in writes:
        if not os.path.isdir(w.directory):
            raise SystemFailure(f"cgroup {w.directory} does not exist (create() it before set())", errno.ENOENT)
        if not os.path.exists(w.path):
            setting = what.get(w.name, w.name)
            raise SystemFailure(f"{setting}: this kernel or cgroup has no {w.path}", errno.ENOENT)


def apply_writes(writes: list[Write]) -> None:
    deferred = []
    for w in writes:
        try:
            write(w.directory, w.name, w.value)
        except SystemFailure as e:
            if not (w.retry_on_einval and e.errno == errno.EINVAL):
                raise
            deferred.append(w)
    for w in deferred:
        write(w.directory, w.name, w.value)
