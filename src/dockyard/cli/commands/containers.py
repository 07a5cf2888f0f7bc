"""Container commands other than run/create."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from typing import Any

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import Client, DaemonError, filters_json, q, qs
from dockyard.cli.format import ago, print_listing, render, short_id, table


def _each(client: Client, names: list[str], action: str, method: str, path: str) -> int:
    if not names:
        raise UsageError(f'"{action}" requires at least 1 argument.')
    code = 0
    for name in names:
        try:
            client.call(method, path.format(q(name)))
            print(name)
        except DaemonError as e:
            print(e, file=sys.stderr)
            code = 1
    return code


def cmd_start(client: Client, argv: list[str]) -> int:
    p = Spec(F("-a", "--attach"), F("-i", "--interactive")).parse(argv)
    if p["attach"] or p["interactive"]:
        if len(p.positionals) != 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        from dockyard.cli.commands.run import run_attached

        info = client.get(f"/containers/{q(p.positionals[0])}/json")
        return run_attached(client, info["Id"], bool(info["Config"]["Tty"]), bool(p["interactive"]),
                            bool(info["HostConfig"].get("AutoRemove")))
    return _each(client, p.positionals, "start", "POST", "/containers/{}/start")


def cmd_stop(client: Client, argv: list[str], verb: str = "stop") -> int:
    p = Spec(F("-t", "--time", "--timeout", dest="time", value=True), F("-s", "--signal", value=True)).parse(argv)
    params = qs({"t": p["time"], "signal": p["signal"]})
    return _each(client, p.positionals, verb, "POST", "/containers/{}/" + verb + params)


def cmd_restart(client: Client, argv: list[str]) -> int:
    return cmd_stop(client, argv, "restart")


def cmd_kill(client: Client, argv: list[str]) -> int:
    p = Spec(F("-s", "--signal", value=True)).parse(argv)
    return _each(client, p.positionals, "kill", "POST", "/containers/{}/kill" + qs({"signal": p["signal"]}))


def cmd_rm(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--force"), F("-v", "--volumes"), F("-l", "--link")).parse(argv)
    return _each(client, p.positionals, "rm", "DELETE",
                 "/containers/{}" + qs({"force": p["force"] or None, "v": p["volumes"] or None}))


def cmd_pause(client: Client, argv: list[str]) -> int:
    return _each(client, Spec().parse(argv).positionals, "pause", "POST", "/containers/{}/pause")


def cmd_unpause(client: Client, argv: list[str]) -> int:
    return _each(client, Spec().parse(argv).positionals, "unpause", "POST", "/containers/{}/unpause")


def cmd_wait(client: Client, argv: list[str]) -> int:
    names = Spec().parse(argv).positionals
    if not names:
        raise UsageError('"wait" requires at least 1 argument.')
    code = 0
    for name in names:
        try:
            print(client.post(f"/containers/{q(name)}/wait")["StatusCode"])
        except DaemonError as e:
            print(e, file=sys.stderr)
            code = 1
    return code


def cmd_rename(client: Client, argv: list[str]) -> int:
    pos = Spec().parse(argv).positionals
    if len(pos) != 2:
        raise UsageError('"rename" requires exactly 2 arguments.')
    client.post(f"/containers/{q(pos[0])}/rename?name={q(pos[1])}")
    return 0


def _created(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    text = text.rstrip("Z").split(".")[0]
    return datetime.fromisoformat(text + "+00:00").timestamp()


def _ports(ports: list[dict[str, Any]]) -> str:
    out = []
    for port in ports or []:
        if port.get("PublicPort"):
            out.append(f"{port.get('IP', '0.0.0.0')}:{port['PublicPort']}->{port['PrivatePort']}/{port['Type']}")
        else:
            out.append(f"{port['PrivatePort']}/{port['Type']}")
    return ", ".join(out)


def ps_record(c: dict[str, Any], trunc: bool) -> dict[str, Any]:
    command = c.get("Command", "")
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    created = _created(c.get("Created", 0))
    return {
        "ID": short_id(c["Id"], trunc),
        "Image": c.get("Image", ""),
        "Command": json.dumps(command),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "RunningFor": ago(created),
        "Ports": _ports(c.get("Ports") or []),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": "",
        "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in (c.get("Labels") or {}).items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
        "Networks": ",".join((c.get("NetworkSettings") or {}).get("Networks") or {}),
    }


PS_SPEC = Spec(F("-a", "--all"), F("-q", "--quiet"), F("--no-trunc"), F("-f", "--filter", multi=True),
               F("--format", value=True), F("-n", "--last", value=True), F("-l", "--latest"), F("-s", "--size"))


def cmd_ps(client: Client, argv: list[str]) -> int:
    p = PS_SPEC.parse(argv)
    if p.positionals:
        raise UsageError(f'"ps" accepts no arguments: {p.positionals[0]!r}')
    params = {"all": bool(p["all"]) or None, "filters": filters_json(p["filter"]),
              "limit": p["last"] or (1 if p["latest"] else None)}
    containers = client.get("/containers/json" + qs(params))
    trunc = not p["no_trunc"]
    records = [ps_record(c, trunc) for c in containers]
    print_listing(records, p["quiet"], p["format"],
                  ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
                  ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"])
    return 0


def cmd_inspect_container(client: Client, argv: list[str]) -> int:
    from dockyard.cli.commands.system import inspect_objects

    return inspect_objects(client, argv, kind="container")


def cmd_logs(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--follow"), F("-t", "--timestamps"), F("-n", "--tail", value=True),
             F("--since", value=True), F("--until", value=True), F("--details")).parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"logs" requires exactly 1 argument.')
    name = p.positionals[0]
    info = client.get(f"/containers/{q(name)}/json")
    params = {"stdout": True, "stderr": True, "follow": p["follow"] or None, "timestamps": p["timestamps"] or None,
              "tail": p["tail"], "since": p["since"], "until": p["until"]}
    resp = client.raw("GET", f"/containers/{q(name)}/logs" + qs(params))
    from dockyard.cli.hijack import pump_output

    pump_output(_Reader(resp), bool(info["Config"].get("Tty")))
    return 0


class _Reader:
    def __init__(self, resp: Any) -> None:
        self.resp = resp

    def recv(self, n: int) -> bytes:
        return self.resp.read1(n) if hasattr(self.resp, "read1") else self.resp.read(n)


EXEC_SPEC = Spec(F("-d", "--detach"), F("-i", "--interactive"), F("-t", "--tty"), F("-e", "--env", multi=True),
                 F("-w", "--workdir", value=True), F("-u", "--user", value=True), F("--privileged"),
                 F("--detach-keys", value=True), stop_at_positional=True)


def cmd_exec(client: Client, argv: list[str]) -> int:
    p = EXEC_SPEC.parse(argv)
    if len(p.positionals) < 2:
        raise UsageError('"exec" requires at least 2 arguments.')
    name, *cmd = p.positionals
    tty, interactive, detach = bool(p["tty"]), bool(p["interactive"]), bool(p["detach"])
    body: dict[str, Any] = {"Cmd": cmd, "Tty": tty, "AttachStdin": interactive and not detach,
                            "AttachStdout": not detach, "AttachStderr": not detach,
                            "Env": p["env"], "Privileged": bool(p["privileged"])}
    if p["workdir"]:
        body["WorkingDir"] = p["workdir"]
    if p["user"]:
        body["User"] = p["user"]
    exec_id = client.post(f"/containers/{q(name)}/exec", body)["Id"]
    if detach:
        client.post(f"/exec/{exec_id}/start", {"Detach": True, "Tty": tty})
        return 0
    from dockyard.cli import hijack

    sock = hijack.hijack(client, f"/exec/{exec_id}/start", json.dumps({"Detach": False, "Tty": tty}).encode())
    raw = interactive and tty and os.isatty(sys.stdin.fileno())
    with hijack.RawTerminal() if raw else _NullCtx():
        if tty and os.isatty(sys.stdout.fileno()):
            hijack.follow_resize(client, f"/exec/{exec_id}/resize")
        out = hijack.stream(sock, tty, interactive)
        out.join()
    sock.close()
    code = client.get(f"/exec/{exec_id}/json").get("ExitCode")
    return int(code) if code is not None else 0


class _NullCtx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def cmd_top(client: Client, argv: list[str]) -> int:
    pos = Spec().parse(argv).positionals
    if not pos:
        raise UsageError('"top" requires at least 1 argument.')
    extra = ("?ps_args=" + q(" ".join(pos[1:]))) if len(pos) > 1 else ""
    result = client.get(f"/containers/{q(pos[0])}/top{extra}")
    print(table(result["Titles"], [[str(c) for c in row] for row in result["Processes"]]))
    return 0


def cmd_port(client: Client, argv: list[str]) -> int:
    pos = Spec().parse(argv).positionals
    if not pos:
        raise UsageError('"port" requires at least 1 argument.')
    info = client.get(f"/containers/{q(pos[0])}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    for key, bindings in ports.items():
        if len(pos) > 1 and pos[1] not in (key, key.split("/")[0]):
            continue
        for b in bindings or []:
            print(f"{key} -> {b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}")
    return 0


def cmd_diff(client: Client, argv: list[str]) -> int:
    pos = Spec().parse(argv).positionals
    if len(pos) != 1:
        raise UsageError('"diff" requires exactly 1 argument.')
    for change in client.get(f"/containers/{q(pos[0])}/changes") or []:
        print(f"{'CAD'[change['Kind']]} {change['Path']}")
    return 0


def cmd_export(client: Client, argv: list[str]) -> int:
    p = Spec(F("-o", "--output", value=True)).parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"export" requires exactly 1 argument.')
    from dockyard.cli.commands.images import copy_out

    resp = client.raw("GET", f"/containers/{q(p.positionals[0])}/export")
    return copy_out(resp, p["output"], "Exporting")


def cmd_commit(client: Client, argv: list[str]) -> int:
    p = Spec(F("-a", "--author", value=True), F("-m", "--message", value=True), F("-c", "--change", multi=True),
             F("-p", "--pause", default=True)).parse(argv)
    if not 1 <= len(p.positionals) <= 2:
        raise UsageError('"commit" requires at least 1 and at most 2 arguments.')
    params: dict[str, Any] = {"container": p.positionals[0], "author": p["author"], "comment": p["message"],
                              "pause": bool(p["pause"])}
    if len(p.positionals) == 2:
        from dockyard.cli.commands.run import split_image

        params["repo"], params["tag"] = split_image(p.positionals[1])
    if p["change"]:
        params["changes"] = "\n".join(p["change"])
    print(client.post("/commit" + qs(params))["Id"])
    return 0


STATS_HEADER = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def _cpu_percent(s: dict[str, Any], previous: dict[str, Any] | None) -> float:
    """Docker's CPU %: the container's share of the host's CPU time since the previous sample."""
    pre = previous or s.get("precpu_stats") or {}
    cur = s.get("cpu_stats") or {}
    cpu_delta = (cur.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cur.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if cpu_delta <= 0 or sys_delta <= 0 or not pre.get("system_cpu_usage"):
        return 0.0
    return cpu_delta / sys_delta * (cur.get("online_cpus") or 1) * 100.0


def _stats_row(s: dict[str, Any], name: str, previous: dict[str, Any] | None, trunc: bool) -> dict[str, str]:
    from dockyard.cli.format import binary_size, human_size

    mem = s.get("memory_stats") or {}
    usage = mem.get("usage", 0) - ((mem.get("stats") or {}).get("total_inactive_file") or 0)
    limit = mem.get("limit") or 0
    net = s.get("networks") or {}
    rx = sum(n.get("rx_bytes", 0) for n in net.values())
    tx = sum(n.get("tx_bytes", 0) for n in net.values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write")
    ident = s.get("id", name)
    return {
        "ID": short_id(ident) if trunc else ident, "Container": name, "Name": (s.get("name") or "").lstrip("/"),
        "CPUPerc": f"{_cpu_percent(s, previous):.2f}%",
        "MemUsage": f"{binary_size(float(usage))} / {binary_size(float(limit))}",
        "MemPerc": f"{(usage / limit * 100.0) if limit else 0.0:.2f}%",
        "NetIO": f"{human_size(float(rx))} / {human_size(float(tx))}",
        "BlockIO": f"{human_size(float(read))} / {human_size(float(write))}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }


def cmd_stats(client: Client, argv: list[str]) -> int:
    p = Spec(F("--no-stream"), F("-a", "--all"), F("--format", value=True), F("--no-trunc")).parse(argv)
    fixed = list(p.positionals)
    previous: dict[str, dict[str, Any]] = {}
    while True:
        names = fixed or [c["Id"] for c in client.get("/containers/json" + qs({"all": bool(p["all"]) or None}))]
        rows = []
        for name in names:
            try:
                s = client.get(f"/containers/{q(name)}/stats?stream=0")
            except DaemonError:
                if fixed:
                    raise
                continue  # it went away between the list and the stats
            rows.append(_stats_row(s, name, previous.get(name), not p["no_trunc"]))
            previous[name] = s.get("cpu_stats") or {}
        if p["format"]:
            text = "\n".join(render(p["format"], r) for r in rows)
        else:
            text = table(STATS_HEADER, [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["NetIO"],
                                         r["BlockIO"], r["PIDs"]] for r in rows])
        if p["no_stream"]:
            print(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text + "\n")
        sys.stdout.flush()
        try:
            time.sleep(1.0)
        except KeyboardInterrupt:
            return 0
