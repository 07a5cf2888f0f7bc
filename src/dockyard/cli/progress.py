"""A one-line progress bar on stderr when stderr is a terminal; silent otherwise."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.active = sys.stderr.isatty()

    def add(self, n: int) -> None:
        self.done += n
        if not self.active:
            return
        from dockyard.cli.format import human_size

        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "=" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {human_size(self.done)}/{human_size(self.total)}"
        else:
            text = f"{self.label} {human_size(self.done)}"
        sys.stderr.write("\r" + text[:200] + "\x1b[K")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.active:
            sys.stderr.write("\n")
            sys.stderr.flush()
