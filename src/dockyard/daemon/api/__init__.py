"""The daemon's APIs. Only the Docker Engine API for now (`daemon/api/docker/`)."""
