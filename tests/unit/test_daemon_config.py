"""dockyardd's flags and config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.daemon.config import DEFAULT_HOST, load, parser
from dockyard.errors import InvalidArgument


def cfg(*argv: str):  # type: ignore[no-untyped-def]
    return load(parser().parse_args(list(argv)))


def test_defaults() -> None:
    c = cfg()
    assert c.hosts == [DEFAULT_HOST] and c.socket_paths == ["/run/dockyard/dockyard.sock"]
    assert c.data_root == "/var/lib/dockyard" and c.exec_root == "/run/dockyard"
    assert c.default_runtime == "dockyard-runtime" and c.runtimes["dockyard-runtime"].endswith("dockyard-runtime")
    assert c.log_level == "info" and c.pidfile is None


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    f = tmp_path / "daemon.json"
    f.write_text(json.dumps({"data-root": "/srv/a", "exec-root": "/run/b", "log-level": "warn",
                             "runtimes": {"fast": {"path": "/bin/true"}}, "default-runtime": "fast"}))
    c = cfg("--config-file", str(f), "--data-root", "/srv/c", "--add-runtime", "other=/bin/false",
            "-H", "unix:///tmp/x.sock")
    assert c.data_root == "/srv/c" and c.exec_root == "/run/b" and c.log_level == "warn"
    assert c.runtimes["fast"] == "/bin/true" and c.runtimes["other"] == "/bin/false"
    assert c.default_runtime == "fast" and c.socket_paths == ["/tmp/x.sock"]
    assert c.runtime_path(None) == "/bin/true"
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: nope"):
        c.runtime_path("nope")


@pytest.mark.parametrize("argv,message", [
    (["-H", "tcp://0.0.0.0:2375"], "only unix:// sockets"),
    (["--add-runtime", "broken"], "expected NAME=PATH"),
    (["--default-runtime", "missing"], "is not registered"),
])
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        cfg(*argv)


def test_bad_file(tmp_path: Path) -> None:
    f = tmp_path / "daemon.json"
    f.write_text(json.dumps({"bip": "10.0.0.1/24"}))
    with pytest.raises(InvalidArgument, match="unsupported keys: bip"):
        cfg("--config-file", str(f))
    f.write_text("{")
    with pytest.raises(InvalidArgument, match="invalid JSON"):
        cfg("--config-file", str(f))
