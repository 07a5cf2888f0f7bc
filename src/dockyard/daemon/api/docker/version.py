"""API version negotiation: the versions served and dockerd's answers to the others."""

from __future__ import annotations

from dockyard.errors import InvalidArgument

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"


def parse_version(text: str) -> tuple[int, int]:
    try:
        major, minor = text.split(".", 1)
        return int(major), int(minor)
    except ValueError:
        raise InvalidArgument(f"invalid API version {text!r}") from None


def check_version(text: str | None) -> str:
    """The version a request asked for (the path's /vN.NN prefix), or the current one; dockerd's errors."""
    if text is None:
        return API_VERSION
    asked = parse_version(text)
    if asked < parse_version(MIN_API_VERSION):
        raise InvalidArgument(f"client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                              "please upgrade your client to a newer version")
    if asked > parse_version(API_VERSION):
        raise InvalidArgument(f"client version {text} is too new. Maximum supported API version is {API_VERSION}")
    return text


def at_least(version: str, other: str) -> bool:
    return parse_version(version) >= parse_version(other)
