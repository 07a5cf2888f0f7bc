"""A one-line progress bar on stderr when stderr is a terminal; silent otherwise."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.active = sys.stderr.isatty()
        self._shown = False  # the bar is on the screen (clear() before writing other lines)

    def add(self, n: int) -> None:
        self.done += n
        self._draw()

    def set(self, done: int, total: int | None) -> None:
        """Show `done` of `total` bytes (several transfers summed by the caller)."""
        self.done = done
        self.total = total
        self._draw()

    def clear(self) -> None:
        """Take the bar off its line, so that a status line can be written there."""
        if self.active and self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False

    def redraw(self) -> None:
        if self.done:
            self._draw()

    def _draw(self) -> None:
        if not self.active:
            return
        from dockyard.cli.format import human_size

        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "=" * int(frac * 30)
            if 0 < len(bar) < 30:
                bar = bar[:-1] + ">"
            text = f"{self.label} [{bar:<30}] {human_size(self.done)}/{human_size(self.total)}"
        else:
            text = f"{self.label} {human_size(self.done)}"
        sys.stderr.write("\r" + text[:200] + "\x1b[K")
        sys.stderr.flush()
        self._shown = True

    def finish(self) -> None:
        if self.active and self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._shown = False
