"""Image references parsed and normalised exactly as Docker does (distribution/reference).

    busybox                      -> docker.io/library/busybox           (+ :latest by `parse_image`)
    user/app:1.0                 -> docker.io/user/app:1.0
    localhost:5000/app@sha256:.. -> localhost:5000/app@sha256:..
    index.docker.io/x            -> docker.io/library/x

The error messages are Docker's, so that a user sees the same words from either engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.errors import InvalidArgument
from dockyard.types.digest import Digest, InvalidDigest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_alphanumeric = r"[a-z0-9]+"
_separator = r"(?:[._]|__|[-]+)"
_domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_domain_name = rf"{_domain_component}(?:\.{_domain_component})*"
_ipv6 = r"\[(?:[a-fA-F0-9:]+)\]"
_domain_and_port = rf"(?:{_domain_name}|{_ipv6})(?::[0-9]+)?"
_path_component = rf"{_alphanumeric}(?:{_separator}{_alphanumeric})*"
_name = rf"(?:{_domain_and_port}/)?{_path_component}(?:/{_path_component})*"
_tag = r"[\w][\w.-]{0,127}"
_digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

REFERENCE_RE = re.compile(rf"^({_name})(?::({_tag}))?(?:@({_digest}))?$")
TAG_RE = re.compile(rf"^{_tag}$")
_ANCHORED_NAME_RE = re.compile(rf"^(?:({_domain_and_port})/)?({_path_component}(?:/{_path_component})*)$")
IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
SHORT_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{1,64}$")


class InvalidReference(InvalidArgument):
    """A string that is not a valid image reference; the message says why, in Docker's words."""


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: domain, path (repository), optional tag and digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The fully qualified repository name, e.g. docker.io/library/busybox."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The short name Docker shows, e.g. busybox or user/app or localhost:5000/app."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
                return path[len(OFFICIAL_REPO_PREFIX):]
            return path
        return self.name

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag is not None else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None

    def with_tag(self, tag: str) -> Reference:
        if not TAG_RE.match(tag):
            raise InvalidReference(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        return replace(self, tag=None, digest=digest)

    def repository(self) -> Reference:
        return Reference(self.domain, self.path)

    def tagged_or_latest(self) -> Reference:
        """Docker's TagNameOnly: a bare name means :latest; a digest reference stays as it is."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self


def _split_docker_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse_canonical(text: str) -> Reference:
    """distribution/reference.Parse on an already-qualified string."""
    m = REFERENCE_RE.match(text)
    if m is None:
        if text == "":
            raise InvalidReference("invalid reference format: repository name must have at least one component")
        if REFERENCE_RE.match(text.lower()):
            raise InvalidReference(f"invalid reference format: repository name ({text}) must be lowercase")
        raise InvalidReference(f"invalid reference format: {text!r}")
    name, tag, digest_text = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    digest = None
    if digest_text:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as e:
            raise InvalidReference(f"invalid reference format: {e}") from e
    parts = _ANCHORED_NAME_RE.match(name)
    assert parts is not None  # the name matched as part of REFERENCE_RE
    return Reference(parts.group(1) or "", parts.group(2), tag, digest)


def parse_reference(text: str) -> Reference:
    """Docker's ParseNormalizedNamed: qualify the domain and official-image prefix; no default tag."""
    if not isinstance(text, str):
        raise InvalidReference(f"invalid reference format: {text!r} is not a string")
    if IDENTIFIER_RE.match(text):
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    if text == "":
        raise InvalidReference("invalid reference format: repository name must have at least one component")
    domain, remainder = _split_docker_domain(text)
    remote_name = remainder.split(":", 1)[0] if ":" in remainder else remainder
    remote_name = remote_name.split("@", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidReference(f"invalid reference format: repository name ({remote_name}) must be lowercase")
    return _parse_canonical(f"{domain}/{remainder}")


def parse_image(text: str) -> Reference:
    """A reference as `docker pull/run` reads it: normalised, with :latest when neither tag nor digest."""
    return parse_reference(text).tagged_or_latest()


def parse_repository(text: str) -> Reference:
    """A repository name without tag or digest (as `docker tag`'s target repo or `docker load` names)."""
    ref = parse_reference(text)
    if not ref.is_name_only:
        raise InvalidReference(f"invalid repository name {text!r}: expected no tag or digest")
    return ref


def familiar(name: str) -> str:
    """The familiar (short) form of a fully qualified reference string."""
    return parse_reference(name).familiar()
