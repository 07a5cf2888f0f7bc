"""/networks: list, inspect, create, remove, connect, disconnect, prune (Docker's JSON shapes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, backend, json_response
from dockyard.daemon.api.docker.params import filters, json_body
from dockyard.errors import InvalidArgument, NotImplementedFeature


def network_json(service: Any, net: Any, verbose: bool = True) -> dict[str, Any]:
    ipam_config = [{k: v for k, v in (("Subnet", net.subnet), ("Gateway", net.gateway), ("IPRange", net.ip_range),
                                      ("AuxiliaryAddresses", net.aux_addresses)) if v}] if net.subnet else []
    if net.subnet6:
        ipam_config.append({k: v for k, v in (("Subnet", net.subnet6), ("Gateway", net.gateway6),
                                              ("IPRange", net.ip_range6)) if v})
    out: dict[str, Any] = {
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local", "Driver": net.driver,
        "EnableIPv4": True, "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": None, "Config": ipam_config},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Options": dict(net.options), "Labels": dict(net.labels),
    }
    if verbose:
        containers: dict[str, Any] = {}
        for c, ep in service.endpoints(net):
            containers[c.id] = {"Name": c.name, "EndpointID": ep.get("EndpointID", ""),
                                "MacAddress": ep.get("MacAddress", ""),
                                "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep.get("IPAddress") else "",
                                "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                                if ep.get("GlobalIPv6Address") else ""}
        out["Containers"] = containers
    else:
        out["Containers"] = {}
    return out


def _match(net: Any, f: dict[str, list[str]]) -> bool:
    if f.get("name") and not any(n in net.name for n in f["name"]):
        return False
    if f.get("id") and not any(net.id.startswith(i) for i in f["id"]):
        return False
    if f.get("driver") and net.driver not in f["driver"]:
        return False
    if f.get("type"):
        kind = "builtin" if net.builtin else "custom"
        if kind not in f["type"]:
            return False
    for item in f.get("label", []):
        key, sep, value = item.partition("=")
        if key not in net.labels or (sep and net.labels[key] != value):
            return False
    return True


async def list_networks(request: web.Request) -> web.Response:
    service = backend(request).networks
    f = filters(request)
    found = [n for n in service.list() if _match(n, f)]
    if f.get("dangling"):
        want = f["dangling"][0] in ("true", "1")
        found = [n for n in found if (not n.builtin and not service.endpoints(n)) == want]
    return json_response([network_json(service, n, verbose=False) for n in found])


async def inspect_network(request: web.Request) -> web.Response:
    service = backend(request).networks
    net = service.get(request.match_info["id"])
    return json_response(network_json(service, net))


async def create_network(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = str(body.get("Name") or "")
    if not name:
        raise InvalidArgument("network name is required")
    driver = str(body.get("Driver") or "bridge")
    if body.get("Ingress") or body.get("ConfigOnly") or body.get("ConfigFrom"):
        raise NotImplementedFeature("ingress and config-only networks are not implemented")
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise NotImplementedFeature(f"IPAM driver {ipam['Driver']!r} is not implemented (only default)")
    net = await backend(request).networks.create(
        name, driver=driver, ipam_config=list(ipam.get("Config") or []), internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")), labels=dict(body.get("Labels") or {}),
        options=dict(body.get("Options") or {}), enable_ipv6=bool(body.get("EnableIPv6")))
    return json_response({"Id": net.id, "Warning": ""}, 201)


async def remove_network(request: web.Request) -> web.Response:
    await backend(request).networks.remove(request.match_info["id"])
    return web.Response(status=204)


async def connect(request: web.Request) -> web.Response:
    body = await json_body(request)
    container = str(body.get("Container") or "")
    if not container:
        raise InvalidArgument("no container given")
    await backend(request).networks.connect(request.match_info["id"], container,
                                            dict(body.get("EndpointConfig") or {}))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_body(request)
    container = str(body.get("Container") or "")
    if not container:
        raise InvalidArgument("no container given")
    await backend(request).networks.disconnect(request.match_info["id"], container, bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    removed = await backend(request).networks.prune(lambda n: _match(n, {k: v for k, v in f.items()
                                                                          if k == "label"}),
                                                     until=f.get("until", [None])[0])
    return json_response({"NetworksDeleted": removed or None})


def register(router: Router) -> None:
    router.add("GET", "/networks", list_networks)
    router.add("GET", "/networks/{id}", inspect_network)
    router.add("POST", "/networks/create", create_network)
    router.add("DELETE", "/networks/{id}", remove_network)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
    router.add("POST", "/networks/prune", prune)

