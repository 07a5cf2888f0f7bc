"""A small docker-style flag parser: combined short flags, --x=v, repeated values, `--`,
and options that end at the first positional when `stop_at_positional` is set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UsageError(Exception):
    pass


@dataclass
class Flag:
    names: tuple[str, ...]
    dest: str
    takes_value: bool = False
    multi: bool = False
    default: Any = None


@dataclass
class Parsed:
    values: dict[str, Any] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


class Spec:
    def __init__(self, *flags: Flag, stop_at_positional: bool = False) -> None:
        self.flags = list(flags)
        self.by_name = {n: f for f in flags for n in f.names}
        self.stop_at_positional = stop_at_positional

    def parse(self, argv: list[str]) -> Parsed:
        out = Parsed({f.dest: ([] if f.multi else f.default) for f in self.flags})
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg == "--":
                out.positionals += argv[i:]
                break
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                flag = self._flag(name)
                if flag.takes_value:
                    if not eq:
                        if i >= len(argv):
                            raise UsageError(f"flag needs an argument: {name}")
                        value = argv[i]
                        i += 1
                    self._set(out, flag, value)
                else:
                    self._set(out, flag, (value.lower() not in ("false", "0")) if eq else True)
            elif arg.startswith("-") and len(arg) > 1:
                j = 1
                while j < len(arg):
                    flag = self._flag("-" + arg[j])
                    if flag.takes_value:
                        value = arg[j + 1:]
                        if value.startswith("="):
                            value = value[1:]
                        if not value:
                            if i >= len(argv):
                                raise UsageError(f"flag needs an argument: '{arg[j]}' in -{arg[j]}")
                            value = argv[i]
                            i += 1
                        self._set(out, flag, value)
                        break
                    self._set(out, flag, True)
                    j += 1
            else:
                out.positionals.append(arg)
                if self.stop_at_positional:
                    out.positionals += argv[i:]
                    break
        return out

    def _flag(self, name: str) -> Flag:
        try:
            return self.by_name[name]
        except KeyError:
            raise UsageError(f"unknown flag: {name}") from None

    @staticmethod
    def _set(out: Parsed, flag: Flag, value: Any) -> None:
        if flag.multi:
            out.values[flag.dest].append(value)
        else:
            out.values[flag.dest] = value


def F(*names: str, dest: str | None = None, value: bool = False, multi: bool = False, default: Any = None) -> Flag:
    d = dest or names[-1].lstrip("-").replace("-", "_")
    if not value and default is None and not multi:
        default = False
    return Flag(tuple(names), d, value or multi, multi, default)
