"""HTTP client for the Docker Engine API over a unix socket (stdlib http.client only).

Host selection: `-H/--host unix://PATH`, else env DOCKYARD_HOST, else DEFAULT_HOST.

Auto-start: when no daemon answers (connection refused / no such socket) on the default host,
the CLI starts `dockyardd` detached and polls /_ping for up to 20 s. Env DOCKYARD_DATA_ROOT and
DOCKYARD_EXEC_ROOT, when set, are passed as --data-root/--exec-root. For a non-default unix host
given through DOCKYARD_HOST, auto-start happens only when env DOCKYARD_AUTOSTART=1; an explicit
`-H` host other than the default is never auto-started. The daemon logs to
/var/log/dockyard/dockyardd.log, or to dockyardd.log beside the socket when DOCKYARD_AUTOSTART=1,
and writes its PID to dockyardd.pid beside the socket.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

API = "/v1.45"
AUTOSTART_TIMEOUT = 20.0


class CliError(Exception):
    """An error to print; `code` is the process exit status."""

    def __init__(self, message: str, code: int = 125) -> None:
        super().__init__(message)
        self.code = code


class DaemonError(CliError):
    def __init__(self, status: int, message: str) -> None:
        code = 125
        if status >= 400 and ("executable file not found" in message or "no such file" in message.lower()) \
                and "exec" in message.lower():
            code = 127
        super().__init__(f"Error response from daemon: {message}", code)
        self.status = status
        self.daemon_message = message


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def default_host() -> str:
    from dockyard.daemon.config import DEFAULT_HOST

    return DEFAULT_HOST


def socket_path(host: str) -> str:
    if not host.startswith("unix://"):
        raise CliError(f"unsupported host {host!r}: only unix:// sockets are implemented")
    return host[len("unix://"):]


def read_chunks(source: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """A file's content in chunks (a request body to stream)."""
    while chunk := source.read(size):
        yield chunk


def json_messages(resp: Any) -> Iterator[dict[str, Any]]:
    """Docker's JSON-lines progress stream, message by message; an error line raises CliError
    (exit status: the error's code, else 1). Lines that are not JSON are skipped."""
    for line in resp:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            raise CliError(str(msg.get("error") or detail.get("message")), int(detail.get("code") or 1))
        yield msg


def qs(params: dict[str, Any]) -> str:
    clean: dict[str, str] = {}
    for k, v in params.items():
        if v is None:
            continue
        clean[k] = ("1" if v else "0") if isinstance(v, bool) else str(v)
    return ("?" + urlencode(clean)) if clean else ""


def filters_json(items: list[str]) -> str | None:
    out: dict[str, list[str]] = {}
    for item in items:
        k, _, v = item.partition("=")
        out.setdefault(k, []).append(v)
    return json.dumps(out) if out else None


def q(part: str) -> str:
    return quote(part, safe="")


class Client:
    def __init__(self, host: str, autostart: bool) -> None:
        self.host = host
        self.path = socket_path(host)
        self.autostart = autostart
        self._checked = False

    def connection(self, timeout: float | None = None) -> UnixConnection:
        if not self._checked:
            self._checked = True
            self._ensure_daemon()
        return UnixConnection(self.path, timeout)

    def _ping(self) -> bool:
        try:
            c = UnixConnection(self.path, 2)
            c.request("GET", "/_ping")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False

    def _ensure_daemon(self) -> None:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
            s.close()
            return
        except (FileNotFoundError, ConnectionRefusedError):
            if not self.autostart:
                raise CliError(f"Cannot connect to the dockyard daemon at {self.host}. Is dockyardd running?")
        except OSError as e:
            raise CliError(f"Cannot connect to the dockyard daemon at {self.host}: {e}") from e
        start_daemon(self.path, self.host)
        deadline = time.monotonic() + AUTOSTART_TIMEOUT
        while not self._ping():
            if time.monotonic() > deadline:
                raise CliError(f"started dockyardd but it did not answer on {self.host} within {AUTOSTART_TIMEOUT:.0f}s")
            time.sleep(0.1)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float | None = None) -> http.client.HTTPResponse:
        conn = self.connection(timeout)
        hdrs = dict(headers or {})
        try:
            conn.request(method, API + path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except OSError as e:
            raise CliError(f"Cannot talk to the dockyard daemon at {self.host}: {e}") from e
        if resp.status >= 400:
            raise error_from(resp)
        return resp

    def stream_upload(self, path: str, chunks: Iterator[bytes], content_type: str,
                      method: str = "POST") -> http.client.HTTPResponse:
        conn = self.connection()
        try:
            conn.putrequest(method, API + path)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for chunk in chunks:
                if chunk:
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
        except OSError as e:
            raise CliError(f"Cannot talk to the dockyard daemon at {self.host}: {e}") from e
        if resp.status >= 400:
            raise error_from(resp)
        return resp

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        resp = self.raw(method, path, data, headers)
        text = resp.read()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text.decode(errors="replace")

    def get_each(self, paths: list[str], prefix: str = "") -> tuple[list[Any], int]:
        """GET every path: the documents found, and 1 when some failed (each failure printed)."""
        found, code = [], 0
        for path in paths:
            try:
                found.append(self.get(path))
            except DaemonError as e:
                print(f"{prefix}{e}", file=sys.stderr)
                code = 1
        return found, code

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def error_from(resp: http.client.HTTPResponse) -> DaemonError:
    text = resp.read()
    try:
        message = str(json.loads(text).get("message", ""))
    except (ValueError, AttributeError):
        message = text.decode(errors="replace").strip()
    return DaemonError(resp.status, message or f"HTTP {resp.status}")


def daemon_argv() -> list[str]:
    beside = Path(sys.executable).parent / "dockyardd"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "dockyard.daemon.main"]


def start_daemon(sock: str, host: str) -> None:
    argv = [*daemon_argv(), "-H", host]
    for env, flag in (("DOCKYARD_DATA_ROOT", "--data-root"), ("DOCKYARD_EXEC_ROOT", "--exec-root"),
                      ("DOCKYARD_BRIDGE", "--bridge")):
        if os.environ.get(env):
            argv += [flag, os.environ[env]]
    sock_dir = Path(sock).parent
    sock_dir.mkdir(parents=True, exist_ok=True)
    if host != default_host():
        argv += ["--pidfile", str(sock_dir / "dockyardd.pid")]
        log_path = sock_dir / "dockyardd.log"
    else:
        log_path = Path("/var/log/dockyard/dockyardd.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, close_fds=True)


def make_client(host_flag: str | None) -> Client:
    default = default_host()
    if host_flag:
        return Client(host_flag, autostart=host_flag == default)
    env_host = os.environ.get("DOCKYARD_HOST")
    if env_host:
        return Client(env_host, autostart=env_host == default or os.environ.get("DOCKYARD_AUTOSTART") == "1")
    return Client(default, autostart=True)
