"""Device rules: the v1 emulator's transitions and the v2 eBPF program, run in a tiny interpreter."""

from __future__ import annotations

import copy
import pickle
import struct

import pytest

from dockyard.cgroups import ebpf
from dockyard.cgroups.devices import ALL_ACCESS, MKNOD, READ, WILDCARD, WRITE, DeviceRule, Emulator, parse_rules
from dockyard.errors import InvalidSpec, SystemFailure


def rules(*specs: dict[str, object]) -> tuple[DeviceRule, ...]:
    return parse_rules(list(specs))


DENY_ALL = {"allow": False, "access": "rwm"}
ALLOW_ALL = {"allow": True, "access": "rwm"}
NULL_RW = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
NULL_M = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "m"}
ANY_CHAR_MKNOD = {"allow": True, "type": "c", "access": "m"}
PTS = {"allow": True, "type": "c", "major": 136, "access": "rwm"}


def test_rule_list_starts_from_deny_all() -> None:
    emu = Emulator.from_rules(rules(NULL_RW))
    assert not emu.default_allow and emu.rules == {("c", 1, 3): READ | WRITE}


def test_allow_rules_merge_and_deny_rules_subtract() -> None:
    emu = Emulator.from_rules(rules(DENY_ALL, NULL_RW, NULL_M, {**NULL_RW, "allow": False, "access": "w"}))
    assert emu.rules == {("c", 1, 3): READ | MKNOD}


def test_type_a_resets() -> None:
    emu = Emulator.from_rules(rules(NULL_RW, ALLOW_ALL))
    assert emu.default_allow and emu.rules == {}


def test_punching_a_hole_in_a_wildcard_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="punch a hole"):
        Emulator.from_rules(rules(DENY_ALL, ANY_CHAR_MKNOD, {**NULL_M, "allow": False}))


def test_devices_list_parsing() -> None:
    assert Emulator.from_list("a *:* rwm\n").default_allow
    emu = Emulator.from_list("c 1:3 rwm\nc *:* m\nb 8:* r\n")
    assert not emu.default_allow
    assert emu.rules == {("c", 1, 3): ALL_ACCESS, ("c", WILDCARD, WILDCARD): MKNOD, ("b", 8, WILDCARD): READ}
    with pytest.raises(SystemFailure, match="malformed"):
        Emulator.from_list("c 1:x rwm\n")


def _strings(out: list[DeviceRule]) -> list[tuple[str, bool]]:
    return [(r.cgroup_string(), r.allow) for r in out]


def test_transition_from_a_new_cgroup_denies_all_then_allows() -> None:
    current = Emulator.from_list("a *:* rwm\n")
    target = Emulator.from_rules(rules(DENY_ALL, PTS, NULL_RW))
    assert _strings(current.transition(target)) == [
        ("a *:* rwm", False),
        ("c 1:3 rw", True),
        ("c 136:* rwm", True),
    ]


def test_transition_between_allow_lists_is_minimal() -> None:
    """No deny-all while the container runs: only what changes is written."""
    current = Emulator.from_list("c 1:3 rw\nc 136:* rwm\n")
    target = Emulator.from_rules(rules(DENY_ALL, {**NULL_RW, "access": "rwm"}, {**PTS, "access": "rw"}))
    assert _strings(current.transition(target)) == [("c 136:* m", False), ("c 1:3 m", True)]
    assert current.transition(current) == []


def test_transition_to_allow_all() -> None:
    current = Emulator.from_list("c 1:3 rw\n")
    assert _strings(current.transition(Emulator.from_rules(rules(ALLOW_ALL)))) == [("a *:* rwm", True)]


# --- the eBPF program ---

_MASK64 = 2**64 - 1


def run_program(program: bytes, dev_type: int, major: int, minor: int, access: int) -> int:
    """Interpret the instructions the assembler emits, over a bpf_cgroup_dev_ctx."""
    ctx = struct.pack("<III", dev_type | (access << 16), major, minor)
    regs = [0] * 11
    insns = [struct.unpack("<BBhi", program[i : i + 8]) for i in range(0, len(program), 8)]
    pc = 0
    for _ in range(10000):
        code, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == 0x61:
            assert src == 1, "loads come from the context in r1"
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xB4:
            regs[dst] = imm & 0xFFFFFFFF
        elif code == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0x55:
            if regs[dst] != imm & _MASK64:
                pc += off
        elif code == 0x5D:
            if regs[dst] != regs[src]:
                pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program did not exit")


def v1_decision(emu: Emulator, kind: str, major: int, minor: int, bit: int) -> bool:
    """What the v1 devices cgroup decides for a single access bit."""
    matching = [
        bits for (t, ma, mi), bits in emu.rules.items()
        if t == kind and ma in (WILDCARD, major) and mi in (WILDCARD, minor)
    ]
    excepted = any(bits & bit for bits in matching)
    return emu.default_allow != excepted


RULE_SETS = [
    (DENY_ALL,),
    (ALLOW_ALL,),
    (DENY_ALL, NULL_RW, PTS, ANY_CHAR_MKNOD),
    (DENY_ALL, {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}, NULL_M),
    (ALLOW_ALL, {"allow": False, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
     {"allow": False, "type": "b", "access": "w"}),
]


@pytest.mark.parametrize("spec", RULE_SETS)
def test_program_decides_like_the_v1_controller(spec: tuple[dict[str, object], ...]) -> None:
    emu = Emulator.from_rules(rules(*spec))
    program = ebpf.assemble(emu)
    assert len(program) % ebpf.INSN_SIZE == 0
    bpf_type = {"b": ebpf.BPF_DEVCG_DEV_BLOCK, "c": ebpf.BPF_DEVCG_DEV_CHAR}
    bpf_bit = {READ: ebpf.BPF_DEVCG_ACC_READ, WRITE: ebpf.BPF_DEVCG_ACC_WRITE, MKNOD: ebpf.BPF_DEVCG_ACC_MKNOD}
    for kind in ("b", "c"):
        for major, minor in ((1, 3), (1, 5), (8, 0), (8, 1), (10, 200), (136, 0), (136, 7)):
            for bit in (READ, WRITE, MKNOD):
                got = run_program(program, bpf_type[kind], major, minor, bpf_bit[bit])
                assert got == int(v1_decision(emu, kind, major, minor, bit)), (spec, kind, major, minor, bit)


def test_program_requires_every_requested_bit_in_one_rule() -> None:
    program = ebpf.assemble(Emulator.from_rules(rules(DENY_ALL, NULL_RW)))
    rw = ebpf.BPF_DEVCG_ACC_READ | ebpf.BPF_DEVCG_ACC_WRITE
    assert run_program(program, ebpf.BPF_DEVCG_DEV_CHAR, 1, 3, rw) == 1
    assert run_program(program, ebpf.BPF_DEVCG_DEV_CHAR, 1, 3, rw | ebpf.BPF_DEVCG_ACC_MKNOD) == 0


def test_instruction_encoding() -> None:
    assert ebpf.insn(0x61, dst=2, src=1, off=4) == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])
    assert ebpf.insn(0x55, dst=4, off=-1, imm=-1) == bytes([0x55, 0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])


def test_rules_and_emulators_compare_and_print_like_the_dataclasses_they_were() -> None:
    rule = DeviceRule("c", 1, 3, READ | WRITE, True)
    assert rules(NULL_RW) == (rule,) and len({rule, DeviceRule("c", 1, 3, READ | WRITE, True)}) == 1
    assert rule != DeviceRule("c", 1, 3, READ | WRITE, False)
    assert repr(rule) == "DeviceRule(type='c', major=1, minor=3, access=3, allow=True)"
    with pytest.raises(AttributeError):  # FrozenInstanceError was an AttributeError too
        rule.allow = False  # type: ignore[misc]
    assert copy.copy(rule) == rule and pickle.loads(pickle.dumps(rule)) == rule
    emu = Emulator.from_rules(rules(NULL_RW))
    assert emu == Emulator(False, {("c", 1, 3): READ | WRITE}) and emu != Emulator()
    assert repr(Emulator()) == "Emulator(default_allow=False, rules={})"
    assert Emulator().rules is not Emulator().rules
    with pytest.raises(TypeError):
        hash(emu)
