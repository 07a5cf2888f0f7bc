"""Swarm endpoints: this engine is not part of a swarm (swarm mode is a later issue).

Docker answers 503 "This node is not part of a swarm" for the swarm, node, service, task,
secret and config endpoints of a node outside a swarm; clients (docker-py's `leave_swarm(force=
True)`, the CLI's `docker info`) rely on that. Creating or joining a swarm is refused as not
implemented.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, error_response

NOT_IN_SWARM = ("This node is not part of a swarm: swarm mode is not implemented in dockyardd yet "
                "(it is a later issue)")


async def not_in_swarm(request: web.Request) -> web.Response:
    return error_response(503, NOT_IN_SWARM)


async def not_implemented(request: web.Request) -> web.Response:
    return error_response(501, "swarm mode is not implemented in dockyardd yet (it is a later issue)")


def register(router: Router) -> None:
    router.add("GET", "/swarm", not_in_swarm)
    for path in ("/swarm/leave", "/swarm/update", "/swarm/unlock"):
        router.add("POST", path, not_in_swarm)
    router.add("GET", "/swarm/unlockkey", not_in_swarm)
    for path in ("/swarm/init", "/swarm/join"):
        router.add("POST", path, not_implemented)
    for kind in ("nodes", "services", "tasks", "secrets", "configs"):
        router.add("GET", f"/{kind}", not_in_swarm)
        router.add("GET", f"/{kind}/{{id}}", not_in_swarm)
        router.add("DELETE", f"/{kind}/{{id}}", not_in_swarm)
    for kind in ("services", "secrets", "configs"):
        router.add("POST", f"/{kind}/create", not_in_swarm)
