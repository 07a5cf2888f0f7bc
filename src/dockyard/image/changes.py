"""Dockerfile-style `--change` instructions for `import` and `commit`.

    CMD ["sh"]            ENTRYPOINT /bin/app -v    ENV A=1 B="two words"    ENV LEGACY value
    EXPOSE 80 53/udp      LABEL k=v                 USER nobody               VOLUME ["/data"]
    WORKDIR /srv          STOPSIGNAL SIGTERM         ONBUILD RUN make

These are the instructions Docker accepts there; each edits a container config (the
"config" object of an image config, with Docker's capitalised keys).
"""

from __future__ import annotations

import json
import posixpath
import shlex
from typing import Any

from dockyard.errors import InvalidArgument

VALID = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _json_or_shell(rest: str, shell: bool) -> list[str]:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text] if shell else text.split()


def _pairs(instruction: str, rest: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as e:
        raise InvalidArgument(f"{instruction} {rest!r}: {e}") from e
    if not words:
        raise InvalidArgument(f"{instruction} needs at least one argument")
    if "=" not in words[0]:
        # the legacy form: ENV key value with spaces
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{instruction}: {word!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs


def _ports(rest: str) -> list[str]:
    out = []
    for word in rest.split():
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"EXPOSE {word}: invalid protocol {proto!r}")
        lo, _, hi = port.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise InvalidArgument(f"EXPOSE {word}: invalid port")
        for p in range(int(lo), int(hi or lo) + 1):
            out.append(f"{p}/{proto}")
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """A copy of the container config with the instructions applied, in order."""
    out = json.loads(json.dumps(config or {}))
    for change in changes:
        line = change.strip()
        if not line:
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction not in VALID:
            raise InvalidArgument(f"{instruction} is not a valid change command (one of {', '.join(VALID)})")
        if instruction in ("CMD", "ENTRYPOINT"):
            out["Cmd" if instruction == "CMD" else "Entrypoint"] = _json_or_shell(rest, shell=True)
            if instruction == "ENTRYPOINT" and "Cmd" in out and not rest.strip().startswith("["):
                out["Cmd"] = None  # a shell-form entrypoint ignores CMD, as Docker does
        elif instruction == "ENV":
            env = [e for e in out.get("Env") or []]
            for key, value in _pairs(instruction, rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            out["Env"] = env
        elif instruction == "LABEL":
            labels = dict(out.get("Labels") or {})
            labels.update(_pairs(instruction, rest))
            out["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            ports.update({p: {} for p in _ports(rest)})
            out["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            volumes = dict(out.get("Volumes") or {})
            volumes.update({v: {} for v in _json_or_shell(rest, shell=False)})
            out["Volumes"] = volumes
        elif instruction == "WORKDIR":
            out["WorkingDir"] = posixpath.join(out.get("WorkingDir") or "/", rest.strip())
        elif instruction == "USER":
            out["User"] = rest.strip()
        elif instruction == "STOPSIGNAL":
            out["StopSignal"] = rest.strip()
        elif instruction == "ONBUILD":
            out["OnBuild"] = [*(out.get("OnBuild") or []), rest.strip()]
    return out
