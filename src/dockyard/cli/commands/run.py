"""`run` and `create`: container config from docker-style flags, then create/attach/start/wait."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from dockyard.cli.args import F, Parsed, Spec, UsageError
from dockyard.cli.client import Client, CliError, DaemonError, q
from dockyard.cli.format import parse_size

CREATE_SPEC = Spec(
    F("-d", "--detach"), F("--rm"), F("-i", "--interactive"), F("-t", "--tty"),
    F("-e", "--env", multi=True), F("--env-file", multi=True), F("-w", "--workdir", value=True),
    F("-u", "--user", value=True), F("--name", value=True), F("--entrypoint", value=True),
    F("-v", "--volume", multi=True), F("-m", "--memory", value=True), F("--cpus", value=True),
    F("--pids-limit", value=True), F("--restart", value=True), F("--read-only"),
    F("-h", "--hostname", value=True), F("--init"), F("-l", "--label", multi=True),
    F("-p", "--publish", multi=True), F("--network", "--net", dest="network", value=True),
    F("-P", "--publish-all"), F("--network-alias", "--net-alias", dest="network_alias", multi=True),
    F("--ip", value=True), F("--ip6", value=True),
    F("--privileged"), F("--cap-add", multi=True), F("--cap-drop", multi=True),
    F("--stop-signal", value=True), F("--stop-timeout", value=True), F("--tmpfs", multi=True),
    F("--pull", value=True, default="missing"), F("-a", "--attach", multi=True),
    F("--platform", value=True), F("-q", "--quiet"), F("--sig-proxy", default=True),
    F("--log-driver", value=True), F("--log-opt", multi=True), F("--shm-size", value=True),
    F("--ulimit", multi=True), F("--security-opt", multi=True), F("--cpu-shares", "-c", dest="cpu_shares", value=True),
    F("--memory-swap", value=True), F("--group-add", multi=True), F("--add-host", multi=True),
    F("--dns", multi=True), F("--health-cmd", value=True), F("--device-cgroup-rule", multi=True),
    F("--mac-address", value=True), F("--pid", value=True), F("--ipc", value=True), F("--uts", value=True),
    stop_at_positional=True,
)


def split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, "latest"


def _env(p: Parsed) -> list[str]:
    env: list[str] = []
    for path in p["env_file"]:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    env.append(line)
    for item in p["env"]:
        if "=" not in item:
            if item in os.environ:
                env.append(f"{item}={os.environ[item]}")
            continue
        env.append(item)
    return env


def _restart(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise UsageError(f"invalid restart policy: {text!r}")
    policy: dict[str, Any] = {"Name": name}
    if count:
        if name != "on-failure":
            raise UsageError(f"maximum retry count cannot be used with restart policy {name!r}")
        policy["MaximumRetryCount"] = int(count)
    return policy


def _ports(specs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        proto = "tcp"
        if "/" in spec:
            spec, proto = spec.rsplit("/", 1)
        parts = spec.split(":")
        container = parts[-1]
        host_port = parts[-2] if len(parts) >= 2 else ""
        host_ip = ":".join(parts[:-2]) if len(parts) >= 3 else ""
        key = f"{container}/{proto}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
    return exposed, bindings


def build_config(p: Parsed) -> tuple[dict[str, Any], str | None]:
    """The ContainerCreate body and the container name from parsed `run`/`create` flags."""
    if not p.positionals:
        raise UsageError('"run" requires at least 1 argument.')
    image, *cmd = p.positionals
    host: dict[str, Any] = {}
    anonymous = {v: {} for v in p["volume"] if ":" not in v}  # `-v /path`: an anonymous volume, as docker's CLI
    if len(anonymous) < len(p["volume"]):
        host["Binds"] = [v for v in p["volume"] if ":" in v]
    if p["memory"]:
        host["Memory"] = parse_size(p["memory"])
    if p["memory_swap"]:
        host["MemorySwap"] = -1 if p["memory_swap"] == "-1" else parse_size(p["memory_swap"])
    if p["shm_size"]:
        host["ShmSize"] = parse_size(p["shm_size"])
    if p["cpus"]:
        host["NanoCpus"] = int(round(float(p["cpus"]) * 1e9))
    if p["cpu_shares"]:
        host["CpuShares"] = int(p["cpu_shares"])
    if p["pids_limit"]:
        host["PidsLimit"] = int(p["pids_limit"])
    policy = _restart(p["restart"])
    if policy:
        host["RestartPolicy"] = policy
    if p["read_only"]:
        host["ReadonlyRootfs"] = True
    if p["init"]:
        host["Init"] = True
    if p["rm"]:
        host["AutoRemove"] = True
    if p["privileged"]:
        host["Privileged"] = True
    if p["cap_add"]:
        host["CapAdd"] = p["cap_add"]
    if p["device_cgroup_rule"]:
        host["DeviceCgroupRules"] = p["device_cgroup_rule"]
    for flag, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode")):
        if p[flag]:
            host[key] = p[flag]
    if p["cap_drop"]:
        host["CapDrop"] = p["cap_drop"]
    if p["security_opt"]:
        host["SecurityOpt"] = p["security_opt"]
    if p["group_add"]:
        host["GroupAdd"] = p["group_add"]
    if p["add_host"]:
        host["ExtraHosts"] = p["add_host"]
    if p["dns"]:
        host["Dns"] = p["dns"]
    if p["network"]:
        host["NetworkMode"] = p["network"]
    if p["tmpfs"]:
        host["Tmpfs"] = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in p["tmpfs"]}
    if p["log_driver"] or p["log_opt"]:
        host["LogConfig"] = {"Type": p["log_driver"] or "json-file",
                             "Config": dict(o.split("=", 1) for o in p["log_opt"])}
    if p["ulimit"]:
        limits = []
        for u in p["ulimit"]:
            name, _, val = u.partition("=")
            soft, _, hard = val.partition(":")
            limits.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        host["Ulimits"] = limits
    exposed, bindings = _ports(p["publish"])
    if bindings:
        host["PortBindings"] = bindings
    if p["publish_all"]:
        host["PublishAllPorts"] = True
    endpoint: dict[str, Any] = {}
    if p["network_alias"]:
        endpoint["Aliases"] = list(p["network_alias"])
    if p["ip"] or p["ip6"]:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", p["ip"]), ("IPv6Address", p["ip6"])) if v}
    if p["mac_address"]:
        endpoint["MacAddress"] = p["mac_address"]
    detach = bool(p["detach"])
    attach = set(a.lower() for a in p["attach"]) or ({"stdout", "stderr"} | ({"stdin"} if p["interactive"] else set()))
    config: dict[str, Any] = {
        "Image": image,
        "Tty": bool(p["tty"]),
        "OpenStdin": bool(p["interactive"]),
        "StdinOnce": bool(p["interactive"]) and not detach,
        "AttachStdin": not detach and "stdin" in attach,
        "AttachStdout": not detach and "stdout" in attach,
        "AttachStderr": not detach and "stderr" in attach,
        "Env": _env(p),
        "Labels": dict((lbl.split("=", 1) + [""])[:2] for lbl in p["label"]),
        "HostConfig": host,
    }
    if endpoint:
        config["NetworkingConfig"] = {"EndpointsConfig": {p["network"] or "default": endpoint}}
    if cmd:
        config["Cmd"] = cmd
    if p["entrypoint"] is not None:
        config["Entrypoint"] = [p["entrypoint"]] if p["entrypoint"] else [""]
    for key, flag in (("WorkingDir", "workdir"), ("User", "user"), ("Hostname", "hostname"),
                      ("StopSignal", "stop_signal")):
        if p[flag]:
            config[key] = p[flag]
    if p["stop_timeout"]:
        config["StopTimeout"] = int(p["stop_timeout"])
    if exposed:
        config["ExposedPorts"] = exposed
    if anonymous:
        config["Volumes"] = anonymous
    if p["health_cmd"]:
        config["Healthcheck"] = {"Test": ["CMD-SHELL", p["health_cmd"]]}
    return config, p["name"]


def pull(client: Client, image: str, quiet: bool = False) -> None:
    from dockyard.cli.commands.images import pull_image

    pull_image(client, image, quiet=quiet, out=sys.stderr)


def create(client: Client, p: Parsed) -> str:
    config, name = build_config(p)
    path = "/containers/create" + (f"?name={q(name)}" if name else "")
    image = config["Image"]
    if p["pull"] == "always":
        pull(client, image, p["quiet"])
    try:
        result = client.post(path, config)
    except DaemonError as e:
        if e.status != 404 or p["pull"] == "never" or "image" not in e.daemon_message.lower():
            raise
        name_, tag = split_image(image)
        print(f"Unable to find image '{name_}:{tag}' locally", file=sys.stderr)
        pull(client, image, p["quiet"])
        result = client.post(path, config)
    for warning in result.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    return str(result["Id"])


def cmd_create(client: Client, argv: list[str]) -> int:
    print(create(client, CREATE_SPEC.parse(argv)))
    return 0


def start_error_code(e: DaemonError) -> int:
    msg = e.daemon_message.lower()
    if "not found" in msg or "no such file" in msg:
        return 127
    if "permission denied" in msg or "cannot execute" in msg or "is a directory" in msg:
        return 126
    return 125


def cmd_run(client: Client, argv: list[str]) -> int:
    p = CREATE_SPEC.parse(argv)
    if p["detach"] and p["rm"] is None:
        pass
    cid = create(client, p)
    if p["detach"]:
        try:
            client.post(f"/containers/{cid}/start")
        except DaemonError as e:
            print(e, file=sys.stderr)
            return start_error_code(e)
        print(cid)
        return 0
    return run_attached(client, cid, bool(p["tty"]), bool(p["interactive"]), bool(p["rm"]))


def run_attached(client: Client, cid: str, tty: bool, interactive: bool, auto_remove: bool) -> int:
    from dockyard.cli import hijack

    stdin_tty = interactive and tty and os.isatty(sys.stdin.fileno())
    sock = hijack.hijack(client, f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1"
                         + ("&stdin=1" if interactive else ""))
    wait_conn = client.connection()
    condition = "removed" if auto_remove else "next-exit"
    from dockyard.cli.client import API

    wait_conn.request("POST", f"{API}/containers/{cid}/wait?condition={condition}")
    with hijack.RawTerminal() if stdin_tty else _Null():
        try:
            client.post(f"/containers/{cid}/start")
        except DaemonError as e:
            sock.close()
            print(e, file=sys.stderr)
            code = start_error_code(e)
            if auto_remove:
                try:
                    client.delete(f"/containers/{cid}?force=1")
                except CliError:
                    pass
            return code
        if tty and os.isatty(sys.stdout.fileno()):
            hijack.follow_resize(client, f"/containers/{cid}/resize")
        out = hijack.stream(sock, tty, interactive)
        resp = wait_conn.getresponse()
        body = resp.read()
        out.join(5)
    try:
        sock.close()
    except OSError:
        pass
    if resp.status >= 400:
        try:
            message = json.loads(body).get("message", "")
        except ValueError:
            message = body.decode(errors="replace")
        print(f"Error response from daemon: {message}", file=sys.stderr)
        return 125
    result = json.loads(body or b"{}")
    if (result.get("Error") or {}).get("Message"):
        print(f"Error response from daemon: {result['Error']['Message']}", file=sys.stderr)
    return int(result.get("StatusCode", 0))


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
