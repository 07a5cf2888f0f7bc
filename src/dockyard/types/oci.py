"""OCI image-spec 1.1 and Docker schema 2 documents: media types, descriptors, manifests,
indexes (manifest lists) and image configs, with validation and platform selection.

Documents are kept with the exact bytes they were read from (their digest depends on them);
the dataclasses here are views for the engine. Image configs stay dicts: Docker's config has
more fields than the OCI one, and every field must survive a load/save round trip.
"""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument, NotImplementedFeature
from dockyard.types.digest import Digest, InvalidDigest

# OCI image-spec 1.1
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"

# Docker image manifest v2, schema 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws")

# annotations
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
_LAYER_COMPRESSION: dict[str, str | None] = {
    OCI_LAYER: None, OCI_LAYER_ND: None, DOCKER_LAYER: None,
    OCI_LAYER_GZIP: "gzip", OCI_LAYER_ND_GZIP: "gzip", DOCKER_LAYER_GZIP: "gzip", DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd", OCI_LAYER_ND_ZSTD: "zstd", DOCKER_LAYER_ZSTD: "zstd",
}
MAX_DOCUMENT_SIZE = 4 << 20  # manifests, indexes and configs larger than this are refused


class UnknownMediaType(InvalidArgument):
    """A document or layer whose media type Dockyard does not know how to handle."""


class InvalidDocument(InvalidArgument):
    """A manifest, index or config that does not parse or does not follow the spec."""


def is_layer_type(media_type: str) -> bool:
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> str | None:
    """'gzip', 'zstd' or None (plain tar) for a layer media type."""
    try:
        return _LAYER_COMPRESSION[media_type]
    except KeyError:
        raise UnknownMediaType(f"unknown layer media type {media_type!r}") from None


def canonical_json(value: Any) -> bytes:
    """Compact JSON, keys in the order given: the bytes Dockyard writes for documents it creates."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_DOCUMENT_SIZE:
        raise InvalidDocument(f"{what} is {len(data)} bytes, more than the {MAX_DOCUMENT_SIZE} allowed")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidDocument(f"{what} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InvalidDocument(f"{what} is not a JSON object")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidDocument(f"{what} must be a map of strings")
    return dict(value)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, value: Any) -> Platform:
        if not isinstance(value, dict) or not isinstance(value.get("os"), str) or not isinstance(value.get("architecture"), str):
            raise InvalidDocument(f"invalid platform {value!r}: needs os and architecture")
        return cls(value["os"], value["architecture"], value.get("variant") or None,
                   value.get("os.version") or None, tuple(value.get("os.features") or ()))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386", "i686": "386",
         "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_DEFAULT_VARIANT = {"arm64": "v8", "amd64": "v1"}


def host_platform() -> Platform:
    machine = _platform.machine()
    arch = _ARCH.get(machine, machine)
    variant = {"aarch64": "v8", "arm64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine)
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """'linux/amd64', 'linux/arm64/v8', 'linux' (architecture of the host)."""
    parts = text.strip().lower().split("/")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected os[/arch[/variant]]")
    if len(parts) == 1:
        host = host_platform()
        return Platform(parts[0], host.architecture, host.variant)
    arch = _ARCH.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else None)


def platform_score(wanted: Platform, offered: Platform) -> int:
    """How well `offered` runs on `wanted`: 0 = not at all, higher = better."""
    if offered.os != wanted.os or _ARCH.get(offered.architecture, offered.architecture) != wanted.architecture:
        return 0
    want_v = wanted.variant or _DEFAULT_VARIANT.get(wanted.architecture)
    have_v = offered.variant or _DEFAULT_VARIANT.get(offered.architecture)
    if want_v == have_v:
        return 3
    if wanted.architecture == "arm" and want_v and have_v and have_v < want_v:
        return 2  # an armv6 image runs on armv7
    if wanted.variant is None and offered.architecture != "arm":
        return 0 if have_v and have_v != _DEFAULT_VARIANT.get(wanted.architecture) else 1
    return 0


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    @classmethod
    def from_dict(cls, value: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(value, dict):
            raise InvalidDocument(f"{what} is not a JSON object")
        media_type = value.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidDocument(f"{what} has no mediaType")
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidDocument(f"{what} has an invalid size {size!r}")
        try:
            digest = Digest.parse(value.get("digest"))  # type: ignore[arg-type]
        except InvalidDigest as e:
            raise InvalidDocument(f"{what}: {e}") from e
        plat = Platform.from_dict(value["platform"]) if value.get("platform") is not None else None
        urls = value.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidDocument(f"{what} has invalid urls")
        return cls(media_type, digest, size, _str_map(value.get("annotations"), f"{what} annotations"), plat,
                   tuple(urls), value.get("artifactType") or None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


def _check_schema(value: dict[str, Any], what: str) -> None:
    if value.get("schemaVersion") != 2:
        if value.get("schemaVersion") == 1:
            raise NotImplementedFeature(f"{what}: Docker schema 1 manifests (deprecated, removed from Docker)")
        raise InvalidDocument(f"{what}: schemaVersion must be 2, got {value.get('schemaVersion')!r}")


@dataclass
class Manifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def is_image(self) -> bool:
        """A runnable container image, not an OCI 1.1 artifact (signature, SBOM, attestation)."""
        return self.config.media_type in CONFIG_TYPES and all(is_layer_type(layer.media_type) for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_dict()
        out["layers"] = [layer.to_dict() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass
class Index:
    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "manifests": [m.to_dict() for m in self.manifests]}
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def select(self, wanted: Platform) -> Descriptor:
        """The best image manifest of this index for `wanted` (Docker's platform matcher)."""
        best: tuple[int, int, Descriptor] | None = None
        for position, desc in enumerate(self.manifests):
            if desc.media_type not in MANIFEST_TYPES and desc.media_type not in INDEX_TYPES:
                continue
            if desc.platform is None:
                continue
            score = platform_score(wanted, desc.platform)
            if score and (best is None or score > best[0]):
                best = (score, position, desc)
        if best is None:
            offered = ", ".join(str(d.platform) for d in self.manifests if d.platform) or "none"
            raise InvalidArgument(f"no matching manifest for {wanted} in the manifest list entries (offered: {offered})")
        return best[2]


def document_media_type(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest or index: its mediaType field, else the declared one, else by shape."""
    value = _load_json(data, "manifest")
    found = value.get("mediaType")
    if isinstance(found, str) and found:
        if declared and declared != found and not (declared in DOCKER_SCHEMA1 or found in DOCKER_SCHEMA1):
            raise InvalidDocument(f"manifest declares media type {found!r} but was referenced as {declared!r}")
        return found
    if declared:
        return declared
    if "manifests" in value:
        return OCI_INDEX
    if "config" in value and "layers" in value:
        return OCI_MANIFEST
    if value.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[1]
    raise UnknownMediaType("document has no mediaType and is neither a manifest nor an index")


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    value = _load_json(data, "manifest")
    mt = document_media_type(data, media_type)
    if mt in DOCKER_SCHEMA1:
        raise NotImplementedFeature("Docker schema 1 manifests (deprecated, removed from Docker)")
    if mt not in MANIFEST_TYPES:
        raise UnknownMediaType(f"unknown manifest media type {mt!r}")
    _check_schema(value, "manifest")
    if "manifests" in value:
        raise InvalidDocument("manifest has a 'manifests' field: it is an index")
    config = Descriptor.from_dict(value.get("config"), "manifest config")
    layers_raw = value.get("layers")
    if not isinstance(layers_raw, list):
        raise InvalidDocument("manifest has no layers list")
    layers = [Descriptor.from_dict(layer, f"manifest layer {i}") for i, layer in enumerate(layers_raw)]
    subject = Descriptor.from_dict(value["subject"], "manifest subject") if value.get("subject") else None
    return Manifest(mt, config, layers, _str_map(value.get("annotations"), "manifest annotations"), subject,
                    value.get("artifactType") or None)


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    value = _load_json(data, "index")
    mt = document_media_type(data, media_type)
    if mt not in INDEX_TYPES:
        raise UnknownMediaType(f"unknown index media type {mt!r}")
    _check_schema(value, "index")
    raw = value.get("manifests")
    if not isinstance(raw, list):
        raise InvalidDocument("index has no manifests list")
    manifests = [Descriptor.from_dict(m, f"index entry {i}") for i, m in enumerate(raw)]
    subject = Descriptor.from_dict(value["subject"], "index subject") if value.get("subject") else None
    return Index(mt, manifests, _str_map(value.get("annotations"), "index annotations"), subject)


class ImageConfig:
    """An image config (OCI or Docker): the raw dict, validated, with typed accessors."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        rootfs = raw.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
            raise InvalidDocument("image config: rootfs must be {type: layers, diff_ids: [...]}")
        try:
            self.diff_ids = [Digest.parse(d) for d in rootfs["diff_ids"]]
        except InvalidDigest as e:
            raise InvalidDocument(f"image config: {e}") from e
        for key in ("architecture", "os"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise InvalidDocument(f"image config: {key} is required")
        if raw.get("config") is not None and not isinstance(raw["config"], dict):
            raise InvalidDocument("image config: config must be an object")
        history = raw.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise InvalidDocument("image config: history must be a list of objects")

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        return cls(_load_json(data, "image config"))

    @property
    def platform(self) -> Platform:
        return Platform(self.raw["os"], self.raw["architecture"], self.raw.get("variant") or None,
                        self.raw.get("os.version") or None)

    @property
    def container_config(self) -> dict[str, Any]:
        return dict(self.raw.get("config") or {})

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.raw.get("history") or [])

    @property
    def created(self) -> str | None:
        value = self.raw.get("created")
        return value if isinstance(value, str) else None

    def to_bytes(self) -> bytes:
        return canonical_json(self.raw)
