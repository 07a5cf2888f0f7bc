"""The client's config file: registry credentials saved by `dockyard login`, like Docker's
~/.docker/config.json.

Location: `$DOCKYARD_CONFIG/config.json` (a directory, as DOCKER_CONFIG is for docker), else
`~/.dockyard/config.json`. Layout (other keys are kept as they are):

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}}}

Keys are registry host names (`host[:port]`, no scheme or path); Docker Hub's key is
`https://index.docker.io/v1/`, as docker writes it. The file is written atomically with mode
0600 in a 0700 directory: the passwords in it are only base64-encoded.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from dockyard.cli.client import CliError

HUB_KEY = "https://index.docker.io/v1/"
HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


def config_path() -> str:
    directory = os.environ.get("DOCKYARD_CONFIG") or os.path.join(os.path.expanduser("~"), ".dockyard")
    return os.path.join(directory, "config.json")


def server_key(server: str) -> str:
    """The `auths` key of a server as typed (`https://host:port/v2/`, `host:port`, ...)."""
    host = server
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0]
    return HUB_KEY if host in HUB_HOSTS or not host else host


def registry_of(image: str) -> str:
    """The `auths` key for an image reference: its domain, as the docker CLI splits it."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return server_key(first)
    return HUB_KEY


def load() -> dict[str, Any]:
    path = config_path()
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read the config file {path}: {e}", 1) from e
    if not isinstance(value, dict):
        raise CliError(f"cannot read the config file {path}: not a JSON object", 1)
    return value


def save(config: dict[str, Any]) -> None:
    from dockyard.utils.fileio import write_atomic

    path = config_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, (json.dumps(config, indent="\t") + "\n").encode(), 0o600)
    except OSError as e:
        raise CliError(f"cannot write the config file {path}: {e}", 1) from e


def credentials(key: str) -> dict[str, str] | None:
    """{"username", "password"[, "identitytoken"]} saved for a server key, or None."""
    entry = (load().get("auths") or {}).get(key)
    if not isinstance(entry, dict):
        return None
    out: dict[str, str] = {}
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as e:
            raise CliError(f"invalid auth entry for {key} in {config_path()}: {e}", 1) from e
        out.update(username=user, password=password)
    if entry.get("identitytoken"):
        out["identitytoken"] = str(entry["identitytoken"])
    return out or None


def store_credentials(key: str, username: str, password: str, identity_token: str = "") -> None:
    config = load()
    auths = config.setdefault("auths", {})
    if identity_token:  # docker keeps the token and only the user name
        entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:".encode()).decode(),
                                 "identitytoken": identity_token}
    else:
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    auths[key] = entry
    save(config)


def remove_credentials(key: str) -> bool:
    """Forget a server's credentials; False when there were none."""
    config = load()
    auths = config.get("auths") or {}
    if key not in auths:
        return False
    del auths[key]
    save(config)
    return True


def registry_auth_header(image: str) -> str:
    """The X-Registry-Auth value for pushing or pulling `image`: base64url JSON ("e30=" is `{}`)."""
    key = registry_of(image)
    found = credentials(key)
    if not found:
        return "e30="
    found["serveraddress"] = key
    return base64.urlsafe_b64encode(json.dumps(found).encode()).decode()
