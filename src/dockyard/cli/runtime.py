"""`dockyard-runtime`: a runc-compatible command line over `dockyard.runtime`.

Container managers (containerd's shim, Docker) call it exactly as they call runc, so the flags,
the output shapes and the exit codes follow runc. Errors go to stderr and, with --log, to the log
file (JSON lines with --log-format json, which is what containerd reads back).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from dockyard import OCI_VERSION, __version__
from dockyard.errors import DockyardError, InvalidArgument, NotImplementedFeature

_log_path: str | None = None
_log_format = "text"
_debug = False


def log(level: str, message: str) -> None:
    if level == "debug" and not _debug:
        return
    if _log_path:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        if _log_format == "json":
            line = json.dumps({"level": level, "msg": message, "time": now})
        else:
            line = f'time="{now}" level={level} msg="{message}"'
        try:
            with open(_log_path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass
    if level == "error":
        print(f"dockyard-runtime: {message}", file=sys.stderr)


def parse_signal(value: str) -> int:
    import signal

    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal.Signals, text))
    except AttributeError:
        raise InvalidArgument(f"unknown signal {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard-runtime", description="Dockyard's OCI runtime (runc-compatible)")
    p.add_argument("--root", default=None, help="state directory (default /run/dockyard-runtime)")
    p.add_argument("--log", default=None, help="log file")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", default=None)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command")

    def with_create_flags(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("-b", "--bundle", default=".")
        cmd.add_argument("--console-socket")
        cmd.add_argument("--pid-file")
        cmd.add_argument("--no-pivot", action="store_true")
        cmd.add_argument("--no-new-keyring", action="store_true")
        cmd.add_argument("--preserve-fds", type=int, default=0)
        cmd.add_argument("id")

    with_create_flags(sub.add_parser("create"))
    run = sub.add_parser("run")
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("--keep", action="store_true")
    run.add_argument("--no-subreaper", action="store_true")
    with_create_flags(run)
    sub.add_parser("start").add_argument("id")
    sub.add_parser("state").add_argument("id")
    kill = sub.add_parser("kill")
    kill.add_argument("-a", "--all", action="store_true")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = sub.add_parser("delete")
    delete.add_argument("-f", "--force", action="store_true")
    delete.add_argument("ids", nargs="+")
    sub.add_parser("pause").add_argument("id")
    sub.add_parser("resume").add_argument("id")
    ps = sub.add_parser("ps")
    ps.add_argument("-f", "--format", default="table", choices=["table", "json"])
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    for name in ("list", "ls"):
        ls = sub.add_parser(name)
        ls.add_argument("-f", "--format", default="table", choices=["table", "json"])
        ls.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("features")
    spec = sub.add_parser("spec")
    spec.add_argument("-b", "--bundle", default=".")
    spec.add_argument("--rootless", action="store_true")
    ex = sub.add_parser("exec")
    ex.add_argument("--console-socket")
    ex.add_argument("--cwd")
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-u", "--user")
    ex.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    ex.add_argument("-p", "--process")
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("--pid-file")
    ex.add_argument("--process-label")
    ex.add_argument("--apparmor")
    ex.add_argument("--no-new-privs", action="store_true", default=None)
    ex.add_argument("-c", "--cap", action="append", default=[])
    ex.add_argument("--preserve-fds", type=int, default=0)
    ex.add_argument("--cgroup")
    ex.add_argument("--ignore-paused", action="store_true")
    ex.add_argument("id")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    ev = sub.add_parser("events")
    ev.add_argument("--stats", action="store_true")
    ev.add_argument("--interval", default="5s")
    ev.add_argument("id")
    up = sub.add_parser("update")
    up.add_argument("-r", "--resources")
    up.add_argument("--memory")
    up.add_argument("--memory-reservation")
    up.add_argument("--memory-swap")
    up.add_argument("--cpu-shares", type=int)
    up.add_argument("--cpu-quota", type=int)
    up.add_argument("--cpu-period", type=int)
    up.add_argument("--cpuset-cpus")
    up.add_argument("--cpuset-mems")
    up.add_argument("--pids-limit", type=int)
    up.add_argument("--blkio-weight", type=int)
    up.add_argument("id")
    for name in ("checkpoint", "restore"):
        c = sub.add_parser(name)
        c.add_argument("rest", nargs=argparse.REMAINDER)
    return p


# Go's flag package (which runc uses) accepts -flag as well as --flag.
_LONG_SINGLE_DASH = {"-bundle", "-root", "-log", "-log-format", "-debug", "-pid-file", "-console-socket",
                     "-detach", "-process", "-force", "-all", "-format", "-systemd-cgroup", "-no-pivot",
                     "-no-new-keyring", "-preserve-fds", "-tty", "-cwd", "-env", "-user", "-quiet", "-stats"}


def _normalise(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        out.append(("-" + name + eq + value) if name in _LONG_SINGLE_DASH else arg)
    return out


def main(argv: list[str] | None = None) -> int:
    global _log_path, _log_format, _debug
    args = _parser().parse_args(_normalise(sys.argv[1:] if argv is None else argv))
    if args.version:
        print(f"dockyard-runtime version {__version__}\nspec: {OCI_VERSION}")
        return 0
    _log_path, _log_format, _debug = args.log, args.log_format, args.debug
    if not args.command:
        _parser().print_help()
        return 0
    try:
        return _dispatch(args)
    except DockyardError as e:
        log("error", str(e))
        return 1
    except OSError as e:
        log("error", f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 1


def _store(args: argparse.Namespace) -> Any:
    from dockyard.runtime.state import DEFAULT_ROOT, StateStore

    return StateStore(args.root or DEFAULT_ROOT)


def _create_opts(args: argparse.Namespace) -> Any:
    from dockyard.runtime.container import CreateOptions

    return CreateOptions(bundle=args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
                         no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring, preserve_fds=args.preserve_fds)


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd in ("checkpoint", "restore"):
        raise NotImplementedFeature(f"{cmd} (CRIU is not supported by dockyard-runtime yet)")
    if cmd == "spec":
        return _spec(args)
    if cmd == "features":
        return _features()
    from dockyard.runtime import container

    store = _store(args)
    if cmd == "create":
        container.create(store, args.id, _create_opts(args), args.systemd_cgroup)
        return 0
    if cmd == "run":
        return _run(store, args)
    if cmd == "start":
        container.start(store, args.id)
        return 0
    if cmd == "state":
        state = store.load(args.id)
        print(json.dumps(container.oci_state(store, state), indent=2))
        return 0
    if cmd == "kill":
        container.kill(store, args.id, parse_signal(args.signal), args.all)
        return 0
    if cmd == "delete":
        return _delete(store, args)
    if cmd == "pause":
        container.pause(store, args.id)
        return 0
    if cmd == "resume":
        container.resume(store, args.id)
        return 0
    if cmd == "ps":
        return _ps(store, args)
    if cmd in ("list", "ls"):
        return _list(store, args)
    if cmd == "exec":
        return _exec(store, args)
    if cmd == "events":
        return _events(store, args)
    if cmd == "update":
        return _update(store, args)
    raise InvalidArgument(f"unknown command {cmd!r}")


def _run(store: Any, args: argparse.Namespace) -> int:
    from dockyard.linux import libc
    from dockyard.runtime import container, foreground

    own_console = None
    opts = _create_opts(args)
    if not args.detach and not args.console_socket:
        spec_terminal = _bundle_wants_terminal(args.bundle)
        if spec_terminal:
            import socket
            import tempfile

            sock_dir = tempfile.mkdtemp(prefix="dockyard-console-")
            path = os.path.join(sock_dir, "console.sock")
            own_console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            own_console.bind(path)
            own_console.listen(1)
            opts.console_socket = path
    if not args.detach and not args.no_subreaper:
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    master = None
    try:
        state = container.create(store, args.id, opts, args.systemd_cgroup)
        if own_console is not None:
            # the init connected and sent the pty master during create; it waits in the backlog
            from dockyard.runtime.console import recv_master

            own_console.settimeout(5)
            conn, _ = own_console.accept()
            with conn:
                master = recv_master(conn)
    finally:
        if own_console is not None:
            own_console.close()
            import shutil

            shutil.rmtree(os.path.dirname(opts.console_socket), ignore_errors=True)
    try:
        container.start(store, args.id)
    except BaseException:
        container.delete(store, args.id, force=True)
        raise
    if args.detach:
        return 0
    code = foreground.wait_foreground(state.pid, master)
    if not args.keep:
        container.delete(store, args.id, force=True)
    return code


def _bundle_wants_terminal(bundle: str) -> bool:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return bool((json.loads(f.read()).get("process") or {}).get("terminal"))
    except (OSError, ValueError):
        return False


def _delete(store: Any, args: argparse.Namespace) -> int:
    from dockyard.errors import NotFound
    from dockyard.runtime import container

    code = 0
    for cid in args.ids:
        try:
            container.delete(store, cid, args.force)
        except NotFound as e:
            if not args.force:
                log("error", str(e))
                code = 1
        except DockyardError as e:
            log("error", str(e))
            code = 1
    return code


def _ps(store: Any, args: argparse.Namespace) -> int:
    import subprocess

    from dockyard.runtime import container

    pids = container.pids(store, args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    ps_args = args.ps_args or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InvalidArgument(f"ps {' '.join(ps_args)}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgument("ps output has no PID column")
    col = header.index("PID")
    print(lines[0])
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def _list(store: Any, args: argparse.Namespace) -> int:
    from dockyard.runtime import container

    rows = []
    for cid in store.ids():
        try:
            rows.append(container.oci_state(store, store.load(cid)))
        except DockyardError:
            continue
    if args.quiet:
        for r in rows:
            print(r["id"])
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        table = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        table += [(r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"]) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        for row in table:
            print("   ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return 0


def _exec(store: Any, args: argparse.Namespace) -> int:
    from dockyard.runtime.execute import exec_process, merged_process

    if args.process:
        try:
            with open(args.process, "rb") as f:
                proc = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--process {args.process}: {e}") from None
        from dockyard.runtime.spec import _check_process

        _check_process(proc, "process")
    else:
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            raise InvalidArgument("exec needs a command (or --process FILE)")
        state = store.load(args.id)
        proc = merged_process(state.config.get("process") or {}, command, cwd=args.cwd, env=args.env,
                              user=args.user, additional_gids=args.additional_gids, caps=args.cap, tty=args.tty,
                              no_new_privs=args.no_new_privs)
    return exec_process(store, args.id, proc, detach=args.detach, pid_file=args.pid_file,
                        console_socket=args.console_socket, preserve_fds=args.preserve_fds,
                        ignore_paused=args.ignore_paused)


def _events(store: Any, args: argparse.Namespace) -> int:
    from dockyard.runtime import container

    interval = float(args.interval.rstrip("s") or 5)
    while True:
        state = store.load(args.id)
        cg = container.cgroup_of(state)
        if cg is None:
            raise InvalidArgument(f"container {args.id} has no cgroup")
        print(json.dumps({"type": "stats", "id": args.id, "data": cg.stats()}), flush=True)
        if args.stats:
            return 0
        time.sleep(interval)


def _update(store: Any, args: argparse.Namespace) -> int:
    from dockyard.runtime import container

    state = store.load(args.id)
    if args.resources:
        raw = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
        try:
            resources = json.loads(raw)
        except ValueError as e:
            raise InvalidArgument(f"--resources: invalid JSON: {e}") from None
    else:
        resources = {}
        mem: dict[str, int] = {}
        for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"), ("memory_swap", "swap")):
            if getattr(args, flag) is not None:
                mem[key] = _bytes(getattr(args, flag))
        if mem:
            resources["memory"] = mem
        cpu: dict[str, Any] = {}
        for flag, key in (("cpu_shares", "shares"), ("cpu_quota", "quota"), ("cpu_period", "period"),
                          ("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
            if getattr(args, flag) is not None:
                cpu[key] = getattr(args, flag)
        if cpu:
            resources["cpu"] = cpu
        if args.pids_limit is not None:
            resources["pids"] = {"limit": args.pids_limit}
        if args.blkio_weight is not None:
            resources["blockIO"] = {"weight": args.blkio_weight}
    cg = container.cgroup_of(state)
    if cg is None:
        raise InvalidArgument(f"container {args.id} has no cgroup")
    cg.set(resources)
    linux = state.config.setdefault("linux", {})
    merged = linux.setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    store.save(state)
    return 0


def _bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _spec(args: argparse.Namespace) -> int:
    from dockyard.runtime.defaults import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"{path} already exists")
    with open(path, "w") as f:
        json.dump(default_spec(rootless=args.rootless), f, indent="\t")
    return 0


def _features() -> int:
    from dockyard.runtime import mountopts
    from dockyard.runtime.spec import NAMESPACE_FLAGS
    from dockyard.security import capabilities, seccomp

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted(set(mountopts._FLAGS) | set(mountopts._PROPAGATION) | {"tmpcopyup"}),
        "linux": {
            "namespaces": sorted(NAMESPACE_FLAGS),
            "capabilities": sorted(capabilities.CAP_NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp.supported(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"org.dockyard.runtime.version": __version__},
    }
    print(json.dumps(features, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
