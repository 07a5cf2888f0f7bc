"""`dockyardd`: the daemon serving the Docker Engine API on a unix socket."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from dockyard.errors import DockyardError


def _write_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            old = int(f.read().strip() or 0)
        if old and old != os.getpid() and os.path.exists(f"/proc/{old}"):
            raise DockyardError(f"pid file found, ensure dockyardd is not running or delete {path} (pid {old})")
    except (FileNotFoundError, ValueError):
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def main(argv: list[str] | None = None) -> int:
    from dockyard import __version__
    from dockyard.daemon import config as config_mod

    args = config_mod.parser().parse_args(argv)
    if args.version:
        print(f"Dockyard version {__version__}")
        return 0
    try:
        cfg = config_mod.load(args)
    except DockyardError as e:
        print(f"dockyardd: {e}", file=sys.stderr)
        return 1
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(cfg.log_level, cfg.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # it logs every netlink message at debug
    import faulthandler
    import signal as _signal

    faulthandler.register(_signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to the log
    from dockyard.daemon.server import Daemon

    daemon = Daemon(cfg, reload=lambda: config_mod.load(args))
    try:
        if cfg.pidfile:
            _write_pidfile(cfg.pidfile)
        asyncio.run(daemon.run())
    except DockyardError as e:
        logging.getLogger("dockyard.daemon").error("%s", e)
        return 1
    finally:
        if cfg.pidfile:
            try:
                with open(cfg.pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(cfg.pidfile)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
