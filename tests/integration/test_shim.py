"""The supervisor (dockyard.shim) with real containers through real OCI runtimes.

Every test runs its own supervisor on a temporary root (ShimClient.connect starts it, detached);
the `env` fixture kills and deletes every container left in the test's runtime state directory
and stops the supervisor by the PID in <root>/shim.pid, so that nothing outlives the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from runtime_helpers import RUNTIME, make_bundle  # noqa: E402

from dockyard import errors  # noqa: E402
from dockyard.shim import protocol as p  # noqa: E402
from dockyard.shim.client import ShimClient  # noqa: E402
from dockyard.shim.supervisor import CLIENT_BUFFER_LIMIT  # noqa: E402

pytestmark = [pytest.mark.root]

TIMEOUT = 30.0


def _runtimes() -> list[Any]:
    params: list[Any] = [pytest.param(RUNTIME, id="dockyard-runtime")]
    runc = shutil.which("runc")
    params.append(pytest.param(runc or "runc", id="runc",
                               marks=pytest.mark.skipif(runc is None, reason="runc is not installed")))
    # crun 1.8 refuses hybrid cgroup layouts: bench/crun-hybrid.sh hides the v2 mount from it
    crun = str(Path(__file__).resolve().parents[2] / "bench" / "crun-hybrid.sh")
    usable = shutil.which("crun") is not None and shutil.which("unshare") is not None
    params.append(pytest.param(crun, id="crun", marks=pytest.mark.skipif(not usable, reason="crun is not installed")))
    return params


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # re-parented to us (a child subreaper)
            if done:
                return True
        except ChildProcessError:
            if not _alive(pid):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def supervisor_pid(root: str) -> int | None:
    try:
        with open(os.path.join(root, p.PID_NAME)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def stop_supervisor(root: str) -> int | None:
    """SIGTERM the supervisor by its pid file, wait, SIGKILL if it does not go; its pid."""
    pid = supervisor_pid(root)
    if pid is None or not _alive(pid):
        return pid
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, 10):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)
    return pid


@dataclass
class Env:
    tmp: Path
    root: str
    runtime_root: str
    runtime: str = RUNTIME
    runtimes_used: set[str] = field(default_factory=set)

    def bundle(self, name: str, args: list[str], terminal: bool = False) -> str:
        return make_bundle(str(self.tmp / "bundles" / name), args, terminal=terminal).path

    def log_path(self, cid: str) -> str:
        return str(self.tmp / "logs" / f"{cid}-json.log")

    async def create(self, client: ShimClient, cid: str, args: list[str], *, tty: bool = False,
                     stdin: bool = False, log: bool = True, runtime: str | None = None, **kw: Any) -> int:
        runtime = runtime or self.runtime
        self.runtimes_used.add(runtime)
        return await client.create(cid, bundle=self.bundle(cid, args, terminal=tty), runtime=runtime,
                                   runtime_root=self.runtime_root, tty=tty, stdin=stdin,
                                   log_path=self.log_path(cid) if log else "", **kw)

    def cleanup(self) -> None:
        for runtime in self.runtimes_used | {RUNTIME}:
            listed = subprocess.run([runtime, "--root", self.runtime_root, "list", "-q"], capture_output=True,
                                    text=True, timeout=30)
            for cid in listed.stdout.split():
                subprocess.run([runtime, "--root", self.runtime_root, "delete", "--force", cid],
                               capture_output=True, timeout=30)
        stop_supervisor(self.root)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, str(tmp_path / "shim"), str(tmp_path / "runtime"))
    try:
        yield e
    finally:
        e.cleanup()


@asynccontextmanager
async def connected(env: Env) -> AsyncIterator[ShimClient]:
    client = await ShimClient.connect(env.root)
    try:
        yield client
    finally:
        await client.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def read_frames(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> dict[int, bytes]:
    """Docker's multiplexed frames until the supervisor closes the connection."""
    out = {p.STDOUT: b"", p.STDERR: b""}
    while True:
        try:
            header = await asyncio.wait_for(reader.readexactly(p.FRAME_HEADER.size), timeout)
        except asyncio.IncompleteReadError as e:
            assert e.partial == b"", f"a frame header cut short: {e.partial!r}"
            return out
        stream, size = p.FRAME_HEADER.unpack(header)
        assert stream in (p.STDOUT, p.STDERR), header
        out[stream] += await asyncio.wait_for(reader.readexactly(size), timeout)


async def read_all(reader: asyncio.StreamReader, timeout: float = TIMEOUT) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


async def read_until(reader: asyncio.StreamReader, marker: bytes, timeout: float = TIMEOUT) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        chunk = await asyncio.wait_for(reader.read(4096), max(0.1, deadline - time.monotonic()))
        if not chunk:
            break
        data += chunk
    return data


def close(writer: asyncio.StreamWriter) -> None:
    writer.close()


def _drain_socket(sock: socket.socket, timeout: float) -> int:
    """Read until EOF or reset; how many bytes came."""
    sock.settimeout(timeout)
    total = 0
    try:
        while chunk := sock.recv(1 << 16):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


def log_entries(path: str) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def exec_process(env: Env, cid: str, args: list[str]) -> dict[str, Any]:
    with open(os.path.join(env.tmp, "bundles", cid, "config.json")) as f:
        process = dict(json.load(f)["process"])
    process["args"] = args
    return process


# --- lifecycle ------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", _runtimes())
def test_create_attach_start_wait(env: Env, runtime: str) -> None:
    async def main() -> None:
        async with connected(env) as client:
            pid = await env.create(client, "life", ["sh", "-c", "echo out; echo err >&2; echo more; exit 3"],
                                   runtime=runtime)
            assert pid > 0 and _alive(pid)
            state = await client.state("life")
            assert (state.status, state.pid, state.exit, state.tty, state.stdin) == (p.CREATED, pid, None, False, False)
            reader, writer = await client.attach("life", None, stdin=False, stdout=True, stderr=True)
            await client.start("life")
            assert (await client.state("life")).status in (p.RUNNING, p.STOPPED)
            out = await read_frames(reader)
            close(writer)
            assert out == {p.STDOUT: b"out\nmore\n", p.STDERR: b"err\n"}
            status = await client.wait("life")
            assert status.code == 3 and not status.oom_killed and status.exited_at.endswith("Z")
            state = await client.state("life")
            assert (state.status, state.pid, state.exit) == (p.STOPPED, 0, status)
            with pytest.raises(errors.WrongState):
                await client.start("life")
            with pytest.raises(errors.WrongState):
                await client.kill("life", signal.SIGKILL)
            await client.delete("life")
            assert await client.list() == []
            with pytest.raises(errors.NotFound):
                await client.state("life")
        entries = log_entries(env.log_path("life"))
        assert sorted((e["stream"], e["log"]) for e in entries) == [
            ("stderr", "err\n"), ("stdout", "more\n"), ("stdout", "out\n")]
        assert not os.path.exists(os.path.join(env.root, "life"))

    run(main())


def test_stdin_piped_with_half_close(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "stdin", ["sh", "-c", "tr a-z A-Z; echo end"], stdin=True)
            assert (await client.state("stdin")).stdin is True
            reader, writer = await client.attach("stdin", None, stdin=True, stdout=True, stderr=True)
            await client.start("stdin")
            writer.write(b"hello\nworld\n")
            await writer.drain()
            writer.write_eof()  # the container's stdin ends: tr ends
            out = await read_frames(reader)
            close(writer)
            assert out[p.STDOUT] == b"HELLO\nWORLD\nend\n"
            assert (await client.wait("stdin")).code == 0

    run(main())


def test_close_stdin_operation(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "cat", ["cat"], stdin=True)
            await client.start("cat")
            await client.close_stdin("cat")
            assert (await asyncio.wait_for(client.wait("cat"), 10)).code == 0

    run(main())


def test_tty_raw_output_resize_and_eof(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "tty", ["sh", "-c", "stty size; read line; echo got:$line; stty size; cat"],
                             tty=True, stdin=True)
            assert (await client.state("tty")).tty is True
            await client.resize("tty", None, 30, 100)
            reader, writer = await client.attach("tty", None, stdin=True, stdout=True, stderr=True)
            await client.start("tty")
            first = await read_until(reader, b"30 100")
            assert b"30 100" in first, first
            assert not first.startswith(b"\x01\x00\x00\x00")  # raw bytes, no frames
            await client.resize("tty", None, 40, 120)
            writer.write(b"hello\n")
            await writer.drain()
            more = await read_until(reader, b"40 120")
            assert b"got:hello\r\n" in more and b"40 120" in more, more
            writer.write_eof()  # the supervisor sends ^D: cat (and the shell) end
            await read_all(reader)
            close(writer)
            assert (await asyncio.wait_for(client.wait("tty"), 10)).code == 0
            entries = log_entries(env.log_path("tty"))
            assert all(e["stream"] == "stdout" for e in entries)
            assert "got:hello" in "".join(e["log"] for e in entries)
            with pytest.raises(errors.NotFound):
                await client.resize("tty", "no-such-exec", 10, 10)
            for height, width in ((-1, 10), (10, 1 << 16)):  # answered, not left without a reply
                with pytest.raises(errors.InvalidArgument):
                    await asyncio.wait_for(client.resize("tty", None, height, width), 5)

    run(main())


def test_resize_without_tty_is_refused(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "notty", ["sleep", "1000"])
            with pytest.raises(errors.WrongState):
                await client.resize("notty", None, 10, 10)
            await client.kill("notty", signal.SIGKILL)
            assert (await client.wait("notty")).code == 137

    run(main())


# --- exec -----------------------------------------------------------------------------------

def test_exec_output_before_attach_exit_code_and_stopped_container(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "ex", ["sleep", "1000"])
            await client.start("ex")
            process = exec_process(env, "ex", ["sh", "-c", "echo e-out; echo e-err >&2; exit 7"])
            pid = await client.exec("ex", "e1", process, tty=False, stdin=False)
            assert pid > 0
            await asyncio.sleep(0.5)  # it has printed and exited before anyone attached
            reader, writer = await client.attach("ex", "e1", stdin=False, stdout=True, stderr=True)
            out = await read_frames(reader)
            close(writer)
            assert out == {p.STDOUT: b"e-out\n", p.STDERR: b"e-err\n"}
            assert (await client.wait("ex", "e1")).code == 7
            with pytest.raises(errors.AlreadyExists):
                await client.exec("ex", "e1", process, tty=False, stdin=False)
            with pytest.raises(errors.NotFound):
                await client.wait("ex", "nope")
            # exec with stdin, attached at once
            cat = exec_process(env, "ex", ["sh", "-c", "cat; exit 4"])
            await client.exec("ex", "e2", cat, tty=False, stdin=True)
            reader, writer = await client.attach("ex", "e2", stdin=True, stdout=True, stderr=True)
            writer.write(b"through exec\n")
            writer.write_eof()
            out = await read_frames(reader)
            close(writer)
            assert out[p.STDOUT] == b"through exec\n"
            assert (await client.wait("ex", "e2")).code == 4
            # exec output is not in the container's log
            assert log_entries(env.log_path("ex")) == []
            await client.kill("ex", signal.SIGKILL)
            assert (await client.wait("ex")).code == 137
            with pytest.raises(errors.WrongState):
                await client.exec("ex", "e3", process, tty=False, stdin=False)

    run(main())


def test_exec_with_tty(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "ext", ["sleep", "1000"])
            await client.start("ext")
            process = exec_process(env, "ext", ["sh", "-c", "stty size; tty; exit 5"])
            await client.exec("ext", "t1", process, tty=True, stdin=False)
            reader, writer = await client.attach("ext", "t1", stdin=False, stdout=True, stderr=True)
            out = await read_all(reader)
            close(writer)
            assert b"/dev/pts/" in out and not out.startswith(b"\x01\x00\x00\x00"), out
            assert (await client.wait("ext", "t1")).code == 5
            await client.kill("ext", signal.SIGKILL)
            await client.wait("ext")

    run(main())


# --- signals, pause, delete, stats ----------------------------------------------------------

def test_kill_signals_exit_codes(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "k9", ["sleep", "1000"])
            await client.start("k9")
            await client.kill("k9", signal.SIGKILL)
            assert (await client.wait("k9")).code == 137
            # a handler in the container: its own exit code
            await env.create(client, "trap", ["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"])
            reader, writer = await client.attach("trap", None, stdin=False, stdout=True, stderr=True)
            await client.start("trap")
            assert b"ready" in await read_until(reader, b"ready")
            await client.kill("trap", signal.SIGTERM)
            assert (await client.wait("trap")).code == 42
            close(writer)
            # the default action of a signal in a non-init process: 128+n (sh as init forwards nothing;
            # kill --all reaches every process in the container)
            await env.create(client, "hup", ["sh", "-c", "sleep 1000 & wait"])
            await client.start("hup")
            await asyncio.sleep(0.3)
            await client.kill("hup", signal.SIGKILL, all=True)
            assert (await client.wait("hup")).code == 137

    run(main())


def test_pause_resume(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "pz", ["sleep", "1000"])
            with pytest.raises(errors.WrongState):
                await client.pause("pz")  # created, not running
            await client.start("pz")
            await client.pause("pz")
            assert (await client.state("pz")).status == p.PAUSED
            with pytest.raises(errors.WrongState):
                await client.pause("pz")
            with pytest.raises(errors.WrongState):
                await client.exec("pz", "x", exec_process(env, "pz", ["true"]), tty=False, stdin=False)
            await client.resume("pz")
            assert (await client.state("pz")).status == p.RUNNING
            with pytest.raises(errors.WrongState):
                await client.resume("pz")
            await client.kill("pz", signal.SIGKILL)
            assert (await client.wait("pz")).code == 137

    run(main())


def test_delete_running_needs_force(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            pid = await env.create(client, "del", ["sleep", "1000"])
            await client.start("del")
            with pytest.raises(errors.WrongState):
                await client.delete("del")
            assert (await client.state("del")).status == p.RUNNING and _alive(pid)
            await client.delete("del", force=True)
            assert await client.list() == []
            assert not os.path.exists(os.path.join(env.root, "del"))
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not _alive(pid)
            # a created (never started) one
            await env.create(client, "del2", ["sleep", "1000"])
            await client.delete("del2", force=True)
            assert await client.list() == []

    run(main())


def test_stats(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "st", ["sleep", "1000"])
            await client.start("st")
            stats = await client.stats("st")
            assert isinstance(stats, dict) and stats, stats
            assert "memory" in stats or "pids" in stats or "cpu" in stats, stats
            await client.kill("st", signal.SIGKILL)
            await client.wait("st")
            with pytest.raises(errors.NotFound):
                await client.stats("none")

    run(main())


# --- attaching ------------------------------------------------------------------------------

def test_two_attaches_and_a_slow_client(env: Env) -> None:
    size = 8 * 1024 * 1024  # beyond the socket buffers and the supervisor's per-client limit

    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "big", ["sh", "-c", f"sleep 0.3; head -c {size} /dev/zero | tr '\\0' x; echo; echo done"])
            r1, w1 = await client.attach("big", None, stdin=False, stdout=True, stderr=True)
            r2, w2 = await client.attach("big", None, stdin=False, stdout=True, stderr=True)
            # a client that never reads
            slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(os.path.join(env.root, p.SOCKET_NAME))
            slow.sendall(json.dumps({"rid": 0, "op": "attach", "id": "big", "stdin": False, "stdout": True,
                                     "stderr": True}).encode() + b"\n")
            try:
                await client.start("big")
                started = time.monotonic()
                out1, out2 = await asyncio.gather(read_frames(r1), read_frames(r2))
                assert time.monotonic() - started < 20
                close(w1)
                close(w2)
                expected = b"x" * size + b"\ndone\n"
                assert out1[p.STDOUT] == expected and out2[p.STDOUT] == expected
                assert (await client.wait("big")).code == 0
                # the client that did not read was dropped, with what had piled up for it
                got = await asyncio.to_thread(_drain_socket, slow, 10)
                assert got < CLIENT_BUFFER_LIMIT // 2, f"the slow client got {got} bytes: it was not dropped"
            finally:
                slow.close()
            entries = log_entries(env.log_path("big"))
            assert "".join(e["log"] for e in entries) == expected.decode()

    run(main())


def test_attach_after_exit_returns_at_once(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "gone", ["sh", "-c", "echo bye"])
            await client.start("gone")
            assert (await client.wait("gone")).code == 0
            for stdin in (False, True):
                started = time.monotonic()
                reader, writer = await client.attach("gone", None, stdin=stdin, stdout=True, stderr=True)
                assert await read_frames(reader, timeout=5) == {p.STDOUT: b"", p.STDERR: b""}
                close(writer)
                assert time.monotonic() - started < 3
            with pytest.raises(errors.NotFound):
                await client.attach("nope", None, stdin=False, stdout=True, stderr=True)

    run(main())


def test_attach_stdout_only(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "only", ["sh", "-c", "sleep 0.2; echo o; echo e >&2"])
            reader, writer = await client.attach("only", None, stdin=False, stdout=True, stderr=False)
            await client.start("only")
            assert await read_frames(reader) == {p.STDOUT: b"o\n", p.STDERR: b""}
            close(writer)
            await client.wait("only")

    run(main())


def test_log_written_without_attach(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "logs", ["sh", "-c", "echo a; echo b >&2; printf partial"],
                             log_max_size=0, log_max_files=1)
            await client.start("logs")
            assert (await client.wait("logs")).code == 0
        entries = log_entries(env.log_path("logs"))
        assert sorted((e["stream"], e["log"]) for e in entries) == [
            ("stderr", "b\n"), ("stdout", "a\n"), ("stdout", "partial")]
        for e in entries:
            assert set(e) == {"log", "stream", "time"} and e["time"].endswith("Z")

    run(main())


def test_log_rotation_by_the_supervisor(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "rot", ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"],
                             log_max_size=2000, log_max_files=3)
            await client.start("rot")
            assert (await client.wait("rot")).code == 0
        path = env.log_path("rot")
        assert os.path.exists(path + ".1") and os.path.exists(path + ".2") and not os.path.exists(path + ".3")
        got = [e["log"] for name in (path + ".2", path + ".1", path) for e in log_entries(name)]
        first = int(got[0].split("-")[1])
        assert got == [f"line-{i}\n" for i in range(first, 300)]
        for name in (path + ".2", path + ".1", path):
            assert os.path.getsize(name) <= 2000

    run(main())


# --- protocol errors ------------------------------------------------------------------------

def test_protocol_errors_keep_the_supervisor_serving(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            reader, writer = await asyncio.open_unix_connection(os.path.join(env.root, p.SOCKET_NAME))

            async def ask(line: bytes) -> dict[str, Any]:
                writer.write(line + b"\n")
                await writer.drain()
                return json.loads(await asyncio.wait_for(reader.readline(), 10))

            bad = await ask(b"this is not json")
            assert bad["ok"] is False and bad["rid"] is None and bad["error"]["kind"] == "InvalidArgument"
            assert (await ask(b"[1, 2]"))["error"]["kind"] == "InvalidArgument"
            unknown = await ask(b'{"rid": 1, "op": "frobnicate"}')
            assert unknown == {"rid": 1, "ok": False, "error": {"kind": "InvalidArgument",
                                                                "message": "unknown operation 'frobnicate'"}}
            assert (await ask(b'{"rid": 2, "op": "state", "id": "../etc"}'))["error"]["kind"] == "InvalidArgument"
            assert (await ask(b'{"rid": 3, "op": "state", "id": 5}'))["error"]["kind"] == "InvalidArgument"
            assert (await ask(b'{"rid": 4, "op": "state", "id": "missing"}'))["error"]["kind"] == "NotFound"
            assert (await ask(b'{"rid": 5, "op": "create", "id": "x"}'))["error"]["kind"] == "InvalidArgument"
            assert (await ask(b'{"rid": 6, "op": "kill", "id": "missing", "signal": "x"}'))["error"]["kind"] == "NotFound"
            assert (await ask(b'{"rid": 7, "op": "list"}')) == {"rid": 7, "ok": True, "result": []}
            writer.close()
            await writer.wait_closed()
            # a client that goes away mid-request does not hurt either
            r2, w2 = await asyncio.open_unix_connection(os.path.join(env.root, p.SOCKET_NAME))
            w2.write(b'{"rid": 1, "op": "wait", "id": "missing"}\n{"rid": 2, "op": "li')
            w2.close()
            await w2.wait_closed()
            assert await client.list() == []

    run(main())


def test_duplicate_id_and_bad_bundle(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            await env.create(client, "dup", ["sleep", "1000"])
            with pytest.raises(errors.AlreadyExists):
                await env.create(client, "dup", ["sleep", "1000"])
            assert [s.id for s in await client.list()] == ["dup"]
            # a bundle without config.json: the runtime's own message, no record left
            empty = env.tmp / "empty-bundle"
            empty.mkdir()
            with pytest.raises(p.ShimError) as info:
                await client.create("bad", bundle=str(empty), runtime=RUNTIME, runtime_root=env.runtime_root,
                                    tty=False, stdin=False, log_path=env.log_path("bad"))
            message = str(info.value)
            assert message.startswith("create bad: ") and "config.json" in message, message
            assert [s.id for s in await client.list()] == ["dup"]
            assert not os.path.exists(os.path.join(env.root, "bad"))
            listed = subprocess.run([RUNTIME, "--root", env.runtime_root, "list", "-q"], capture_output=True,
                                    text=True).stdout.split()
            assert listed == ["dup"]
            # a runtime that does not exist
            with pytest.raises(p.ShimError, match="cannot run runtime"):
                await client.create("bad2", bundle=str(empty), runtime="/nonexistent/runtime",
                                    runtime_root=env.runtime_root, tty=False, stdin=False, log_path="")
            assert not os.path.exists(os.path.join(env.root, "bad2"))
            await client.delete("dup", force=True)

    run(main())


# --- supervisor restarts --------------------------------------------------------------------

def test_supervisor_restart_keeps_containers(env: Env) -> None:
    async def main() -> None:
        client = await ShimClient.connect(env.root)
        try:
            pid = await env.create(client, "keep", ["sleep", "1000"])
            await client.start("keep")
            await env.create(client, "done", ["true"])
            await client.start("done")
            assert (await client.wait("done")).code == 0
            # waits outlive the restart (sent again), also several at once on one client
            waiting = asyncio.gather(*(client.wait("keep") for _ in range(3)))
            await asyncio.sleep(0.1)
            old = supervisor_pid(env.root)
            assert old is not None
            await asyncio.to_thread(stop_supervisor, env.root)
            assert not _alive(old) and _alive(pid), "the container died with its supervisor"
            assert not os.path.exists(os.path.join(env.root, p.SOCKET_NAME))
            # a new supervisor lists both from their records
            async with connected(env) as fresh:
                new = supervisor_pid(env.root)
                assert new is not None and new != old
                states = {s.id: s for s in await fresh.list()}
                assert states["keep"].status == p.RUNNING and states["keep"].pid == pid
                assert states["done"].status == p.STOPPED and states["done"].exit is not None
                assert states["done"].exit.code == 0
                # the old client reconnects by itself
                assert (await client.state("keep")).pid == pid
                assert not waiting.done()
                await fresh.kill("keep", signal.SIGKILL)
                status = await asyncio.wait_for(fresh.wait("keep"), 10)
                assert status.code == p.UNKNOWN_EXIT
                assert [s.code for s in await asyncio.wait_for(waiting, 10)] == [p.UNKNOWN_EXIT] * 3
                assert (await fresh.state("keep")).status == p.STOPPED
                await fresh.delete("keep")
                await fresh.delete("done")
                assert await client.list() == []
        finally:
            await client.close()

    run(main())


def test_client_starts_a_new_supervisor_after_a_crash(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            pid = await env.create(client, "crash", ["sleep", "1000"])
            await client.start("crash")
            old = supervisor_pid(env.root)
            assert old is not None
            os.kill(old, signal.SIGKILL)  # no clean-up: a stale socket and pid file stay
            await asyncio.to_thread(_wait_gone, old, 10)
            states = await client.list()  # reconnects, starting a new supervisor
            assert [(s.id, s.status, s.pid) for s in states] == [("crash", p.RUNNING, pid)]
            assert supervisor_pid(env.root) not in (None, old)
            await client.delete("crash", force=True)

    run(main())


def test_second_supervisor_on_the_same_root(env: Env) -> None:
    async def main() -> None:
        async with connected(env) as client:
            assert await client.list() == []

    run(main())
    first = supervisor_pid(env.root)
    assert first is not None and _alive(first)
    python = sys.executable
    second = subprocess.run([python, "-m", "dockyard.shim", "--root", env.root], capture_output=True, text=True,
                            timeout=30)
    assert second.returncode == 1 and "already runs" in second.stderr
    detached = subprocess.run([python, "-m", "dockyard.shim", "--root", env.root, "--detach"], capture_output=True,
                              text=True, timeout=30)
    assert detached.returncode == 0, detached.stderr
    assert supervisor_pid(env.root) == first and _alive(first)
    run(main())  # still the first one serving


def test_detach_waits_for_a_supervisor_that_is_stopping(env: Env) -> None:
    """Whoever holds the root's lock without serving (a supervisor on its way out) is waited
    for: `--detach` takes the root over once the lock is free, instead of failing."""
    import fcntl

    os.makedirs(env.root, mode=0o700)
    lock = os.open(os.path.join(env.root, p.LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # output to a file: the detached supervisor inherits it and would hold a pipe open
        err_file = open(env.tmp / "detach.err", "w+b")  # noqa: SIM115 - closed below
        starting = subprocess.Popen([sys.executable, "-m", "dockyard.shim", "--root", env.root, "--detach"],
                                    stdout=subprocess.DEVNULL, stderr=err_file)
        time.sleep(0.5)
        assert starting.poll() is None, "it gave up while the lock holder was still going"
    finally:
        os.close(lock)
    with err_file:
        code = starting.wait(timeout=20)
        err_file.seek(0)
        assert code == 0, err_file.read()

    async def main() -> None:
        async with connected(env) as client:
            assert await client.list() == []

    run(main())
