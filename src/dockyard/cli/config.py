"""The client's config file: registry credentials saved by `dockyard login`, like Docker's
~/.docker/config.json.

Location: `$DOCKYARD_CONFIG/config.json` (a directory, as DOCKER_CONFIG is for docker), else
`~/.dockyard/config.json`. Layout (other keys are kept as they are):

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}}}

Keys are registry host names (`host[:port]`, no scheme or path); Docker Hub's key is
`https://index.docker.io/v1/`, as docker writes it. The file is written atomically with mode
0600 in a 0700 directory: the passwords in it are only base64-encoded.

Credential helpers, as docker uses them: `"credHelpers": {"host": "NAME"}` (one registry) or
`"credsStore": "NAME"` (every other one) hand the secret to the program `docker-credential-NAME`
in PATH (`get`/`store`/`erase`, the server on stdin, JSON {ServerURL, Username, Secret}); the
file then keeps only an empty `auths` entry for the server. An identity token is stored with
the user name `<token>`, as docker does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
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


TOKEN_USER = "<token>"  # a helper's Username when Secret is an identity token


def helper_for(key: str, config: dict[str, Any] | None = None) -> str | None:
    """The credential helper name that keeps `key`'s secret, if the config names one."""
    config = load() if config is None else config
    per_registry = config.get("credHelpers") or {}
    name = per_registry.get(key) if isinstance(per_registry, dict) else None
    name = name or config.get("credsStore")
    return str(name) if name else None


def _helper(name: str, action: str, data: str) -> str:
    program = f"docker-credential-{name}"
    path = shutil.which(program)
    if path is None:
        raise CliError(f"credential helper {program} is not installed (named in {config_path()})", 1)
    try:
        done = subprocess.run([path, action], input=data, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(f"credential helper {program} {action}: {e}", 1) from e
    if done.returncode != 0:
        message = (done.stdout.strip() or done.stderr.strip() or f"exit status {done.returncode}")
        if action in ("get", "erase") and "credentials not found" in message.lower():
            return ""  # nothing there: for erase, what was wanted
        raise CliError(f"credential helper {program} {action}: {message}", 1)
    return done.stdout


def credentials(key: str) -> dict[str, str] | None:
    """{"username", "password"[, "identitytoken"]} saved for a server key, or None."""
    config = load()
    helper = helper_for(key, config)
    if helper is not None:
        out = _helper(helper, "get", key)
        if not out.strip():
            return None
        try:
            found = json.loads(out)
            user, secret = str(found["Username"]), str(found["Secret"])
        except (ValueError, KeyError, TypeError) as e:
            raise CliError(f"credential helper docker-credential-{helper} get: bad answer: {e}", 1) from e
        if user == TOKEN_USER:
            return {"identitytoken": secret}
        return {"username": user, "password": secret}
    entry = (config.get("auths") or {}).get(key)
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
    helper = helper_for(key, config)
    if helper is not None:
        user, secret = (TOKEN_USER, identity_token) if identity_token else (username, password)
        _helper(helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))
        auths[key] = {}
        save(config)
        return
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
    helper = helper_for(key, config)
    if helper is not None:
        known = key in auths or credentials(key) is not None
        if known:
            _helper(helper, "erase", key)
    elif key not in auths:
        return False
    else:
        known = True
    if key in auths:
        del auths[key]
        save(config)
    return known


def registry_auth_header(image: str) -> str:
    """The X-Registry-Auth value for pushing or pulling `image`: base64url JSON ("e30=" is `{}`)."""
    key = registry_of(image)
    found = credentials(key)
    if not found:
        return "e30="
    found["serveraddress"] = key
    return base64.urlsafe_b64encode(json.dumps(found).encode()).decode()
