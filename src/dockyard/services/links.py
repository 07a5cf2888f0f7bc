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
    """The variables dockerd gives the linking container for one link (ports one by one)."""
    prefix = alias.upper().replace("-", "_")
    ports = sorted(_ports(exposed or {}))
    out = []
    if ports:
        port, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{address}:{port}")
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
