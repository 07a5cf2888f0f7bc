"""Device access rules: OCI ``linux.resources.devices`` and an emulator of the v1 devices cgroup.

The emulator (after runc's ``devices_emulator.go``) replays a rule list the way the kernel's
v1 devices controller would, which gives both versions one meaning for a rule list:

- v1: the difference between the cgroup's current ``devices.list`` and the target becomes the
  fewest writes to ``devices.allow``/``devices.deny`` (no window where a running container
  loses access to a device it keeps).
- v2: the target's default and exceptions become the eBPF program (see ``ebpf.py``).

A rule list starts from "deny everything" (an allow-list), as in runc; a rule of type ``a``
resets the emulator to allow-all or deny-all. Removing part of a wildcard exception is
refused, because v1 would silently ignore it.
"""

from __future__ import annotations

from dockyard.cgroups.record import Record
from dockyard.errors import InvalidSpec, SystemFailure

# On the runtime's hot path (every create sets device rules): no typing or dataclasses.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WILDCARD = -1
READ, WRITE, MKNOD = 1, 2, 4
_ACCESS_BITS = {"r": READ, "w": WRITE, "m": MKNOD}
ALL_ACCESS = READ | WRITE | MKNOD


def access_bits(access: str, where: str) -> int:
    bits = 0
    for ch in access:
        if ch not in _ACCESS_BITS:
            raise InvalidSpec(f"{where}: access {access!r} may only contain r, w and m")
        bits |= _ACCESS_BITS[ch]
    if not bits:
        raise InvalidSpec(f"{where}: access must not be empty")
    return bits


def access_string(bits: int) -> str:
    return "".join(ch for ch, bit in _ACCESS_BITS.items() if bits & bit)


class DeviceRule(Record):
    """One rule: type 'a' (all), 'b' or 'c'; major/minor WILDCARD (-1) for any."""

    __slots__ = ("type", "major", "minor", "access", "allow")
    type: str
    major: int
    minor: int
    access: int
    allow: bool

    def __init__(self, type: str, major: int, minor: int, access: int, allow: bool) -> None:  # noqa: A002
        self._init(type, major, minor, access, allow)

    def cgroup_string(self) -> str:
        """The line v1 ``devices.allow``/``devices.deny`` take: ``c 1:3 rwm``, ``a *:* rwm``."""
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {access_string(self.access)}"


def parse_rules(items: list[Any]) -> tuple[DeviceRule, ...]:
    """OCI device rules in order; ``type`` defaults to 'a', missing major/minor to any."""
    rules = []
    for i, item in enumerate(items):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(item, dict):
            raise InvalidSpec(f"{where} must be an object")
        allow = item.get("allow")
        if not isinstance(allow, bool):
            raise InvalidSpec(f"{where}.allow must be true or false")
        kind = item.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise InvalidSpec(f"{where}.type = {kind!r}: a cgroup device rule is of type a, b or c")
        numbers = []
        for key in ("major", "minor"):
            value = item.get(key)
            if value is None:
                value = WILDCARD
            if isinstance(value, bool) or not isinstance(value, int) or not WILDCARD <= value <= 2**32 - 1:
                raise InvalidSpec(f"{where}.{key} = {value!r} is not a device number")
            numbers.append(value)
        access = item.get("access")
        if not isinstance(access, str):
            raise InvalidSpec(f"{where}.access must be a string of r, w and m")
        rules.append(DeviceRule(kind, numbers[0], numbers[1], access_bits(access, where), allow))
    return tuple(rules)


Key = tuple[str, int, int]  # (type, major, minor)


def _ordered(rules: dict[Key, int]) -> list[tuple[Key, int]]:
    return sorted(rules.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))


class Emulator:
    """The state of a v1 devices cgroup: a default and the exceptions to it (mutable, unhashable)."""

    __slots__ = ("default_allow", "rules")
    __hash__ = None  # type: ignore[assignment]
    default_allow: bool
    rules: dict[Key, int]

    def __init__(self, default_allow: bool = False, rules: dict[Key, int] | None = None) -> None:
        self.default_allow = default_allow
        self.rules = {} if rules is None else rules

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Emulator) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.default_allow, self.rules) == (other.default_allow, other.rules)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(default_allow={self.default_allow!r}, rules={self.rules!r})"

    @classmethod
    def from_rules(cls, rules: tuple[DeviceRule, ...] | list[DeviceRule]) -> Emulator:
        emu = cls()
        for rule in rules:
            emu.apply(rule)
        return emu

    @classmethod
    def from_list(cls, text: str, where: str = "devices.list") -> Emulator:
        """Read ``devices.list``: an allow-list, or ``a *:* rwm`` for a black-list cgroup.

        The kernel does not list a black-list's deny exceptions, so a black-list reads as allow-all.
        """
        emu = cls()
        for line in text.splitlines():
            if line.strip():
                emu.apply(_parse_list_line(line, where))
        return emu

    def apply(self, rule: DeviceRule) -> None:
        if rule.type == "a":
            self.default_allow = rule.allow
            self.rules = {}
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow == self.default_allow:
            self._remove(key, rule.access)
        else:
            self.rules[key] = self.rules.get(key, 0) | rule.access

    def _remove(self, key: Key, access: int) -> None:
        kind, major, minor = key
        for partial in ((kind, WILDCARD, minor), (kind, major, WILDCARD), (kind, WILDCARD, WILDCARD)):
            if partial != key and self.rules.get(partial, 0) & access:
                raise InvalidSpec(
                    f"device rule {kind} {major}:{minor} {access_string(access)} would punch a hole in the wildcard "
                    f"rule {partial[0]} {partial[1]}:{partial[2]}, which cgroup v1 cannot express"
                )
        left = self.rules.get(key, 0) & ~access
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)

    def transition(self, target: Emulator) -> list[DeviceRule]:
        """The fewest v1 writes that turn this state into `target`.

        A black-list source is always reset: its deny exceptions are invisible in devices.list.
        """
        out: list[DeviceRule] = []
        old = self.rules
        if self.default_allow or self.default_allow != target.default_allow:
            out.append(DeviceRule("a", WILDCARD, WILDCARD, ALL_ACCESS, target.default_allow))
            old = {}
        for key, bits in _ordered(old):
            dropped = bits & ~target.rules.get(key, 0)
            if dropped:
                out.append(DeviceRule(key[0], key[1], key[2], dropped, target.default_allow))
        for key, bits in _ordered(target.rules):
            gained = bits & ~old.get(key, 0)
            if gained:
                out.append(DeviceRule(key[0], key[1], key[2], gained, not target.default_allow))
        return out

    def exceptions(self) -> list[DeviceRule]:
        """The exceptions to the default, in a stable order (for the v2 program)."""
        return [DeviceRule(k[0], k[1], k[2], bits, not self.default_allow) for k, bits in _ordered(self.rules)]


def _list_number(text: str, line: str, where: str) -> int:
    if text == "*":
        return WILDCARD
    if text.isdigit():
        return int(text)
    raise SystemFailure(f"malformed device number in {line!r} in {where}")


def _parse_list_line(line: str, where: str) -> DeviceRule:
    """A kernel line like ``c 1:3 rwm``; anything else means we misread the kernel."""
    fields = line.replace(":", " ").split()
    if len(fields) != 4 or fields[0] not in ("a", "b", "c") or not fields[3] or fields[3].strip("rwm"):
        raise SystemFailure(f"malformed line {line!r} in {where}")
    major, minor = _list_number(fields[1], line, where), _list_number(fields[2], line, where)
    return DeviceRule(fields[0], major, minor, access_bits(fields[3], where), True)
