"""The one place where engine errors become HTTP status codes (as podman's handlers/utils/errors.go)."""

from __future__ import annotations

from dockyard.errors import (
    AlreadyExists,
    DockyardError,
    InvalidArgument,
    InvalidSpec,
    NotFound,
    NotImplementedFeature,
    Unauthorized,
    WrongState,
)

_STATUS: tuple[tuple[type[DockyardError], int], ...] = (
    (NotFound, 404),
    (Unauthorized, 401),
    (AlreadyExists, 409),
    (WrongState, 409),
    (InvalidArgument, 400),
    (InvalidSpec, 400),
    (NotImplementedFeature, 400),
)


def status_for(error: BaseException) -> int:
    """The HTTP status Docker would answer for `error`: 404, 409, 400, or 500 for anything else."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def message_for(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__
