"""Volume commands: create, ls, inspect, rm, prune."""

from __future__ import annotations

import sys

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import Client, DaemonError, filters_json, q, qs
from dockyard.cli.format import human_size, print_documents, print_listing


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and what == "opt"):
            raise UsageError(f"invalid {what} {item!r}: expected key=value")
        out[key] = value
    return out


def cmd_create(client: Client, argv: list[str]) -> int:
    p = Spec(F("-d", "--driver", value=True), F("-o", "--opt", multi=True), F("--label", multi=True),
             F("--name", value=True)).parse(argv)
    if len(p.positionals) > 1:
        raise UsageError('"volume create" takes at most 1 argument.')
    name = p.positionals[0] if p.positionals else (p["name"] or "")
    body = {"Name": name, "Driver": p["driver"] or "local", "DriverOpts": _pairs(list(p["opt"]), "opt"),
            "Labels": _pairs(list(p["label"]), "label")}
    result = client.post("/volumes/create", body)
    print(result["Name"])
    return 0


def cmd_ls(client: Client, argv: list[str]) -> int:
    p = Spec(F("-q", "--quiet"), F("-f", "--filter", multi=True), F("--format", value=True)).parse(argv)
    result = client.get("/volumes" + qs({"filters": filters_json(list(p["filter"]))}))
    volumes = sorted(result.get("Volumes") or [], key=lambda v: v["Name"])
    print_listing(volumes, p["quiet"], p["format"], ["DRIVER", "VOLUME NAME"], ["Driver", "Name"], key="Name")
    return 0


def cmd_inspect(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--format", value=True)).parse(argv)
    if not p.positionals:
        raise UsageError('"volume inspect" requires at least 1 argument.')
    found, code = client.get_each([f"/volumes/{q(name)}" for name in p.positionals], prefix="Error: ")
    print_documents(found, p["format"])
    return code


def cmd_rm(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--force")).parse(argv)
    if not p.positionals:
        raise UsageError('"volume rm" requires at least 1 argument.')
    code = 0
    for name in p.positionals:
        try:
            client.delete(f"/volumes/{q(name)}" + qs({"force": p["force"] or None}))
        except DaemonError as e:
            print(f"Error: {e}", file=sys.stderr)
            code = 1
            continue
        print(name)
    return code


def cmd_prune(client: Client, argv: list[str]) -> int:
    p = Spec(F("-a", "--all"), F("-f", "--force"), F("--filter", multi=True)).parse(argv)
    filters = list(p["filter"]) + (["all=true"] if p["all"] else [])
    result = client.post("/volumes/prune" + qs({"filters": filters_json(filters)}))
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for name in deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(float(result.get('SpaceReclaimed', 0)))}")
    return 0
