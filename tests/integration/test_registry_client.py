"""The registry client against a deliberately unreliable server on loopback (stdlib http.server)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dockyard.content.store import ContentStore
from dockyard.registry.client import RegistryClient, RegistryUnavailable
from dockyard.types.digest import Digest, DigestMismatch
from dockyard.types.oci import Descriptor

BLOB = os.urandom(3 << 20)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class Flaky(BaseHTTPRequestHandler):
    cuts = 1            # how many responses are cut in the middle
    tamper = False      # serve other bytes than the digest says
    requests: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).requests.append(self.headers.get("Range") or "")
        data = bytearray(BLOB)
        if type(self).tamper:
            data[100] ^= 1
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = bytes(data[start:])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cuts > 0:
            type(self).cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # cut: the client sees a short body
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Flaky.cuts, Flaky.tamper, Flaky.requests = 1, False, []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


class _Store:
    def __init__(self, root: Path) -> None:
        self.content = ContentStore(str(root), sync=False)


def _client(srv: ThreadingHTTPServer) -> RegistryClient:
    return RegistryClient(f"127.0.0.1:{srv.server_address[1]}", insecure=True, timeout=10)


def test_cut_transfer_is_resumed_with_a_range(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    store = _Store(tmp_path / "content")
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar", Digest.parse(DIGEST), len(BLOB))
    info = _client(server).fetch_blob("x", desc, store)
    assert info.digest == desc.digest and store.content.read(desc.digest) == BLOB
    ranges = [r for r in Flaky.requests if r]
    assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"


def test_tampered_and_hopeless_transfers_leave_nothing(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    store = _Store(tmp_path / "content")
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar", Digest.parse(DIGEST), len(BLOB))
    Flaky.cuts, Flaky.tamper = 0, True
    with pytest.raises(DigestMismatch):
        _client(server).fetch_blob("x", desc, store)
    Flaky.cuts, Flaky.tamper = 100, False
    with pytest.raises(RegistryUnavailable):
        _client(server).fetch_blob("x", desc, store)
    assert not store.content.exists(desc.digest)
    assert os.listdir(store.content.ingest_dir) == []
