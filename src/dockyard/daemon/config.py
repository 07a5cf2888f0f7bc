"""dockyardd's configuration: dockerd-style flags, overlaid on a JSON config file (daemon.json keys)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"
DEFAULT_RUNTIME = "dockyard-runtime"
DEFAULT_BRIDGE = "dyd0"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    pidfile: str | None = None
    default_runtime: str = DEFAULT_RUNTIME
    runtimes: dict[str, str] = field(default_factory=dict)
    log_level: str = "info"
    config_file: str | None = None
    init_path: str | None = field(default_factory=lambda: find_init())
    log_opts: dict[str, str] = field(default_factory=dict)  # daemon.json "log-opts" for json-file
    insecure_registries: list[str] = field(default_factory=list)  # plain HTTP allowed (loopback always is)
    registry_mirrors: list[str] = field(default_factory=list)     # where Docker Hub names are pulled from
    bridge: str = DEFAULT_BRIDGE  # the default bridge network's Linux bridge; "none": no default bridge

    @property
    def socket_paths(self) -> list[str]:
        return [unix_path(h) for h in self.hosts]

    def runtime_path(self, name: str | None) -> str:
        name = name or self.default_runtime
        if name in self.runtimes:
            return self.runtimes[name]
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")


def unix_path(host: str) -> str:
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid host {host!r}: the socket path must be absolute")
        return path
    if host.startswith("/"):
        return host
    raise InvalidArgument(f"invalid host {host!r}: only unix:// sockets are served (TCP comes with TLS in a later issue)")


def find_init() -> str | None:
    """The static init bound into `--init` containers (Docker's docker-init is tini-static)."""
    for name in ("docker-init", "tini-static"):
        path = shutil.which(name)
        if path:
            return os.path.realpath(path)
    return None


def _runtime_beside_interpreter() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("dockyard-runtime") or beside


def builtin_runtimes() -> dict[str, str]:
    out = {DEFAULT_RUNTIME: _runtime_beside_interpreter()}
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            out[name] = path
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyardd", description="Dockyard: a Docker-compatible container engine daemon")
    p.add_argument("-H", "--host", action="append", dest="hosts", help=f"the daemon socket (default {DEFAULT_HOST})")
    p.add_argument("--data-root", help=f"root of persistent state (default {DEFAULT_DATA_ROOT})")
    p.add_argument("--exec-root", help=f"root of run-time state (default {DEFAULT_EXEC_ROOT})")
    p.add_argument("-p", "--pidfile", help="write the daemon's PID here")
    p.add_argument("--default-runtime", help=f"the OCI runtime for containers (default {DEFAULT_RUNTIME})")
    p.add_argument("--add-runtime", action="append", default=[], metavar="NAME=PATH", help="register an OCI runtime")
    p.add_argument("-l", "--log-level", choices=LOG_LEVELS, help="logging level (default info)")
    p.add_argument("-D", "--debug", action="store_true", help="debug logging")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="a registry that may be reached over plain HTTP (loopback ones always may)")
    p.add_argument("--registry-mirror", action="append", default=[], metavar="URL",
                   help="a registry to pull Docker Hub images from")
    p.add_argument("-b", "--bridge", help=f"the default bridge network's Linux bridge (default {DEFAULT_BRIDGE}); "
                   "none: containers on the default network get only a loopback interface")
    p.add_argument("--config-file", help="daemon configuration file (JSON, dockerd's daemon.json keys)")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p


def _from_file(path: str) -> dict[str, object]:
    try:
        with open(path) as f:
            value = json.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path} does not exist") from None
    except ValueError as e:
        raise InvalidArgument(f"config file {path}: invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"config file {path}: not a JSON object")
    known = {"hosts", "data-root", "exec-root", "pidfile", "default-runtime", "runtimes", "log-level", "debug",
             "log-driver", "log-opts", "insecure-registries", "registry-mirrors"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidArgument(f"config file {path}: unsupported keys: {', '.join(unknown)}")
    return value


def _parse_runtime(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise InvalidArgument(f"--add-runtime {text!r}: expected NAME=PATH")
    return name, path


def load(args: argparse.Namespace) -> DaemonConfig:
    """Flags win over the config file; the file is re-read on SIGHUP through this same function."""
    cfg = DaemonConfig(config_file=args.config_file)
    file: dict[str, object] = _from_file(args.config_file) if args.config_file else {}
    runtimes = builtin_runtimes()
    for name, spec in dict(file.get("runtimes") or {}).items():  # type: ignore[call-overload]
        path = spec.get("path") if isinstance(spec, dict) else spec
        if not isinstance(path, str):
            raise InvalidArgument(f"config file: runtime {name}: path is required")
        runtimes[name] = path
    for text in args.add_runtime:
        name, path = _parse_runtime(text)
        runtimes[name] = path
    cfg.runtimes = {name: os.path.abspath(path) if os.sep in path else (shutil.which(path) or path)
                    for name, path in runtimes.items()}
    cfg.hosts = list(args.hosts or file.get("hosts") or [DEFAULT_HOST])  # type: ignore[call-overload]
    cfg.data_root = os.path.abspath(str(args.data_root or file.get("data-root") or DEFAULT_DATA_ROOT))
    cfg.exec_root = os.path.abspath(str(args.exec_root or file.get("exec-root") or DEFAULT_EXEC_ROOT))
    pidfile = args.pidfile or file.get("pidfile")
    cfg.pidfile = os.path.abspath(str(pidfile)) if pidfile else None
    cfg.default_runtime = str(args.default_runtime or file.get("default-runtime") or DEFAULT_RUNTIME)
    if cfg.default_runtime not in cfg.runtimes:
        raise InvalidArgument(f"default runtime {cfg.default_runtime!r} is not registered "
                              f"(known: {', '.join(sorted(cfg.runtimes))})")
    level = args.log_level or ("debug" if args.debug or file.get("debug") else file.get("log-level")) or "info"
    if level not in LOG_LEVELS:
        raise InvalidArgument(f"invalid log level {level!r}")
    cfg.log_level = str(level)
    driver = file.get("log-driver") or "json-file"
    if driver != "json-file":
        raise InvalidArgument(f"config file: log-driver {driver!r} is not supported (json-file)")
    log_opts = file.get("log-opts") or {}
    if not isinstance(log_opts, dict) or any(k not in ("max-size", "max-file") for k in log_opts):
        raise InvalidArgument("config file: log-opts supports max-size and max-file")
    cfg.log_opts = {str(k): str(v) for k, v in log_opts.items()}
    insecure = file.get("insecure-registries") or []
    if not isinstance(insecure, list):
        raise InvalidArgument("config file: insecure-registries must be a list")
    cfg.insecure_registries = [str(x) for x in insecure] + list(args.insecure_registry or [])
    mirrors = file.get("registry-mirrors") or []
    if not isinstance(mirrors, list):
        raise InvalidArgument("config file: registry-mirrors must be a list")
    cfg.registry_mirrors = [str(x) for x in mirrors] + list(args.registry_mirror or [])
    cfg.bridge = str(args.bridge or file.get("bridge") or DEFAULT_BRIDGE)
    if cfg.bridge != "none" and not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", cfg.bridge):
        raise InvalidArgument(f"invalid bridge name {cfg.bridge!r}")
    for host in cfg.hosts:
        unix_path(host)
    return cfg
