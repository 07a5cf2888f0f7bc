"""The aiohttp application: routes with and without the /vN.NN prefix, version checks, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dockyard import __version__
from dockyard.daemon.api.docker.errors import message_for, status_for
from dockyard.daemon.api.docker.version import API_VERSION, check_version
from dockyard.errors import DockyardError

log = logging.getLogger("dockyard.daemon.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VERSION_PREFIX = r"/{version:v[0-9]+\.[0-9]+}"
BACKEND: web.AppKey[Any] = web.AppKey("backend", object)


@dataclass
class Backend:
    """The services the handlers call (any of them may be None in unit tests)."""

    system: Any = None
    events: Any = None
    images: Any = None
    containers: Any = None
    execs: Any = None
    containerfs: Any = None
    volumes: Any = None
    networks: Any = None
    builder: Any = None


def backend(request: web.Request) -> Backend:
    value: Backend = request.app[BACKEND]
    return value


def api_version(request: web.Request) -> str:
    value: str = request.get("api_version", API_VERSION)
    return value


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(value).encode() + b"\n", content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


class Router:
    """Registers each route twice: bare, and under the API version prefix."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, VERSION_PREFIX + path, handler)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the version prefix, then run the handler; every error becomes Docker's {"message": ...}."""
    try:
        version = request.match_info.get("version")
        request["api_version"] = check_version(version[1:] if version else None)
        return await handler(request)
    except web.HTTPException as e:
        if e.status == 404 and not request.match_info.route.name and request.match_info.http_exception is not None:
            return error_response(404, "page not found")
        if e.status >= 400:
            return error_response(e.status, e.text or e.reason)
        raise
    except DockyardError as e:
        status = status_for(e)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, e)
        return error_response(status, message_for(e))
    except ConnectionError:
        # The client went away in the middle of a stream (docker run -d, a closed `logs -f`): nothing to answer.
        log.debug("%s %s: the client disconnected", request.method, request.path)
        return web.Response(status=499)
    except Exception as e:  # noqa: BLE001 - the boundary: anything unexpected is a 500 with its message
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, message_for(e))


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Api-Version", API_VERSION)
    response.headers.setdefault("Docker-Experimental", "false")
    response.headers.setdefault("Ostype", "linux")
    response.headers["Server"] = f"Dockyard/{__version__} (linux)"


def build_app(services: Backend) -> web.Application:
    from dockyard.daemon.api.docker import (build, containerfs, containers, exec as exec_routes, images, networks,
                                            swarm, system)
    from dockyard.daemon.api.docker import volumes

    app = web.Application(middlewares=[api_middleware], client_max_size=0)
    app[BACKEND] = services
    app.on_response_prepare.append(_common_headers)
    router = Router(app)
    system.register(router)
    images.register(router)
    containers.register(router)
    containerfs.register(router)
    exec_routes.register(router)
    build.register(router)
    networks.register(router)
    swarm.register(router)
    volumes.register(router)
    return app
