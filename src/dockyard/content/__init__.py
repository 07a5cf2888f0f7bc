"""The content store: blobs addressed by their digest, written by ingest-then-commit."""

from dockyard.content.store import BlobInfo, ContentStore, Writer

__all__ = ["BlobInfo", "ContentStore", "Writer"]
