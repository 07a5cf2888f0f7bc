"""What the supervisor and its clients share: the wire protocol, the result types, the errors.

Wire protocol (a unix stream socket, `<root>/shim.sock`, mode 0600):

- a request is one JSON object on one line: `{"rid": N, "op": "create", ...arguments}`;
- a reply is one line: `{"rid": N, "ok": true, "result": ...}` or
  `{"rid": N, "ok": false, "error": {"kind": "NotFound", "message": "..."}}`;
- requests on one connection are served concurrently (a `wait` does not hold up a `kill`) and
  replies carry the request's `rid`;
- a line that is not a JSON object gets an InvalidArgument reply with `"rid": null`, an unknown
  `op` or a bad argument an InvalidArgument reply; the connection stays usable. Every request gets exactly one reply (an
  unexpected failure inside the supervisor is a ShimError reply, never silence);
- operations and their arguments (besides `rid`, `op`):
  create {id, bundle, runtime, runtime_root, tty, stdin, log_path ("" = no log), log_max_size,
  log_max_files} -> init pid; start {id}; kill {id, signal, all}; pause {id}; resume {id};
  exec {id, exec_id, process (OCI process object), tty, stdin} -> pid;
  wait {id, exec_id|null} -> ExitStatus (when it has exited); state {id} -> ContainerState;
  list -> [ContainerState]; resize {id, exec_id|null, height, width} (0..65535);
  close_stdin {id, exec_id|null}; delete {id, force} (refused for a container not stopped unless
  force); stats {id} -> the runtime's `events --stats` data; attach {id, exec_id|null, stdin,
  stdout, stderr} -> {"tty": bool};
- ids are 1-128 characters of `[A-Za-z0-9_.-]`, not starting with a dot;
- `attach` is the last request on its connection: after its reply line the connection carries
  raw bytes. With a tty, the pty's bytes both ways; without one, the supervisor sends Docker's
  multiplexed frames (`struct ">BxxxL"`: stream 1 stdout / 2 stderr, big-endian length, data) and
  reads raw stdin bytes; the client's half-close (write_eof) closes the process's stdin (with a
  tty: sends it ^D). An attach to a process that has ended is answered and closed at once. An
  exec's output from before its first attach is replayed to that attach (up to 1 MiB); a client
  more than 4 MiB behind is disconnected, so that it holds up nobody.
- `ShimClient` replaces a connection the supervisor closed (restart) before sending, and sends
  wait/state/list/stats once more when the connection is lost while they wait; a supervisor that
  is restarted answers `wait` for containers started by its predecessor with UNKNOWN_EXIT.
- only one supervisor serves a root (`shim.lock`, flock): a second one waits until the first
  answers on the socket (then exits 1; with --detach its command still exits 0) or, if the first
  one was on its way out, takes the root over.

On disk, under `--root`:

    shim.sock  shim.pid  shim.lock
    <id>/state.json     the container as the supervisor knows it (supervisor.Container.save:
                        config, status, pids, start time, exit, execs), written atomically at
                        every change
    <id>/runtime.log    the OCI runtime's JSON log (its error messages are returned to clients)
    <id>/init.pid, <id>/exec-<exec id>.pid, <id>/exec-<exec id>.json   runtime inputs/outputs
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

from dockyard import errors

STDOUT = 1
STDERR = 2
FRAME_HEADER = struct.Struct(">BxxxL")

SOCKET_NAME = "shim.sock"
PID_NAME = "shim.pid"
LOCK_NAME = "shim.lock"

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

# Exit code recorded when a process could not be reaped by this supervisor (it was started by a
# previous supervisor that died): the process is gone, its status is not knowable (containerd: 255).
UNKNOWN_EXIT = 255


class ShimError(errors.DockyardError):
    """The supervisor or the OCI runtime it called failed; the message says which and why."""


_KINDS: dict[str, type[errors.DockyardError]] = {
    "InvalidArgument": errors.InvalidArgument,
    "NotFound": errors.NotFound,
    "AlreadyExists": errors.AlreadyExists,
    "WrongState": errors.WrongState,
    "NotImplementedFeature": errors.NotImplementedFeature,
    "SystemFailure": errors.SystemFailure,
    "ShimError": ShimError,
}


def error_to_wire(exc: BaseException) -> dict[str, str]:
    kind = type(exc).__name__ if type(exc).__name__ in _KINDS else "ShimError"
    return {"kind": kind, "message": str(exc) or type(exc).__name__}


def error_from_wire(err: dict[str, Any]) -> errors.DockyardError:
    cls = _KINDS.get(str(err.get("kind")), ShimError)
    return cls(str(err.get("message", "supervisor error")))


def rfc3339nano(ns: int | None = None) -> str:
    """UTC time as Go's time.RFC3339Nano prints it (fraction without trailing zeros)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def frame(stream: int, data: bytes) -> bytes:
    return FRAME_HEADER.pack(stream, len(data)) + data


@dataclass
class ExitStatus:
    code: int
    exited_at: str
    oom_killed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "exited_at": self.exited_at, "oom_killed": self.oom_killed}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ExitStatus | None:
        if not d:
            return None
        return cls(int(d["code"]), str(d["exited_at"]), bool(d.get("oom_killed", False)))


@dataclass
class ContainerState:
    id: str
    status: str
    pid: int
    exit: ExitStatus | None
    tty: bool
    stdin: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "pid": self.pid,
                "exit": self.exit.to_dict() if self.exit else None, "tty": self.tty, "stdin": self.stdin}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContainerState:
        return cls(str(d["id"]), str(d["status"]), int(d["pid"]), ExitStatus.from_dict(d.get("exit")),
                   bool(d["tty"]), bool(d["stdin"]))
