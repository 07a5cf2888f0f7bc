"""`python -m dockyard.shim --root DIR [--detach]`: run the supervisor.

With --detach the command returns once the supervisor listens on DIR/shim.sock (exit 0), or
fails (exit 1) if it could not start; the supervisor itself runs on in the background, in its
own session, so that it outlives whoever started it.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard-shim", description="Dockyard's container supervisor")
    parser.add_argument("--root", required=True, help="state directory (socket, pid file, per-container records)")
    parser.add_argument("--detach", action="store_true", help="run in the background; return once it listens")
    args = parser.parse_args(argv)
    from dockyard.shim import supervisor

    if not args.detach:
        return supervisor.run(args.root)
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        os.close(w)
        ready = os.read(r, 16)
        return 0 if ready == b"ready" else 1
    os.close(r)
    try:
        if os.getsid(0) != os.getpid():
            os.setsid()
        os.chdir("/")
        code = supervisor.run(args.root, ready_fd=w)
    except BaseException as e:  # noqa: BLE001 - the child must never return into the parent's code
        os.write(2, f"dockyard-shim: {e}\n".encode(errors="replace"))
        code = 1
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
