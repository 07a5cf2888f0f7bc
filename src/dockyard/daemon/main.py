"""`dockyardd`: the daemon serving the Docker Engine API."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("dockyardd: not implemented yet: the daemon comes with issue 4", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
