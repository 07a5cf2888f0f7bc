"""Query and body parsing shared by the handlers: booleans, integers, filters, times."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument

TRUE = {"1", "true", "True", "yes"}


def boolean(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    return value.strip() in TRUE


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r} is not an integer") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's filters: {"key": ["v", ...]} or the old {"key": {"v": true}}."""
    text = request.query.get("filters")
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid filter: {e}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filter: not an object")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def timestamp(value: str | None, now: float | None = None) -> float | None:
    """Docker's time arguments: Unix seconds (with fraction), RFC 3339, or a duration back from now (10m)."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    try:
        return float(value)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if value.endswith(unit):
            try:
                return now - float(value[: -len(unit)]) * units[unit]
            except ValueError:
                break
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid time value: {value!r}") from None


async def json_body(request: web.Request) -> dict[str, Any]:
    data = await request.read()
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON body: {e}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument("invalid JSON body: not an object")
    return value
