"""`dockyard-runtime`: a runc-compatible command line over `dockyard.runtime`.

Container managers (containerd's shim, Docker) call it exactly as they call runc, so the flags,
the output shapes and the exit codes follow runc. Errors go to stderr and, with --log, to the log
file (JSON lines with --log-format json, which is what containerd reads back).
"""

from __future__ import annotations

import os
import sys
import time

from dockyard import OCI_VERSION, __version__
from dockyard.errors import DockyardError, InvalidArgument, NotImplementedFeature
from dockyard.utils import fastjson as json

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

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


class Args:
    """Parsed command line: attributes named after the flags (dashes become underscores)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # unset flags read as None
        return None


# A hand-written parser in the style of Go's flag package (which runc uses): argparse alone costs
# more to import than runc takes to run a command. Each flag: (names, dest, kind, default) where
# kind is "bool", "str", "int" or "list" (repeatable).
_GLOBAL = [
    (("--root",), "root", "str", None), (("--log",), "log", "str", None),
    (("--log-format",), "log_format", "str", "text"), (("--debug",), "debug", "bool", False),
    (("--systemd-cgroup",), "systemd_cgroup", "bool", False), (("--rootless",), "rootless", "str", "auto"),
    (("--criu",), "criu", "str", None), (("-v", "--version"), "version", "bool", False),
    (("-h", "--help"), "help", "bool", False),
]
_CREATE = [
    (("-b", "--bundle"), "bundle", "str", "."), (("--console-socket",), "console_socket", "str", None),
    (("--pid-file",), "pid_file", "str", None), (("--no-pivot",), "no_pivot", "bool", False),
    (("--no-new-keyring",), "no_new_keyring", "bool", False), (("--preserve-fds",), "preserve_fds", "int", 0),
]
_FORMAT = [(("-f", "--format"), "format", "str", "table")]
# command: (flags, positional names, rest: name of the list that takes everything after them)
_COMMANDS: dict[str, tuple[list[Any], list[str], str | None]] = {
    "create": (_CREATE, ["id"], None),
    "run": (_CREATE + [(("-d", "--detach"), "detach", "bool", False), (("--keep",), "keep", "bool", False),
                       (("--no-subreaper",), "no_subreaper", "bool", False)], ["id"], None),
    "start": ([], ["id"], None),
    "state": ([], ["id"], None),
    "kill": ([(("-a", "--all"), "all", "bool", False)], ["id"], "signal"),
    "delete": ([(("-f", "--force"), "force", "bool", False)], [], "ids"),
    "pause": ([], ["id"], None),
    "resume": ([], ["id"], None),
    "ps": (_FORMAT, ["id"], "ps_args"),
    "list": (_FORMAT + [(("-q", "--quiet"), "quiet", "bool", False)], [], None),
    "features": ([], [], None),
    "spec": ([(("-b", "--bundle"), "bundle", "str", "."), (("--rootless",), "rootless", "bool", False)], [], None),
    "exec": ([
        (("--console-socket",), "console_socket", "str", None), (("--cwd",), "cwd", "str", None),
        (("-e", "--env"), "env", "list", None), (("-t", "--tty"), "tty", "bool", False),
        (("-u", "--user"), "user", "str", None), (("-g", "--additional-gids"), "additional_gids", "list", None),
        (("-p", "--process"), "process", "str", None), (("-d", "--detach"), "detach", "bool", False),
        (("--pid-file",), "pid_file", "str", None), (("--process-label",), "process_label", "str", None),
        (("--apparmor",), "apparmor", "str", None), (("--no-new-privs",), "no_new_privs", "bool", None),
        (("-c", "--cap"), "cap", "list", None), (("--preserve-fds",), "preserve_fds", "int", 0),
        (("--cgroup",), "cgroup", "list", None), (("--ignore-paused",), "ignore_paused", "bool", False),
    ], ["id"], "argv"),
    "events": ([(("--stats",), "stats", "bool", False), (("--interval",), "interval", "str", "5s")], ["id"], None),
    "update": ([(("-r", "--resources"), "resources", "str", None), (("--memory",), "memory", "str", None),
                (("--memory-reservation",), "memory_reservation", "str", None),
                (("--memory-swap",), "memory_swap", "str", None), (("--cpu-shares",), "cpu_shares", "int", None),
                (("--cpu-quota",), "cpu_quota", "int", None), (("--cpu-period",), "cpu_period", "int", None),
                (("--cpuset-cpus",), "cpuset_cpus", "str", None), (("--cpuset-mems",), "cpuset_mems", "str", None),
                (("--pids-limit",), "pids_limit", "int", None), (("--blkio-weight",), "blkio_weight", "int", None)],
               ["id"], None),
    "checkpoint": ([], [], "rest"),
    "restore": ([], [], "rest"),
}
_ALIASES = {"ls": "list"}
_USAGE = """usage: dockyard-runtime [global flags] COMMAND [flags] ARGS

Dockyard's OCI runtime (runc-compatible).

commands: create, start, run, state, kill, delete, exec, pause, resume, ps, list, events,
          update, features, spec; checkpoint and restore are not implemented
global flags: --root DIR, --log FILE, --log-format text|json, --debug, --systemd-cgroup, --version
"""


def _lookup(flags: list[Any], token: str) -> tuple[Any, str | None]:
    name, eq, value = token.partition("=")
    if name.startswith("-") and not name.startswith("--") and len(name) > 2:
        name = "-" + name  # Go accepts -flag for --flag
    for spec in flags:
        if name in spec[0]:
            return spec, (value if eq else None)
    raise InvalidArgument(f"flag provided but not defined: {token.split('=')[0]}")


def _take_flag(flags: list[Any], argv: list[str], i: int, values: dict[str, Any]) -> int:
    spec, inline = _lookup(flags, argv[i])
    _names, dest, kind, _default = spec
    if kind == "bool":
        values[dest] = inline is None or inline.lower() in ("1", "true", "yes")
        return i + 1
    if inline is None:
        if i + 1 >= len(argv):
            raise InvalidArgument(f"flag needs an argument: {argv[i]}")
        inline, i = argv[i + 1], i + 1
    if kind == "int" or (kind == "list" and dest == "additional_gids"):
        try:
            value: Any = int(inline)
        except ValueError:
            raise InvalidArgument(f"invalid value {inline!r} for flag {argv[i - 1]}: not an integer") from None
    else:
        value = inline
    if kind == "list":
        values[dest] = (values.get(dest) or []) + [value]
    else:
        values[dest] = value
    return i + 1


def parse_args(argv: list[str]) -> Args:
    values: dict[str, Any] = {spec[1]: spec[3] for spec in _GLOBAL}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        i = _take_flag(_GLOBAL, argv, i, values)
    if i == len(argv):
        values["command"] = None
        return Args(**values)
    command = _ALIASES.get(argv[i], argv[i])
    if command not in _COMMANDS:
        raise InvalidArgument(f"no such command: {argv[i]}")
    flags, positionals, rest = _COMMANDS[command]
    values["command"] = command
    for spec in flags:
        values[spec[1]] = spec[3]
    if rest:
        values[rest] = []
    names = list(positionals)
    i += 1
    # as in Go's flag package, flags end at the first argument that is not one (or at "--")
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "--"):
        i = _take_flag(flags, argv, i, values)
    if i < len(argv) and argv[i] == "--":
        i += 1
    while i < len(argv) and names:
        values[names.pop(0)] = argv[i]
        i += 1
    if i < len(argv):
        if not rest:
            raise InvalidArgument(f"{command}: unexpected argument {argv[i]!r}")
        values[rest] = argv[i:]
    if names:
        raise InvalidArgument(f"{command}: missing {' and '.join(n.upper() for n in names)}")
    if rest == "ids" and not values["ids"]:
        raise InvalidArgument("delete: missing container ID")
    if rest == "signal":
        values["signal"] = values["signal"][0] if values["signal"] else "SIGTERM"
    for spec in flags:
        if spec[2] == "list" and values[spec[1]] is None:
            values[spec[1]] = []
    return Args(**values)


def main(argv: list[str] | None = None) -> int:
    global _log_path, _log_format, _debug
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except InvalidArgument as e:
        print(f"dockyard-runtime: {e}\n\n{_USAGE}", file=sys.stderr)
        return 2
    if args.version:
        print(f"dockyard-runtime version {__version__}\nspec: {OCI_VERSION}")
        return 0
    _log_path, _log_format, _debug = args.log, args.log_format, args.debug
    if args.help or not args.command:
        print(_USAGE)
        return 0
    try:
        return _dispatch(args)
    except DockyardError as e:
        log("error", str(e))
        return 1
    except OSError as e:
        log("error", _os_error(e))
        return 1


def exit_now(code: int) -> None:
    """End the process with `code`, skipping the interpreter's finalization.

    Tearing down the modules a verb imported costs about 2 ms, a tenth of a `create`, and the
    runtime has nothing to finalize: no threads, no atexit handlers, files closed as they are
    used. Only stdio's buffers are left, and they are flushed here (a failing flush ends with
    120, as the interpreter's own exit does).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code)


def _os_error(e: OSError) -> str:
    return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")


def _store(args: Args) -> Any:
    from dockyard.runtime.state import DEFAULT_ROOT, StateStore

    return StateStore(args.root or DEFAULT_ROOT)


def _create_opts(args: Args) -> Any:
    from dockyard.runtime.container import CreateOptions

    return CreateOptions(bundle=args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
                         no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring, preserve_fds=args.preserve_fds)


def _dispatch(args: Args) -> int:
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
        from dockyard.runtime.front import render_state

        state = store.load(args.id)
        print(render_state(state, container.current_status(store, state)))
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


def _run(store: Any, args: Args) -> int:
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


def _delete(store: Any, args: Args, failures: list[str] | None = None) -> int:
    """Delete each ID; errors are logged (or, from call(), collected in `failures`)."""
    from dockyard.errors import NotFound
    from dockyard.runtime import container

    code = 0
    for cid in args.ids:
        try:
            container.delete(store, cid, args.force)
        except NotFound as e:
            if not args.force:
                _fail(str(e), failures)
                code = 1
        except DockyardError as e:
            _fail(str(e), failures)
            code = 1
    return code


def _fail(message: str, failures: list[str] | None) -> None:
    if failures is None:
        log("error", message)
    else:
        failures.append(message)


# Verbs a long-lived caller (the supervisor) may run in one of its threads through call(): they
# never enter the container, wait for no child and print nothing on success.
CALLABLE = ("start", "delete")


def call(argv: list[str]) -> tuple[int, str]:
    """`dockyard-runtime ARGV` for a verb in CALLABLE, run by the calling thread instead of a new
    process: the same parsing, checks and code; the exit code and the error it would have
    printed are returned, nothing is printed or logged."""
    try:
        args = parse_args(argv)
    except InvalidArgument as e:
        return 2, str(e)
    if args.command not in CALLABLE or args.help or args.version:
        return 2, f"{args.command or 'no command'}: not callable in-process (only {', '.join(CALLABLE)})"
    try:
        store = _store(args)
        if args.command == "delete":
            failures: list[str] = []
            code = _delete(store, args, failures)
            return code, "; ".join(failures)
        from dockyard.runtime import container

        container.start(store, args.id)
        return 0, ""
    except DockyardError as e:
        return 1, str(e)
    except OSError as e:
        return 1, _os_error(e)


def _ps(store: Any, args: Args) -> int:
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


def _list(store: Any, args: Args) -> int:
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


def _exec(store: Any, args: Args) -> int:
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


def _events(store: Any, args: Args) -> int:
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


def _update(store: Any, args: Args) -> int:
    from dockyard.runtime import container

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
    # under the container's lock, as create, start and delete: a delete meanwhile would find
    # the state files half rewritten
    lock = store.lock(args.id)
    try:
        state = store.load(args.id)
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
    finally:
        os.close(lock)
    return 0


def _bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _spec(args: Args) -> int:
    from dockyard.runtime.defaults import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"{path} already exists")
    with open(path, "w") as f:
        import json as std_json

        std_json.dump(default_spec(rootless=args.rootless), f, indent="\t")
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
    import json as std_json

    print(std_json.dumps(features, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
