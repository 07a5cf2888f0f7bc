"""The Docker Engine API: parse a request, call a service, serialise Docker's JSON.

Docker's JSON shapes live here and nowhere else; the services speak the engine's own types.
"""
