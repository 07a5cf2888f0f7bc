"""The supervisor process: one asyncio loop for every container of a daemon exec-root.

It is the child subreaper of every container init and exec'd process (the runtime forks them and
exits, so they are re-parented here), reaps everything on SIGCHLD and records exit statuses.
It owns the containers' stdio (pipes, or the pty master the runtime sends over a console
socket), copies output to the json-file log and to attached clients, and persists each
container's record so that a restarted daemon can list, attach to and wait for it.

On SIGTERM or SIGINT it removes its socket and pid file and exits, leaving the containers
running; their stdout/stderr pipes then have no reader (writes get EPIPE), as with a dead
containerd shim. A new supervisor started on the same root lists them from their records and
watches still-running inits through pidfds (their exit code is then unknown: 255).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import termios
import time
from typing import Any

from dockyard import errors
from dockyard.linux import libc
from dockyard.runtime.console import recv_master
from dockyard.shim import inproc
from dockyard.shim import protocol as p
from dockyard.shim.logger import JsonFileLogger
from dockyard.utils.fileio import write_json_atomic

READ_CHUNK = 64 * 1024
IO_DRAIN_TIMEOUT = 2.0  # after an exit, how long background holders of the pipes may keep them open
CLIENT_BUFFER_LIMIT = 4 * 1024 * 1024  # an attached client further behind than this is dropped
EXEC_REPLAY_LIMIT = 1024 * 1024  # exec output kept until the first attach (the exec starts first)
UNCLAIMED_MAX_AGE = 30.0  # seconds an exit nobody watched yet is kept (see Reaper)
KEEP_EXITED_EXECS = 64  # finished execs remembered per container (their exit codes can be waited for)
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or value[0] == "." or not set(value) <= _ID_CHARS or len(value) > 128:
        raise errors.InvalidArgument(f"invalid {what} {value!r}")
    return value


class Reaper:
    """waitpid(-1) on every SIGCHLD; hands (exit code, exited_at) to whoever watches the pid.

    An exit reaped before anyone watched its pid (a process that ended before the runtime wrote
    its pid file) is kept for UNCLAIMED_MAX_AGE seconds only: after that the pid may belong to a
    new process (orphans re-parented to us are reaped too), whose watcher must not get it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watchers: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._unclaimed: dict[int, tuple[int, str, float]] = {}
        self.clock = time.monotonic

    def install(self) -> None:
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            result = (128 - code if code < 0 else code, p.rfc3339nano())
            fut = self._watchers.pop(pid, None)
            if fut is not None and not fut.done():
                fut.set_result(result)
            else:
                if len(self._unclaimed) > 4096:
                    self._unclaimed.pop(next(iter(self._unclaimed)))
                self._unclaimed.pop(pid, None)  # keep the dict in reaping order
                self._unclaimed[pid] = (*result, self.clock())

    def watch(self, pid: int) -> asyncio.Future[tuple[int, str]]:
        """A future for pid's exit. An exit reaped before the pid was known is still delivered."""
        fut = self._watchers.get(pid)
        if fut is None:
            fut = self._loop.create_future()
            self._forget_old()
            if pid in self._unclaimed:
                code, exited_at, _ = self._unclaimed.pop(pid)
                fut.set_result((code, exited_at))
            else:
                self._watchers[pid] = fut
        return fut

    def _forget_old(self) -> None:
        limit = self.clock() - UNCLAIMED_MAX_AGE
        while self._unclaimed:
            pid, (_, _, reaped) = next(iter(self._unclaimed.items()))
            if reaped >= limit:
                return
            del self._unclaimed[pid]


class FdWriter:
    """Non-blocking writes to a pipe or pty with a buffer; never blocks the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, eof: bytes | None = None) -> None:
        self._loop, self._fd, self._eof = loop, fd, eof
        os.set_blocking(fd, False)
        self._buf = bytearray()
        self._close_when_drained = False

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, data: bytes) -> None:
        if self._fd < 0 or not data:
            return
        if not self._buf:
            try:
                n = os.write(self._fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                self.close()
                return
            data = data[n:]
            if not data:
                return
            self._loop.add_writer(self._fd, self._flush)
        self._buf += data

    def _flush(self) -> None:
        try:
            n = os.write(self._fd, self._buf)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self._buf[:n]
        if not self._buf:
            self._loop.remove_writer(self._fd)
            if self._close_when_drained:
                self.close()

    def write_eof(self) -> None:
        """Close stdin: the pipe is closed; a pty gets its EOF character (the master stays open)."""
        if self._eof is not None:
            self.write(self._eof)
        elif self._buf:
            self._close_when_drained = True
        else:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_writer(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._buf.clear()


class Attachment:
    def __init__(self, writer: asyncio.StreamWriter, stdout: bool, stderr: bool, framed: bool) -> None:
        self.writer, self.stdout, self.stderr, self.framed = writer, stdout, stderr, framed

    def send(self, stream: int, data: bytes) -> bool:
        """False when the client is gone or too far behind (it is then dropped)."""
        if (stream == p.STDOUT and not self.stdout) or (stream == p.STDERR and not self.stderr):
            return True
        if self.writer.is_closing():
            return False
        if self.writer.transport.get_write_buffer_size() > CLIENT_BUFFER_LIMIT:
            # abort, not close: close() would keep the connection and its buffer until a client
            # that does not read has taken all of it
            self.writer.transport.abort()
            return False
        self.writer.write(p.frame(stream, data) if self.framed else data)
        return True


class Process:
    """A container's init or one exec'd process: its stdio, attached clients and exit."""

    def __init__(self, sup: Supervisor, container: Container, exec_id: str | None, tty: bool, stdin: bool) -> None:
        self.sup, self.container, self.exec_id, self.tty, self.stdin = sup, container, exec_id, tty, stdin
        self.pid = 0
        self.exit: p.ExitStatus | None = None
        self.exited = asyncio.Event()
        self.io_done = asyncio.Event()
        self.stdin_writer: FdWriter | None = None
        self.master = -1
        self._readers: dict[int, int] = {}  # fd -> stream
        self.clients: list[Attachment] = []
        self.logger: JsonFileLogger | None = None
        self._replay: list[tuple[int, bytes]] | None = [] if exec_id is not None else None
        self._replay_size = 0

    @property
    def label(self) -> str:
        return self.container.id + (f" exec {self.exec_id}" if self.exec_id else "")

    # --- output ---

    def start_io(self, outputs: dict[int, int]) -> None:
        """Read `outputs` (fd -> stream); with a tty, the master is both output and stdin."""
        loop = self.sup.loop
        for fd, stream in outputs.items():
            os.set_blocking(fd, False)
            self._readers[fd] = stream
            loop.add_reader(fd, self._on_readable, fd)
        if not self._readers:
            self.io_done.set()

    def _on_readable(self, fd: int) -> None:
        stream = self._readers[fd]
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                self.sup.warn(f"{self.label}: reading output: {e}")
            data = b""
        if not data:
            self._end_stream(fd, stream)
            return
        if self.logger is not None:
            self.logger.write(stream, data)
        if self._replay is not None and not self.clients:
            if self._replay_size + len(data) <= EXEC_REPLAY_LIMIT:
                self._replay.append((stream, data))
                self._replay_size += len(data)
        self.clients = [c for c in self.clients if c.send(stream, data)]

    def _end_stream(self, fd: int, stream: int) -> None:
        self.sup.loop.remove_reader(fd)
        del self._readers[fd]
        if fd != self.master:
            os.close(fd)
        if self.logger is not None:
            self.logger.flush(stream)
        if not self._readers:
            self.io_done.set()

    def close_io(self) -> None:
        for fd, stream in list(self._readers.items()):
            self._end_stream(fd, stream)
        if self.stdin_writer is not None:
            self.stdin_writer.close()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        for c in self.clients:
            c.writer.close()
        self.clients = []

    # --- attach ---

    def attach(self, writer: asyncio.StreamWriter, stdout: bool, stderr: bool) -> Attachment:
        client = Attachment(writer, stdout, stderr, framed=not self.tty)
        if self._replay:
            for stream, data in self._replay:
                client.send(stream, data)
        self._replay = None
        if self.exited.is_set() and self.io_done.is_set():
            writer.close()
        else:
            self.clients.append(client)
        return client

    async def pump_stdin(self, reader: asyncio.StreamReader, close_on_eof: bool = True) -> None:
        """Copy a client's bytes to the process's stdin; the client's half-close closes it (unless
        `close_on_eof` is false: that client closes stdin with the close_stdin operation)."""
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                break
            if self.stdin_writer is not None:
                self.stdin_writer.write(data)
        if close_on_eof and self.stdin_writer is not None and not self.exited.is_set():
            self.stdin_writer.write_eof()

    # --- exit ---

    async def watch_exit(self, fut: asyncio.Future[tuple[int, str]]) -> None:
        code, exited_at = await fut
        try:
            await asyncio.wait_for(self.io_done.wait(), IO_DRAIN_TIMEOUT)
        except asyncio.TimeoutError:
            pass
        oom = self.exec_id is None and self.container.oom_killed()
        self.exit = p.ExitStatus(code, exited_at, oom)
        self.close_io()
        self.exited.set()
        self.container.process_exited(self)

    def resize(self, height: int, width: int) -> None:
        if self.master < 0:
            raise errors.WrongState(f"{self.label} has no tty")
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "tty": self.tty, "stdin": self.stdin,
                "exit": self.exit.to_dict() if self.exit else None}


class Container:
    def __init__(self, sup: Supervisor, cid: str, config: dict[str, Any]) -> None:
        self.sup, self.id, self.config = sup, cid, config
        self.dir = os.path.join(sup.root, cid)
        self.status = p.CREATED
        self.init = Process(sup, self, None, bool(config["tty"]), bool(config["stdin"]))
        self.execs: dict[str, Process] = {}
        self.exec_records: dict[str, dict[str, Any]] = {}
        self.memory_cgroup: str | None = None
        self.start_time = 0
        self.lock = asyncio.Lock()
        self._has_hooks: bool | None = None

    @property
    def pid(self) -> int:
        return self.init.pid

    def state(self) -> p.ContainerState:
        return p.ContainerState(self.id, self.status, self.init.pid if self.status != p.STOPPED else 0,
                                self.init.exit, self.init.tty, self.init.stdin)

    def save(self) -> None:
        execs = dict(self.exec_records)
        execs.update({eid: proc.to_dict() for eid, proc in self.execs.items()})
        record = {"id": self.id, "config": self.config, "status": self.status, "pid": self.init.pid,
                  "start_time": self.start_time, "exit": self.init.exit.to_dict() if self.init.exit else None,
                  "memory_cgroup": self.memory_cgroup, "execs": execs}
        # no fsync: the loop must not wait for the disk, and a host crash ends the containers anyway
        write_json_atomic(os.path.join(self.dir, "state.json"), record, 0o600, sync=False)

    def has_hooks(self) -> bool:
        """Whether the bundle's spec has hooks: their processes must be the runtime's children,
        never reaped by this supervisor, so those verbs run in a fork, not in a thread."""
        if self._has_hooks is None:
            try:
                with open(os.path.join(self.config["bundle"], "config.json"), "rb") as f:
                    self._has_hooks = bool(json.loads(f.read()).get("hooks"))
            except (OSError, ValueError, AttributeError):
                self._has_hooks = True  # unknown: the safe way
        return self._has_hooks

    def runtime_argv(self, *args: str) -> list[str]:
        return [self.config["runtime"], "--root", self.config["runtime_root"], "--log",
                os.path.join(self.dir, "runtime.log"), "--log-format", "json", *args]

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer fired in the container's memory cgroup (v1 or v2)."""
        if not self.memory_cgroup:
            return False
        for name, key in (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")):
            try:
                with open(os.path.join(self.memory_cgroup, name)) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == key and v.strip().isdigit() and int(v) > 0:
                            return True
            except OSError:
                continue
        return False

    def find_memory_cgroup(self, pid: int) -> None:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                self.memory_cgroup = "/sys/fs/cgroup/memory" + path
                return
        for line in lines:
            if line.startswith("0::"):
                self.memory_cgroup = "/sys/fs/cgroup" + line[3:]

    def process_exited(self, proc: Process) -> None:
        if proc is self.init:
            self.status = p.STOPPED
        try:
            self.save()
        except OSError as e:
            self.sup.warn(f"{self.id}: saving state: {e}")

    def prune_execs(self) -> None:
        """Forget the oldest finished execs beyond KEEP_EXITED_EXECS (health probes make one
        every few seconds for as long as the container runs)."""
        done = [eid for eid, proc in self.execs.items() if proc.exited.is_set() and not proc.clients]
        for eid in done[: max(0, len(done) - KEEP_EXITED_EXECS)]:
            del self.execs[eid]
        for eid in list(self.exec_records)[: max(0, len(self.exec_records) - KEEP_EXITED_EXECS)]:
            del self.exec_records[eid]

    def process(self, exec_id: str | None) -> Process:
        if exec_id is None:
            return self.init
        proc = self.execs.get(exec_id)
        if proc is None:
            raise errors.NotFound(f"no exec {exec_id!r} in container {self.id!r}")
        return proc


def _proc_start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return 0
    return int(data[data.rindex(")") + 2 :].split()[19])


def _runtime_error(log_path: str, stderr: bytes, what: str) -> str:
    """The runtime's own last error message (its JSON log), else its stderr."""
    message = ""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            for line in f.read().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg", ""))
    except OSError:
        pass
    message = message or stderr.decode(errors="replace").strip() or "no error message"
    return f"{what}: {message}"


class Supervisor:
    def __init__(self, root: str, ready_fd: int = -1) -> None:
        self.root = os.path.abspath(root)
        self._ready_fd = ready_fd
        self.loop = asyncio.get_running_loop()
        self.reaper = Reaper(self.loop)
        self.containers: dict[str, Container] = {}
        self._server: asyncio.AbstractServer | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._inprocess: dict[str, bool] = {}  # runtime path -> its verbs run in a fork (shim.inproc)

    def warn(self, message: str) -> None:
        os.write(2, f"dockyard-shim: {message}\n".encode(errors="replace"))

    def spawn_task(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifetime ---

    async def serve(self) -> None:
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        self.reaper.install()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._stopping.set)
        self._load()
        path = os.path.join(self.root, p.SOCKET_NAME)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = _bind_unix(path)
        self._server = await asyncio.start_unix_server(self._on_client, sock=sock, limit=1 << 20)
        with open(os.path.join(self.root, p.PID_NAME), "w") as f:
            f.write(str(os.getpid()))
        if self._ready_fd >= 0:
            os.write(self._ready_fd, b"ready")
            os.close(self._ready_fd)
            self._ready_fd = -1
        await self._stopping.wait()
        self._server.close()
        for name in (p.SOCKET_NAME, p.PID_NAME):
            try:
                os.unlink(os.path.join(self.root, name))
            except FileNotFoundError:
                pass

    def _load(self) -> None:
        """Records left by an earlier supervisor: list them; watch inits that still run."""
        for cid in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, cid, "state.json")
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    record = json.loads(f.read())
                c = Container(self, cid, record["config"])
            except (OSError, ValueError, KeyError) as e:
                self.warn(f"{cid}: unreadable record: {e}")
                continue
            c.status, c.init.pid = record["status"], int(record["pid"])
            c.start_time, c.memory_cgroup = int(record.get("start_time", 0)), record.get("memory_cgroup")
            c.init.exit = p.ExitStatus.from_dict(record.get("exit"))
            c.exec_records = dict(record.get("execs") or {})
            c.init.io_done.set()
            self.containers[cid] = c
            if c.status == p.STOPPED:
                c.init.exited.set()
                continue
            if c.init.pid and c.start_time and _proc_start_time(c.init.pid) == c.start_time:
                self._watch_foreign(c)
            else:
                c.init.exit = c.init.exit or p.ExitStatus(p.UNKNOWN_EXIT, p.rfc3339nano())
                c.init.exited.set()
                c.process_exited(c.init)

    def _watch_foreign(self, c: Container) -> None:
        """An init that is not our child: a pidfd says when it exits; its status is unknowable."""
        try:
            pidfd = libc._libc.syscall(libc.SYS_pidfd_open, c.init.pid, 0)
        except Exception:  # noqa: BLE001 - no pidfd support: the record stays as it is
            return
        if pidfd < 0:
            return

        def gone() -> None:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
            if not c.init.exited.is_set():
                c.init.exit = p.ExitStatus(p.UNKNOWN_EXIT, p.rfc3339nano(), c.oom_killed())
                c.init.exited.set()
                c.process_exited(c.init)

        self.loop.add_reader(pidfd, gone)

    # --- running the OCI runtime ---

    def _runs_inprocess(self, runtime: str) -> bool:
        """Whether `runtime` is dockyard-runtime, whose verbs run in forks of this process."""
        inprocess = self._inprocess.get(runtime)
        if inprocess is None:
            inprocess = self._inprocess[runtime] = inproc.usable(runtime)
            if inprocess:
                inproc.preload()
        return inprocess

    def _spawn(self, argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
        if self._runs_inprocess(argv[0]):
            return inproc.fork_runtime(argv, stdin, stdout, stderr)
        actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                   (os.POSIX_SPAWN_DUP2, stderr, 2)]
        try:
            return os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions,
                                   setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD), setsigmask=())
        except OSError as e:
            raise p.ShimError(f"cannot run runtime {argv[0]!r}: {e.strerror}") from None

    async def _collect(self, fd: int, out: bytearray) -> None:
        os.set_blocking(fd, False)
        done = self.loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                out.extend(data)
            elif not done.done():
                done.set_result(None)

        self.loop.add_reader(fd, readable)
        try:
            await done
        finally:
            self.loop.remove_reader(fd)
            os.close(fd)

    def launch_runtime(self, c: Container, *args: str, stdio: tuple[int, int, int] | None = None,
                       what: str = "") -> Any:
        """Spawn one runtime command now; await the result for its stdout (or ShimError with the
        runtime's own message). The spawn happens before this returns, so the caller may close
        its copies of `stdio` at once."""
        argv = c.runtime_argv(*args)
        out, err = bytearray(), bytearray()
        readers = []
        if stdio is None:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            try:
                pid = self._spawn(argv, self._devnull, out_w, err_w)
            except BaseException:
                os.close(out_r)
                os.close(err_r)
                raise
            finally:
                os.close(out_w)
                os.close(err_w)
            readers = [self._collect(out_r, out), self._collect(err_r, err)]
        else:
            pid = self._spawn(argv, *stdio)
        exited = self.reaper.watch(pid)

        async def result() -> bytes:
            code, _ = await exited
            if readers:
                await asyncio.gather(*readers)
            if code != 0:
                raise p.ShimError(_runtime_error(os.path.join(c.dir, "runtime.log"), bytes(err),
                                                 what or f"{args[0]} {c.id}"))
            return bytes(out)

        return self.loop.create_task(result())

    async def run_runtime(self, c: Container, *args: str, what: str = "") -> bytes:
        if args[0] in inproc.CALLABLE and self._runs_inprocess(c.config["runtime"]) and not c.has_hooks():
            # no fork at all: a worker thread runs the verb's code (see inproc.call_runtime)
            code, message = await asyncio.to_thread(inproc.call_runtime, c.runtime_argv(*args))
            if code != 0:
                raise p.ShimError(message or _runtime_error(os.path.join(c.dir, "runtime.log"), b"",
                                                            what or f"{args[0]} {c.id}"))
            return b""
        return await self.launch_runtime(c, *args, what=what)

    # --- stdio setup ---

    def _console_socket(self, c: Container, name: str) -> tuple[socket.socket, str]:
        path = os.path.join(c.dir, name)
        if len(path) >= 100:
            import tempfile

            path = os.path.join(tempfile.mkdtemp(prefix="dockyard-shim-"), name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(path)
        sock.listen(1)
        sock.setblocking(False)
        return sock, path

    async def _receive_master(self, sock: socket.socket, what: str) -> int:
        try:
            conn, _ = await asyncio.wait_for(self.loop.sock_accept(sock), 10)
        except asyncio.TimeoutError:
            raise p.ShimError(f"{what}: the runtime never connected to the console socket") from None
        with conn:
            conn.setblocking(True)
            conn.settimeout(10)
            return recv_master(conn)

    def _pipes(self, stdin: bool) -> tuple[tuple[int, int, int], list[int], dict[int, int], int | None]:
        """(child stdio, fds to close after spawn, output fds -> stream, stdin write end)."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        if stdin:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            return (in_r, out_w, err_w), [in_r, out_w, err_w], {out_r: p.STDOUT, err_r: p.STDERR}, in_w
        return (self._devnull, out_w, err_w), [out_w, err_w], {out_r: p.STDOUT, err_r: p.STDERR}, None

    async def _start_process(self, c: Container, proc: Process, args: list[str], pid_file: str,
                             what: str) -> None:
        """Run a runtime command that makes `proc` (create or exec --detach) and take over its stdio."""
        console = None
        close_after: list[int] = []
        outputs: dict[int, int] = {}
        stdin_w: int | None = None
        try:
            if proc.tty:
                console = self._console_socket(c, "console.sock" if proc.exec_id is None else f"exec-{proc.exec_id}.sock")
                stdio = (self._devnull, self._devnull, self._devnull)
                args = args[:-1] + ["--console-socket", console[1], args[-1]]
            else:
                stdio, close_after, outputs, stdin_w = self._pipes(proc.stdin)
            try:
                task = self.launch_runtime(c, *args, stdio=stdio, what=what)
                for fd in close_after:
                    os.close(fd)
                close_after = []
                if console is not None:
                    master_task = self.loop.create_task(self._receive_master(console[0], what))
                    done, _ = await asyncio.wait({task, master_task}, return_when=asyncio.FIRST_EXCEPTION)
                    if task in done and task.exception() is not None:
                        master_task.cancel()
                        await asyncio.gather(master_task, return_exceptions=True)
                    else:
                        proc.master = await master_task
                await task
            finally:
                for fd in close_after:
                    os.close(fd)
            with open(pid_file) as f:
                proc.pid = int(f.read().strip())
        except BaseException:
            for fd in list(outputs) + ([stdin_w] if stdin_w is not None else []):
                os.close(fd)
            if proc.master >= 0:
                os.close(proc.master)
                proc.master = -1
            raise
        finally:
            if console is not None:
                console[0].close()
                os.unlink(console[1])
                if not console[1].startswith(c.dir):
                    os.rmdir(os.path.dirname(console[1]))
        if proc.tty:
            outputs = {proc.master: p.STDOUT}
            stdin_w = os.dup(proc.master)
            proc.stdin_writer = FdWriter(self.loop, stdin_w, eof=b"\x04")
        elif stdin_w is not None:
            proc.stdin_writer = FdWriter(self.loop, stdin_w)
        proc.start_io(outputs)
        self.spawn_task(proc.watch_exit(self.reaper.watch(proc.pid)))

    # --- operations ---

    def _container(self, cid: Any) -> Container:
        c = self.containers.get(_check_id(cid, "container id"))
        if c is None:
            raise errors.NotFound(f"no such container {cid!r}")
        return c

    async def op_create(self, req: dict[str, Any]) -> int:
        cid = _check_id(req.get("id"), "container id")
        if cid in self.containers:
            raise errors.AlreadyExists(f"container {cid!r} already exists")
        config = {
            "bundle": os.path.abspath(str(req["bundle"])), "runtime": str(req["runtime"]),
            "runtime_root": str(req["runtime_root"]), "tty": bool(req.get("tty")), "stdin": bool(req.get("stdin")),
            "log_path": str(req.get("log_path") or ""), "log_max_size": int(req.get("log_max_size") or 0),
            "log_max_files": int(req.get("log_max_files") or 1),
        }
        c = Container(self, cid, config)
        self.containers[cid] = c
        try:
            os.makedirs(c.dir, mode=0o700, exist_ok=True)
            if config["log_path"]:
                c.init.logger = JsonFileLogger(config["log_path"], config["log_max_size"], config["log_max_files"])
            pid_file = os.path.join(c.dir, "init.pid")
            await self._start_process(c, c.init, ["create", "--bundle", config["bundle"], "--pid-file", pid_file, cid],
                                      pid_file, f"create {cid}")
        except BaseException:
            del self.containers[cid]
            if c.init.logger is not None:
                c.init.logger.close()
            _remove_tree(c.dir)
            raise
        c.start_time = _proc_start_time(c.init.pid)
        c.find_memory_cgroup(c.init.pid)
        c.save()
        return c.init.pid

    async def op_start(self, req: dict[str, Any]) -> None:
        c = self._container(req.get("id"))
        async with c.lock:
            if c.status != p.CREATED:
                raise errors.WrongState(f"cannot start container {c.id!r}: it is {c.status}")
            await self.run_runtime(c, "start", c.id)
            if c.status == p.CREATED:
                c.status = p.RUNNING
                c.save()

    async def op_kill(self, req: dict[str, Any]) -> None:
        c = self._container(req.get("id"))
        sig = int(req.get("signal", signal.SIGTERM))
        if c.status == p.STOPPED:
            raise errors.WrongState(f"cannot kill container {c.id!r}: it is stopped")
        args = ["kill"] + (["--all"] if req.get("all") else []) + [c.id, str(sig)]
        await self.run_runtime(c, *args)

    async def _pause_resume(self, req: dict[str, Any], verb: str, need: str, then: str) -> None:
        c = self._container(req.get("id"))
        async with c.lock:
            if c.status != need:
                raise errors.WrongState(f"cannot {verb} container {c.id!r}: it is {c.status}")
            try:
                await self.run_runtime(c, verb, c.id)
            except p.ShimError as failure:
                # the init exited just before (the runtime saw it stopped): a state error, once
                # the reaper has recorded the exit, not a failure
                try:  # recorded after the output drains (IO_DRAIN_TIMEOUT at most)
                    await asyncio.wait_for(c.init.exited.wait(), IO_DRAIN_TIMEOUT + 1.0)
                except asyncio.TimeoutError:
                    raise failure from None
                raise errors.WrongState(f"cannot {verb} container {c.id!r}: it is stopped") from None
            if c.status == need:
                c.status = then
                c.save()

    async def op_pause(self, req: dict[str, Any]) -> None:
        await self._pause_resume(req, "pause", p.RUNNING, p.PAUSED)

    async def op_resume(self, req: dict[str, Any]) -> None:
        await self._pause_resume(req, "resume", p.PAUSED, p.RUNNING)

    async def op_exec(self, req: dict[str, Any]) -> int:
        c = self._container(req.get("id"))
        exec_id = _check_id(req.get("exec_id"), "exec id")
        if exec_id in c.execs or exec_id in c.exec_records:
            raise errors.AlreadyExists(f"exec {exec_id!r} already exists in container {c.id!r}")
        if c.status not in (p.CREATED, p.RUNNING):
            raise errors.WrongState(f"cannot exec in container {c.id!r}: it is {c.status}")
        c.prune_execs()
        process = dict(req.get("process") or {})
        tty = bool(req.get("tty"))
        process["terminal"] = tty
        proc = Process(self, c, exec_id, tty, bool(req.get("stdin")))
        c.execs[exec_id] = proc
        spec_file = os.path.join(c.dir, f"exec-{exec_id}.json")
        pid_file = os.path.join(c.dir, f"exec-{exec_id}.pid")
        try:
            write_json_atomic(spec_file, process, 0o600, sync=False)
            await self._start_process(c, proc, ["exec", "--detach", "--process", spec_file, "--pid-file", pid_file,
                                                c.id], pid_file, f"exec {exec_id} in {c.id}")
        except BaseException:
            del c.execs[exec_id]
            raise
        finally:
            for name in (spec_file, pid_file):  # the runtime's input and output: read, no longer needed
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass
        c.save()
        return proc.pid

    async def op_wait(self, req: dict[str, Any]) -> dict[str, Any]:
        c = self._container(req.get("id"))
        exec_id = req.get("exec_id")
        if exec_id is not None and exec_id not in c.execs and exec_id in c.exec_records:
            exit = p.ExitStatus.from_dict(c.exec_records[exec_id].get("exit"))
            if exit is None:
                raise errors.WrongState(f"exec {exec_id!r} was started by an earlier supervisor")
            return exit.to_dict()
        proc = c.process(exec_id)
        await proc.exited.wait()
        assert proc.exit is not None
        return proc.exit.to_dict()

    async def op_state(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._container(req.get("id")).state().to_dict()

    async def op_list(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        return [c.state().to_dict() for c in self.containers.values()]

    async def op_resize(self, req: dict[str, Any]) -> None:
        proc = self._container(req.get("id")).process(req.get("exec_id"))
        height, width = int(req["height"]), int(req["width"])
        if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
            raise errors.InvalidArgument(f"invalid terminal size {height}x{width}")
        proc.resize(height, width)

    async def op_close_stdin(self, req: dict[str, Any]) -> None:
        proc = self._container(req.get("id")).process(req.get("exec_id"))
        if proc.stdin_writer is not None:
            proc.stdin_writer.write_eof()

    async def op_delete(self, req: dict[str, Any]) -> None:
        c = self._container(req.get("id"))
        async with c.lock:
            if c.status != p.STOPPED and not req.get("force"):
                raise errors.WrongState(f"cannot delete container {c.id!r}: it is {c.status}")
            args = ["delete"] + (["--force"] if req.get("force") else []) + [c.id]
            await self.run_runtime(c, *args)
            if c.status != p.STOPPED and c.init.pid:
                await c.init.exited.wait()  # --force killed it: record its status before forgetting
            c.init.close_io()
            for proc in c.execs.values():
                proc.close_io()
            del self.containers[c.id]
            _remove_tree(c.dir)

    async def op_stats(self, req: dict[str, Any]) -> Any:
        c = self._container(req.get("id"))
        out = await self.run_runtime(c, "events", "--stats", c.id)
        for line in out.splitlines():
            event = json.loads(line)
            if event.get("type") == "stats":
                return event.get("data", {})
        raise p.ShimError(f"stats {c.id}: the runtime printed no stats")

    # --- connections ---

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: set[asyncio.Task[Any]] = set()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("a request is a JSON object")
                except ValueError as e:
                    _reply(writer, None, error=errors.InvalidArgument(f"bad request: {e}"))
                    continue
                if req.get("op") == "attach":
                    await asyncio.gather(*pending, return_exceptions=True)
                    await self._attach(req, reader, writer)
                    return
                task = self.loop.create_task(self._handle(req, writer))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            for task in pending:
                task.cancel()  # the client went away: nobody waits for these replies
            writer.close()

    async def _handle(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        rid = req.get("rid")
        handler = getattr(self, f"op_{req.get('op')}", None)
        try:
            if handler is None:
                raise errors.InvalidArgument(f"unknown operation {req.get('op')!r}")
            result = await handler(req)
        except asyncio.CancelledError:
            raise
        except (errors.DockyardError, KeyError, TypeError, ValueError) as e:
            if isinstance(e, (KeyError, TypeError, ValueError)):
                e = errors.InvalidArgument(f"{req.get('op')}: bad or missing argument: {e}")
            _reply(writer, rid, error=e)
            return
        except OSError as e:
            _reply(writer, rid, error=errors.SystemFailure(f"{req.get('op')}: {e}", e.errno or 0))
            return
        except Exception as e:  # noqa: BLE001 - a bug must still answer, or the client waits forever
            self.warn(f"{req.get('op')}: internal error: {type(e).__name__}: {e}")
            _reply(writer, rid, error=p.ShimError(f"{req.get('op')}: internal error: {type(e).__name__}: {e}"))
            return
        _reply(writer, rid, result=result)

    async def _attach(self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rid = req.get("rid")
        try:
            proc = self._container(req.get("id")).process(req.get("exec_id"))
        except errors.DockyardError as e:
            _reply(writer, rid, error=e)
            return
        _reply(writer, rid, result={"tty": proc.tty})
        client = proc.attach(writer, bool(req.get("stdout", True)), bool(req.get("stderr", True)))
        try:
            if req.get("stdin") and proc.stdin_writer is not None:
                await proc.pump_stdin(reader, bool(req.get("stdin_eof", True)))
                # the client half-closed (its stdin ended): its output goes on until the process ends
                if not writer.is_closing():
                    await proc.exited.wait()
            elif not writer.is_closing():
                # without stdin, stay until the process ends or the client goes away
                closed = self.loop.create_task(reader.read())
                exited = self.loop.create_task(proc.exited.wait())
                await asyncio.wait({closed, exited}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                exited.cancel()
        except ConnectionError:
            pass
        finally:
            if client in proc.clients:
                proc.clients.remove(client)
            if proc.exited.is_set():
                try:
                    await asyncio.wait_for(writer.drain(), 5)
                except (ConnectionError, asyncio.TimeoutError):
                    pass
            writer.close()


def _reply(writer: asyncio.StreamWriter, rid: Any, *, result: Any = None, error: BaseException | None = None) -> None:
    if writer.is_closing():
        return
    msg: dict[str, Any] = {"rid": rid, "ok": error is None}
    if error is None:
        msg["result"] = result
    else:
        msg["error"] = p.error_to_wire(error)
    writer.write(json.dumps(msg).encode() + b"\n")


def _bind_unix(path: str) -> socket.socket:
    """A listening socket at `path` (mode 0600), also when the path is longer than sun_path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        if len(path.encode()) < 100:
            sock.bind(path)
        else:
            dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            try:
                sock.bind(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
            finally:
                os.close(dfd)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


OTHER_START_TIMEOUT = 15.0


def _answers(path: str) -> bool:
    """Whether a supervisor accepts connections on `path` now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        dfd = -1
        target = path
        try:
            if len(path.encode()) >= 100:
                dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
                target = f"/proc/self/fd/{dfd}/{os.path.basename(path)}"
            sock.connect(target)
            return True
        except OSError:
            return False
        finally:
            if dfd >= 0:
                os.close(dfd)


def run(root: str, ready_fd: int = -1) -> int:
    """Run the supervisor on `root` until SIGTERM/SIGINT; 1 if another one already runs there.

    `ready_fd` (if >= 0) gets "ready" written to it and is closed once the socket listens. When
    another supervisor holds the root's lock, this one waits: "ready" too once that one answers
    on the socket (it serves the clients); if it exits instead (it was stopping), this one takes
    over the root."""

    os.makedirs(root, mode=0o700, exist_ok=True)
    lock = os.open(os.path.join(root, p.LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + OTHER_START_TIMEOUT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            pass
        if _answers(os.path.join(root, p.SOCKET_NAME)) or time.monotonic() > deadline:
            os.close(lock)
            os.write(2, f"dockyard-shim: a supervisor already runs on {root}\n".encode())
            if ready_fd >= 0 and time.monotonic() <= deadline:
                os.write(ready_fd, b"ready")
            return 1
        time.sleep(0.05)

    async def main() -> None:
        await Supervisor(root, ready_fd).serve()

    asyncio.run(main())
    return 0
