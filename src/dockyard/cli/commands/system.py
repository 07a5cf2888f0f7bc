"""version, info, events and inspect."""

from __future__ import annotations

import json
import sys
from typing import Any

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import Client, DaemonError, filters_json, q, qs
from dockyard.cli.format import render


def cmd_version(client: Client | None, argv: list[str]) -> int:
    from dockyard import __version__

    p = Spec(F("-f", "--format", value=True)).parse(argv)
    client_info = {"Version": __version__, "ApiVersion": "1.45", "Os": sys.platform}
    server: dict[str, Any] | None = None
    error: Exception | None = None
    if client is not None:
        try:
            server = client.get("/version")
        except Exception as e:  # noqa: BLE001 - reported below like docker
            error = e
    if p["format"]:
        print(render(p["format"], {"Client": client_info, "Server": server}))
    else:
        print("Client:")
        print(f" Version:           {__version__}")
        print(" API version:       1.45")
        if server:
            print("\nServer:")
            for key in ("Version", "ApiVersion", "MinAPIVersion", "Os", "Arch", "KernelVersion"):
                if key in server:
                    print(f" {key + ':':<18} {server[key]}")
    if error is not None:
        print(error, file=sys.stderr)
        return 1
    return 0


def cmd_info(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--format", value=True)).parse(argv)
    info = client.get("/info")
    if p["format"]:
        print(render(p["format"], info))
        return 0
    print("Server:")
    for label, key in (("Containers", "Containers"), (" Running", "ContainersRunning"),
                       (" Paused", "ContainersPaused"), (" Stopped", "ContainersStopped"), ("Images", "Images"),
                       ("Server Version", "ServerVersion"), ("Storage Driver", "Driver"),
                       ("Cgroup Driver", "CgroupDriver"), ("Cgroup Version", "CgroupVersion"),
                       ("Default Runtime", "DefaultRuntime"), ("Kernel Version", "KernelVersion"),
                       ("Operating System", "OperatingSystem"), ("Architecture", "Architecture"),
                       ("CPUs", "NCPU"), ("Total Memory", "MemTotal"), ("Name", "Name"), ("ID", "ID"),
                       ("Docker Root Dir", "DockerRootDir")):
        if key in info:
            print(f" {label}: {info[key]}")
    return 0


def cmd_events(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--filter", multi=True), F("--since", value=True), F("--until", value=True),
             F("--format", value=True)).parse(argv)
    resp = client.raw("GET", "/events" + qs({"filters": filters_json(p["filter"]), "since": p["since"],
                                              "until": p["until"]}))
    for line in resp:
        if not line.strip():
            continue
        ev = json.loads(line)
        if p["format"]:
            print(render(p["format"], ev), flush=True)
            continue
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        attr_text = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
        print(f"{ev.get('Type')} {ev.get('Action')} {(ev.get('Actor') or {}).get('ID', '')} ({attr_text})",
              flush=True)
    return 0


def inspect_objects(client: Client, argv: list[str], kind: str | None = None) -> int:
    p = Spec(F("-f", "--format", value=True), F("--type", value=True), F("-s", "--size")).parse(argv)
    if not p.positionals:
        raise UsageError('"inspect" requires at least 1 argument.')
    kind = kind or p["type"]
    results: list[Any] = []
    code = 0
    for name in p.positionals:
        found = None
        for k, path in (("container", f"/containers/{q(name)}/json" + qs({"size": p["size"] or None})),
                        ("image", f"/images/{q(name)}/json")):
            if kind and kind != k:
                continue
            try:
                found = client.get(path)
                break
            except DaemonError as e:
                if e.status != 404:
                    raise
        if found is None:
            print(f"Error: No such object: {name}", file=sys.stderr)
            code = 1
        else:
            results.append(found)
    if p["format"]:
        for r in results:
            print(render(p["format"], r))
    else:
        print(json.dumps(results, indent=4))
    return code
