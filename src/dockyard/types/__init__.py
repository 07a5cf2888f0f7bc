"""Specs as data: digests, image references, OCI and Docker image formats. No I/O here."""
