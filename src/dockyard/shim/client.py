"""The daemon's side of the supervisor: an asyncio client of `<root>/shim.sock`.

One connection carries every request (replies are matched by `rid`, so a long `wait` does not
hold up a `kill`); each `attach` opens a connection of its own that turns into a raw byte stream.
`connect(start=True)` starts the supervisor when nobody answers on the socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

from dockyard.shim import protocol as p

START_TIMEOUT = 20.0
# The private, immutable interpreter scripts/setup.sh installs (see dockyard.shim.inproc): the
# supervisor runs on it, so that the runtime verbs it forks keep the runtime's CVE-2019-5736 defence.
PRIVATE_PYTHON = "/usr/local/bin/dockyard-python"


def supervisor_command(root: str) -> list[str]:
    """`python -m dockyard.shim --root ROOT --detach`, isolated (-I -S) on the private interpreter
    when there is one; the supervisor needs nothing outside the standard library and dockyard."""
    import dockyard

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(dockyard.__file__)))
    if os.access(PRIVATE_PYTHON, os.X_OK):
        code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
                "from dockyard.shim.__main__ import main; sys.exit(main())")
        return [PRIVATE_PYTHON, "-I", "-S", "-c", code, "--root", root, "--detach"]
    return [sys.executable, "-m", "dockyard.shim", "--root", root, "--detach"]


class ConnectionLost(p.ShimError):
    """The connection to the supervisor ended before the reply came (it was stopped or restarted)."""


# requests that change nothing: safe to send again after the connection was lost mid-request
RETRY_OPS = frozenset({"wait", "state", "list", "stats"})


def _peer_closed(writer: asyncio.StreamWriter) -> bool:
    """Whether the supervisor has closed its end (EOF is waiting to be read), checked without
    consuming anything: a request written now would be lost."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    probe = socket.socket(fileno=sock.fileno())
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        probe.detach()


def socket_path(root: str) -> str:
    return os.path.join(root, p.SOCKET_NAME)


async def _open(root: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = socket_path(root)
    if len(path.encode()) >= 100:  # longer than sun_path: go through the directory's fd
        dfd = os.open(root, os.O_PATH | os.O_CLOEXEC)
        try:
            return await asyncio.open_unix_connection(f"/proc/self/fd/{dfd}/{p.SOCKET_NAME}", limit=1 << 20)
        finally:
            os.close(dfd)
    return await asyncio.open_unix_connection(path, limit=1 << 20)


async def start_supervisor(root: str) -> None:
    """Run `python -m dockyard.shim --root ROOT --detach`: it returns once the supervisor listens."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    log = os.open(os.path.join(root, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            *supervisor_command(root), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
            start_new_session=True)
    finally:
        os.close(log)
    try:
        code = await asyncio.wait_for(proc.wait(), START_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise p.ShimError(f"the supervisor on {root} did not start within {START_TIMEOUT:.0f} s") from None
    if code != 0:
        raise p.ShimError(f"the supervisor on {root} failed to start (exit {code}; see {root}/shim.log)")


class ShimClient:
    def __init__(self, root: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.root = root
        self._reader, self._writer = reader, writer
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._lost: BaseException | None = None
        self._reconnecting = asyncio.Lock()
        self._task = asyncio.get_running_loop().create_task(self._read_replies(), name="shim-replies")

    @classmethod
    async def connect(cls, root: str, *, start: bool = True) -> ShimClient:
        root = os.path.abspath(root)
        try:
            reader, writer = await _open(root)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            if not start:
                raise p.ShimError(f"no supervisor answers on {socket_path(root)}: {e.strerror}") from None
            await start_supervisor(root)
            reader, writer = await _open(root)
        return cls(root, reader, writer)

    async def close(self) -> None:
        self._writer.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(p.ShimError("the supervisor client was closed"))
        self._pending.clear()

    async def _read_replies(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    raise ConnectionLost("the supervisor closed the connection")
                msg = json.loads(line)
                fut = self._pending.pop(msg.get("rid"), None)
                if fut is None or fut.done():
                    continue
                if msg.get("ok"):
                    fut.set_result(msg.get("result"))
                else:
                    fut.set_exception(p.error_from_wire(msg.get("error") or {}))
        except asyncio.CancelledError:
            raise
        except (OSError, ValueError, p.ShimError) as e:
            self._lost = e if isinstance(e, ConnectionLost) else ConnectionLost(f"supervisor connection: {e}")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(self._lost)
            self._pending.clear()

    async def _reconnect(self) -> None:
        """The supervisor restarted (or the connection broke): connect again, starting it if needed.
        Requests still waiting on the old connection fail (RETRY_OPS ones are sent again)."""
        async with self._reconnecting:
            if self._lost is None and not self._writer.is_closing() and not _peer_closed(self._writer):
                return  # another caller reconnected meanwhile
            self._writer.close()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            lost = self._lost or ConnectionLost("the supervisor closed the connection")
            self._lost = lost
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(lost)
            self._pending.clear()
            self._reader, self._writer = await _open_or_start(self.root)
            self._lost = None
            self._task = asyncio.get_running_loop().create_task(self._read_replies(), name="shim-replies")

    async def call(self, op: str, **args: Any) -> Any:
        """Send one request and wait for its reply. A connection that the supervisor closed (it was
        restarted) is replaced before sending; a request that only reads (RETRY_OPS) is sent once
        more when the connection is lost while it waits, so that `wait` outlives a restart."""
        for attempt in (1, 2):
            if self._lost is not None or self._writer.is_closing() or _peer_closed(self._writer):
                await self._reconnect()
            self._next += 1
            rid = self._next
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[rid] = fut
            try:
                self._writer.write(json.dumps({"rid": rid, "op": op, **args}).encode() + b"\n")
                await self._writer.drain()
                return await fut
            except (ConnectionError, p.ShimError) as e:
                lost = isinstance(e, (ConnectionError, ConnectionLost))
                if lost and attempt == 1 and op in RETRY_OPS:
                    # not marking the connection lost here: another caller may have replaced it
                    # already; the check at the top of the loop sees whether this one is dead
                    continue
                if isinstance(e, ConnectionError):
                    raise p.ShimError(f"supervisor connection: {e}") from None
                raise
            finally:
                self._pending.pop(rid, None)
        raise AssertionError("not reached")

    # --- operations (see docs/daemon-design.md) ---

    async def create(self, id: str, *, bundle: str, runtime: str, runtime_root: str, tty: bool, stdin: bool,
                     log_path: str, log_max_size: int = 0, log_max_files: int = 1) -> int:
        return int(await self.call("create", id=id, bundle=bundle, runtime=runtime, runtime_root=runtime_root,
                                   tty=tty, stdin=stdin, log_path=log_path, log_max_size=log_max_size,
                                   log_max_files=log_max_files))

    async def start(self, id: str) -> None:
        await self.call("start", id=id)

    async def kill(self, id: str, signal: int, all: bool = False) -> None:
        await self.call("kill", id=id, signal=int(signal), all=all)

    async def pause(self, id: str) -> None:
        await self.call("pause", id=id)

    async def resume(self, id: str) -> None:
        await self.call("resume", id=id)

    async def exec(self, id: str, exec_id: str, process: dict[str, Any], tty: bool, stdin: bool) -> int:
        return int(await self.call("exec", id=id, exec_id=exec_id, process=process, tty=tty, stdin=stdin))

    async def wait(self, id: str, exec_id: str | None = None) -> p.ExitStatus:
        status = p.ExitStatus.from_dict(await self.call("wait", id=id, exec_id=exec_id))
        assert status is not None
        return status

    async def state(self, id: str) -> p.ContainerState:
        return p.ContainerState.from_dict(await self.call("state", id=id))

    async def list(self) -> list[p.ContainerState]:
        return [p.ContainerState.from_dict(d) for d in await self.call("list")]

    async def resize(self, id: str, exec_id: str | None, height: int, width: int) -> None:
        await self.call("resize", id=id, exec_id=exec_id, height=int(height), width=int(width))

    async def close_stdin(self, id: str, exec_id: str | None = None) -> None:
        await self.call("close_stdin", id=id, exec_id=exec_id)

    async def delete(self, id: str, force: bool = False) -> None:
        await self.call("delete", id=id, force=force)

    async def stats(self, id: str) -> dict[str, Any]:
        return dict(await self.call("stats", id=id))

    async def attach(self, id: str, exec_id: str | None, *, stdin: bool, stdout: bool,
                     stderr: bool, stdin_eof: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection that carries the process's raw stdio from now on (see dockyard.shim.protocol)."""
        reader, writer = await _open_or_start(self.root)
        writer.write(json.dumps({"rid": 0, "op": "attach", "id": id, "exec_id": exec_id, "stdin": stdin,
                                 "stdout": stdout, "stderr": stderr, "stdin_eof": stdin_eof}).encode() + b"\n")
        try:
            await writer.drain()
            line = await reader.readline()
            if not line:
                raise p.ShimError(f"attach {id}: the supervisor closed the connection")
            msg = json.loads(line)
        except (OSError, ValueError) as e:
            writer.close()
            raise p.ShimError(f"attach {id}: {e}") from None
        if not msg.get("ok"):
            writer.close()
            raise p.error_from_wire(msg.get("error") or {})
        return reader, writer


async def _open_or_start(root: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await _open(root)
    except (FileNotFoundError, ConnectionRefusedError):
        await start_supervisor(root)
        return await _open(root)

