"""`dockyard`: the docker-style command line. It talks to `dockyardd` over the Docker Engine API.

Host: `-H/--host unix://PATH`, else env DOCKYARD_HOST, else DEFAULT_HOST. Auto-start rules are
in dockyard.cli.client. Exit status: 125 for usage and daemon errors, 126/127 when the
container's command cannot be run, else the command's (or the container's) own status.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# command name -> (module under dockyard.cli.commands, function)
SHORT: dict[str, tuple[str, str]] = {
    "run": ("run", "cmd_run"), "create": ("run", "cmd_create"),
    "start": ("containers", "cmd_start"), "stop": ("containers", "cmd_stop"),
    "restart": ("containers", "cmd_restart"), "kill": ("containers", "cmd_kill"),
    "rm": ("containers", "cmd_rm"), "ps": ("containers", "cmd_ps"), "exec": ("containers", "cmd_exec"),
    "logs": ("containers", "cmd_logs"), "pause": ("containers", "cmd_pause"),
    "unpause": ("containers", "cmd_unpause"), "wait": ("containers", "cmd_wait"),
    "rename": ("containers", "cmd_rename"), "top": ("containers", "cmd_top"), "port": ("containers", "cmd_port"),
    "diff": ("containers", "cmd_diff"), "export": ("containers", "cmd_export"),
    "commit": ("containers", "cmd_commit"), "stats": ("containers", "cmd_stats"), "cp": ("cp", "cmd_cp"),
    "inspect": ("system", "inspect_objects"), "images": ("images", "cmd_images"), "rmi": ("images", "cmd_rmi"),
    "tag": ("images", "cmd_tag"), "save": ("images", "cmd_save"), "load": ("images", "cmd_load"),
    "import": ("images", "cmd_import"), "history": ("images", "cmd_history"), "pull": ("images", "cmd_pull"),
    "push": ("images", "cmd_push"), "version": ("system", "cmd_version"), "info": ("system", "cmd_info"),
    "events": ("system", "cmd_events"), "build": ("build", "cmd_build"),
    "login": ("login", "cmd_login"), "logout": ("login", "cmd_logout"),
}

CONTAINER: dict[str, tuple[str, str]] = {
    **{k: SHORT[k] for k in ("run", "create", "start", "stop", "restart", "kill", "rm", "exec", "logs", "pause",
                             "unpause", "wait", "rename", "top", "port", "diff", "export", "commit", "stats", "cp")},
    "ls": SHORT["ps"], "ps": SHORT["ps"], "list": SHORT["ps"],
    "inspect": ("containers", "cmd_inspect_container"), "remove": SHORT["rm"],
}

IMAGE: dict[str, tuple[str, str]] = {
    "ls": SHORT["images"], "list": SHORT["images"], "rm": SHORT["rmi"], "remove": SHORT["rmi"],
    "tag": SHORT["tag"], "history": SHORT["history"], "save": SHORT["save"], "load": SHORT["load"],
    "import": SHORT["import"], "pull": SHORT["pull"], "push": SHORT["push"], "build": SHORT["build"],
    "prune": ("images", "cmd_image_prune"), "inspect": ("images", "cmd_inspect_image"),
}

SYSTEM: dict[str, tuple[str, str]] = {"info": SHORT["info"], "events": SHORT["events"]}

# the registry server runs in this process and needs no daemon (dockyard.cli.commands.registry)
REGISTRY: dict[str, tuple[str, str]] = {"serve": ("registry", "cmd_serve"),
                                        "garbage-collect": ("registry", "cmd_garbage_collect")}

VOLUME: dict[str, tuple[str, str]] = {
    "create": ("volumes", "cmd_create"), "ls": ("volumes", "cmd_ls"), "list": ("volumes", "cmd_ls"),
    "inspect": ("volumes", "cmd_inspect"), "rm": ("volumes", "cmd_rm"), "remove": ("volumes", "cmd_rm"),
    "prune": ("volumes", "cmd_prune"),
}

NETWORK: dict[str, tuple[str, str]] = {
    name: ("networks", f"cmd_network_{name}")
    for name in ("ls", "create", "inspect", "rm", "connect", "disconnect", "prune")
} | {"list": ("networks", "cmd_network_ls"), "remove": ("networks", "cmd_network_rm")}

GROUPS = {"container": CONTAINER, "image": IMAGE, "system": SYSTEM, "registry": REGISTRY, "volume": VOLUME,
          "network": NETWORK}

USAGE = """Usage:  dockyard [-H unix://SOCKET] COMMAND

Commands: """ + " ".join(sorted(SHORT)) + """
Management commands: container image network system registry volume
"""


def _split_globals(args: list[str]) -> tuple[str | None, list[str]]:
    host = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-H", "--host") and i + 1 < len(args):
            host = args[i + 1]
            i += 2
        elif a.startswith("--host="):
            host = a.split("=", 1)[1]
            i += 1
        elif a.startswith("-H") and len(a) > 2:
            host = a[2:]
            i += 1
        elif a in ("-D", "--debug"):
            i += 1
        else:
            break
    return host, args[i:]


def resolve(args: list[str]) -> tuple[Callable[..., int], list[str], str]:
    from dockyard.cli.args import UsageError

    if not args:
        raise UsageError("no command given")
    name, rest = args[0], args[1:]
    if name in GROUPS:
        table = GROUPS[name]
        if not rest or rest[0] not in table:
            raise UsageError(f"unknown {name} command: {rest[0] if rest else '(none)'}; "
                             f"one of: {', '.join(sorted(table))}")
        module, func = table[rest[0]]
        name, rest = f"{name} {rest[0]}", rest[1:]
    elif name in SHORT:
        module, func = SHORT[name]
    else:
        raise UsageError(f"unknown command: dockyard {name}")
    mod = importlib.import_module(f"dockyard.cli.commands.{module}")
    return getattr(mod, func), rest, name


def main(argv: list[str] | None = None) -> int:
    from dockyard.cli.args import UsageError
    from dockyard.cli.client import CliError, make_client

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-v", "--version"):
        from dockyard import __version__

        print(f"dockyard version {__version__}")
        return 0
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 1
    try:
        host, rest = _split_globals(args)
        func, cmd_args, name = resolve(rest)
        if "--help" in cmd_args[:1] and not getattr(func, "own_help", False):
            print(f"Usage:  dockyard {name} [OPTIONS] ...")
            return 0
        return func(make_client(host), cmd_args)
    except UsageError as e:
        print(f"dockyard: {e}\nSee 'dockyard --help'.", file=sys.stderr)
        return 125
    except CliError as e:
        print(e, file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
