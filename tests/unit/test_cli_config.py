"""The CLI's config file (saved registry credentials) and the X-Registry-Auth header made from it."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from dockyard.cli import config


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


@pytest.mark.parametrize(("server", "key"), [
    ("127.0.0.1:5000", "127.0.0.1:5000"), ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
    ("https://reg.example/v2/", "reg.example"), ("docker.io", config.HUB_KEY),
    ("https://index.docker.io/v1/", config.HUB_KEY),
])
def test_server_key(server: str, key: str) -> None:
    assert config.server_key(server) == key


@pytest.mark.parametrize(("image", "key"), [
    ("busybox", config.HUB_KEY), ("library/busybox", config.HUB_KEY), ("localhost/app", "localhost"),
    ("127.0.0.1:5000/team/app", "127.0.0.1:5000"), ("reg.example/app", "reg.example"),
])
def test_registry_of(image: str, key: str) -> None:
    assert config.registry_of(image) == key


def test_store_header_and_remove(config_dir: Path) -> None:
    assert config.registry_auth_header("127.0.0.1:5000/app") == "e30="
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"detachKeys": "ctrl-p"}))
    config.store_credentials("127.0.0.1:5000", "alice", "pa:ss")
    path = config_dir / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved == {"detachKeys": "ctrl-p",
                     "auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()}}}
    header = config.registry_auth_header("127.0.0.1:5000/app")
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))) == {
        "username": "alice", "password": "pa:ss", "serveraddress": "127.0.0.1:5000"}
    assert config.registry_auth_header("other:5000/app") == "e30="
    assert config.remove_credentials("127.0.0.1:5000") is True
    assert config.remove_credentials("127.0.0.1:5000") is False
    assert json.loads(path.read_text()) == {"detachKeys": "ctrl-p", "auths": {}}
    assert sorted(p.name for p in config_dir.iterdir()) == ["config.json"]  # no temporary file left


def test_unreadable_config_is_an_error(config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "config.json").write_text("[1, 2")
    with pytest.raises(config.CliError, match="cannot read the config file"):
        config.credentials("127.0.0.1:5000")


HELPER = """#!/bin/sh
# a docker-credential-* helper keeping its secrets in $STORE, one JSON file per server
set -e
server_file() { printf '%s' "$1" | tr -c 'A-Za-z0-9' _; }
case "$1" in
  store) data=$(cat); server=$(printf '%s' "$data" | sed 's/.*"ServerURL": *"\\([^"]*\\)".*/\\1/')
         printf '%s' "$data" > "$STORE/$(server_file "$server")" ;;
  get) server=$(cat); f="$STORE/$(server_file "$server")"
       if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) server=$(cat); rm -f "$STORE/$(server_file "$server")" ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, store = tmp_path / "bin", tmp_path / "store"
    bin_dir.mkdir()
    store.mkdir()
    program = bin_dir / "docker-credential-testing"
    program.write_text(HELPER)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("STORE", str(store))
    return store


def test_credentials_through_a_helper(config_dir: Path, helper: Path) -> None:
    config.save({"credsStore": "testing", "credHelpers": {"other:5000": "missing"}})
    config.store_credentials("127.0.0.1:5000", "alice", "s3cret")
    saved = json.loads((config_dir / "config.json").read_text())
    assert saved["auths"] == {"127.0.0.1:5000": {}} and "s3cret" not in (config_dir / "config.json").read_text()
    assert len(list(helper.iterdir())) == 1
    assert config.credentials("127.0.0.1:5000") == {"username": "alice", "password": "s3cret"}
    header = json.loads(base64.urlsafe_b64decode(config.registry_auth_header("127.0.0.1:5000/app")))
    assert header == {"username": "alice", "password": "s3cret", "serveraddress": "127.0.0.1:5000"}
    config.store_credentials("tok.example", "bob", "", identity_token="T0KEN")
    assert config.credentials("tok.example") == {"identitytoken": "T0KEN"}
    assert config.credentials("never.example") is None
    assert config.remove_credentials("127.0.0.1:5000") is True
    assert config.credentials("127.0.0.1:5000") is None and config.remove_credentials("127.0.0.1:5000") is False
    with pytest.raises(config.CliError, match="docker-credential-missing is not installed"):
        config.credentials("other:5000")
