"""The exception tree shared by every layer.

DockyardError
 +-- InvalidArgument        bad input from a user: a flag, a reference, a file
 +-- InvalidSpec            an OCI bundle or config.json that does not validate
 +-- NotFound               a container, image or object that does not exist
 +-- AlreadyExists          creating something whose name is taken
 +-- WrongState             an operation the state machine does not allow now
 +-- NotImplementedFeature  a feature Dockyard does not implement (never faked)
 +-- SystemFailure          a syscall or kernel interface failed; carries errno
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error Dockyard raises on purpose."""


class InvalidArgument(DockyardError):
    pass


class InvalidSpec(DockyardError):
    pass


class NotFound(DockyardError):
    pass


class AlreadyExists(DockyardError):
    pass


class WrongState(DockyardError):
    pass


class NotImplementedFeature(DockyardError):
    def __init__(self, feature: str) -> None:
        super().__init__(f"not implemented: {feature}")
        self.feature = feature


class SystemFailure(DockyardError):
    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class Unauthorized(DockyardError):
    """Credentials were missing or refused (a registry login, a pull or push)."""
