"""`dockyard`: the docker-style command line. It talks to `dockyardd` over its API."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("--version", "version"):
        from dockyard import __version__

        print(f"dockyard version {__version__}")
        return 0
    print("dockyard: not implemented yet: the daemon and its CLI come with issue 4", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
