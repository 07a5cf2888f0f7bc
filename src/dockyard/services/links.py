"""Legacy container links (`--link NAME[:ALIAS]`, HostConfig.Links), as dockerd keeps them.

On the default bridge a link gives the linking container environment variables describing the
linked one (its name, address, exposed ports and environment) and an /etc/hosts line; on a
user-defined network it is only a DNS alias that the linking container alone resolves (the
network service reads those from the endpoint's Links). Links are stored the way dockerd
shows them in inspect: "/target:/linking/alias".
"""

from __future__ import annotations

import re
from typing import Any

from dockyard.errors import InvalidArgument

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def parse(link: Any) -> tuple[str, str]:
    """"name:alias", "name" or the stored "/name:/linking/alias" -> (name, alias)."""
    text = str(link).strip() if isinstance(link, str) else ""
    target, sep, alias = text.partition(":")
    target = target.strip("/")
    alias = alias.strip("/").rsplit("/", 1)[-1] if sep else target
    if not _NAME.fullmatch(target) or not _NAME.fullmatch(alias):
        raise InvalidArgument(f"invalid link {link!r}: expected NAME or NAME:ALIAS")
    return target, alias


def aliased(endpoint_links: Any, name: str) -> set[str]:
    """The containers an endpoint's links ("container:alias") call `name` (lower case)."""
    targets = set()
    for link in endpoint_links or []:
        try:
            target, alias = parse(link)
        except InvalidArgument:
            continue
        if alias.lower() == name:
            targets.add(target.lower())
    return targets


def stored(target: str, linking: str, alias: str) -> str:
    return f"/{target}:/{linking}/{alias}"


def env(linking: str, alias: str, address: str, exposed: dict[str, Any] | None,
        target_env: list[str] | None) -> list[str]:
    """The variables dockerd 20.10 gives the linking container for one link, in its order: the
    lowest port; a _START/_END group for each run of consecutive port numbers (a run may mix
    protocols: its _END variables carry the last port's); each port; the name; the target's
    environment. (Moby 23 and later sort TCP first and end a run at a protocol change.)"""
    prefix = alias.upper().replace("-", "_")
    ports = sorted(_ports(exposed or {}), key=lambda p: (p[0], p[1] != "tcp"))
    out = []
    if ports:
        port, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{address}:{port}")
    i = 0
    while i < len(ports):
        last = _run_end(ports, i)
        if last > i + 1:
            (port, proto), (end, end_proto) = ports[i], ports[last]
            key = f"{prefix}_PORT_{port}_{proto.upper()}"
            out += [f"{key}_START={proto}://{address}:{port}", f"{key}_ADDR={address}", f"{key}_PROTO={proto}",
                    f"{key}_PORT_START={port}"]
            key = f"{prefix}_PORT_{port}_{end_proto.upper()}"
            out += [f"{key}_END={end_proto}://{address}:{end}", f"{key}_PORT_END={end}"]
            i = last + 1
        else:
            i += 1
    for port, proto in ports:
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{key}={proto}://{address}:{port}", f"{key}_ADDR={address}", f"{key}_PORT={port}",
                f"{key}_PROTO={proto}"]
    out.append(f"{prefix}_NAME=/{linking}/{alias}")
    for item in target_env or []:
        name, sep, value = item.partition("=")
        if sep and name not in ("HOME", "PATH"):
            out.append(f"{prefix}_ENV_{name}={value}")
    return out


def _run_end(ports: list[tuple[int, str]], index: int) -> int:
    """The index of the last port of the run that starts at `index`, counted as dockerd 20.10
    does: each next entry may have a number up to one more than the count so far."""
    value = ports[index][0]
    for i in range(index + 1, len(ports)):
        if ports[i][0] > value + 1:
            return i - 1
        value += 1
    return len(ports) - 1


def hosts_line(address: str, alias: str, hostname: str, name: str) -> str:
    """The linking container's /etc/hosts line: the alias, the linked hostname and name."""
    names = [alias, hostname] + ([name] if name != alias else [])
    return f"{address}\t{' '.join(dict.fromkeys(n for n in names if n))}"


def _ports(exposed: dict[str, Any]) -> list[tuple[int, str]]:
    found = []
    for key in exposed:
        port, _, proto = str(key).partition("/")
        if port.isdigit():
            found.append((int(port), proto or "tcp"))
    return found
