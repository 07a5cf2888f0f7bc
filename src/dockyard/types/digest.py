"""Content digests as the OCI image-spec defines them: ``algorithm:encoded``.

Only the registered algorithms are accepted for content: sha256 (the default everywhere) and
sha512. A digest names content; `Digester` computes one incrementally.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

SHA256 = "sha256"
SHA512 = "sha512"

# digest ::= algorithm ":" encoded (image-spec descriptor.md)
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {SHA256: re.compile(r"^[a-f0-9]{64}$"), SHA512: re.compile(r"^[a-f0-9]{128}$")}


class InvalidDigest(InvalidArgument):
    """A string that is not a digest, or names an algorithm Dockyard does not verify."""


class DigestMismatch(InvalidArgument):
    """Content whose digest or size is not the one it was announced with."""


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not isinstance(text, str) or not _GRAMMAR.match(text):
            raise InvalidDigest(f"invalid digest {text!r}: expected algorithm:hex, e.g. sha256:<64 hex digits>")
        algorithm, encoded = text.split(":", 1)
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise InvalidDigest(f"invalid digest {text!r}: unsupported digest algorithm {algorithm!r} (sha256 or sha512)")
        if not pattern.match(encoded):
            raise InvalidDigest(f"invalid digest {text!r}: {algorithm} needs {64 if algorithm == SHA256 else 128} lowercase hex digits")
        return cls(algorithm, encoded)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @property
    def short(self) -> str:
        """The 12 hex digits Docker shows as an ID."""
        return self.encoded[:12]


def is_digest(text: str) -> bool:
    try:
        Digest.parse(text)
    except InvalidDigest:
        return False
    return True


class Digester:
    """Hashes a stream as it goes by; `digest()` may be called once the stream is done."""

    def __init__(self, algorithm: str = SHA256) -> None:
        if algorithm not in _ENCODED:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r} (sha256 or sha512)")
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())


def digest_bytes(data: bytes, algorithm: str = SHA256) -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


def chain_ids(diff_ids: list[Digest]) -> list[Digest]:
    """The ChainID of each layer stack: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    chain: list[Digest] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append(digest_bytes(f"{chain[-1]} {diff_id}".encode()))
    return chain
