"""`dockyard network ls|create|inspect|rm|connect|disconnect|prune`."""

from __future__ import annotations

import sys
from typing import Any

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import Client, DaemonError, filters_json, q, qs
from dockyard.cli.format import print_documents, print_listing


def cmd_network_ls(client: Client, argv: list[str]) -> int:
    p = Spec(F("-q", "--quiet"), F("-f", "--filter", multi=True), F("--format", value=True),
             F("--no-trunc")).parse(argv)
    nets = client.get("/networks" + qs({"filters": filters_json(p["filter"])}))
    records = [{"ID": n["Id"] if p["no_trunc"] else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
                "Scope": n.get("Scope", "local"), "Internal": str(n.get("Internal", False)).lower(),
                "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items())} for n in nets]
    records.sort(key=lambda r: r["Name"])
    print_listing(records, p["quiet"], p["format"], ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                  ["ID", "Name", "Driver", "Scope"])
    return 0


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def cmd_network_create(client: Client, argv: list[str]) -> int:
    p = Spec(F("-d", "--driver", value=True), F("--subnet", multi=True), F("--gateway", multi=True),
             F("--ip-range", multi=True), F("--internal"), F("--attachable"), F("--label", multi=True),
             F("-o", "--opt", multi=True), F("--aux-address", multi=True), F("--ipv6")).parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"network create" requires exactly 1 argument.')
    ipam: dict[str, Any] = {"Driver": "default", "Config": []}
    subnets, gateways, ranges = list(p["subnet"]), list(p["gateway"]), list(p["ip_range"])
    if len(gateways) > len(subnets) or len(ranges) > len(subnets):
        raise UsageError("every --gateway and --ip-range needs its --subnet (given in the same order)")
    for i, subnet in enumerate(subnets):  # one IPv4 and one IPv6 subnet at most, as docker's
        conf = {k: v for k, v in (("Subnet", subnet), ("Gateway", gateways[i] if i < len(gateways) else ""),
                                  ("IPRange", ranges[i] if i < len(ranges) else "")) if v}
        ipam["Config"].append(conf)
    if p["aux_address"]:  # they belong to the IPv4 subnet, wherever it is in the list
        v4 = [c for c in ipam["Config"] if ":" not in c.get("Subnet", "")]
        if not v4:
            raise UsageError("--aux-address needs an IPv4 --subnet")
        v4[0]["AuxiliaryAddresses"] = _labels(p["aux_address"])
    body = {"Name": p.positionals[0], "Driver": p["driver"] or "bridge", "IPAM": ipam,
            "Internal": bool(p["internal"]), "Attachable": bool(p["attachable"]), "EnableIPv6": bool(p["ipv6"]),
            "Labels": _labels(p["label"]), "Options": _labels(p["opt"])}
    result = client.post("/networks/create", body)
    print(result["Id"])
    return 0


def cmd_network_inspect(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--format", value=True), F("-v", "--verbose")).parse(argv)
    if not p.positionals:
        raise UsageError('"network inspect" requires at least 1 argument.')
    found, code = client.get_each([f"/networks/{q(name)}" for name in p.positionals])
    print_documents(found, p["format"])
    return code


def cmd_network_rm(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--force")).parse(argv)
    if not p.positionals:
        raise UsageError('"network rm" requires at least 1 argument.')
    code = 0
    for name in p.positionals:
        try:
            client.delete(f"/networks/{q(name)}")
            print(name)
        except DaemonError as e:
            if not (p["force"] and e.status == 404):
                print(e, file=sys.stderr)
                code = 1
    return code


def cmd_network_connect(client: Client, argv: list[str]) -> int:
    p = Spec(F("--alias", multi=True), F("--ip", value=True)).parse(argv)
    if len(p.positionals) != 2:
        raise UsageError('"network connect" requires exactly 2 arguments.')
    config: dict[str, Any] = {}
    if p["alias"]:
        config["Aliases"] = list(p["alias"])
    if p["ip"]:
        config["IPAMConfig"] = {"IPv4Address": p["ip"]}
    client.post(f"/networks/{q(p.positionals[0])}/connect", {"Container": p.positionals[1], "EndpointConfig": config})
    return 0


def cmd_network_disconnect(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--force")).parse(argv)
    if len(p.positionals) != 2:
        raise UsageError('"network disconnect" requires exactly 2 arguments.')
    client.post(f"/networks/{q(p.positionals[0])}/disconnect", {"Container": p.positionals[1],
                                                                 "Force": bool(p["force"])})
    return 0


def cmd_network_prune(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--force"), F("--filter", multi=True)).parse(argv)
    result = client.post("/networks/prune" + qs({"filters": filters_json(p["filter"])}))
    removed = result.get("NetworksDeleted") or []
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0
