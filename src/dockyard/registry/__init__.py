"""The registry: an OCI distribution server (`python -m dockyard.registry`) over a content store."""
