import json
import os

import pytest

from dockyard.errors import InvalidSpec, NotImplementedFeature
from dockyard.security import seccomp

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed")

DOCKER_LIKE = os.path.join(os.path.dirname(__file__), "..", "data", "seccomp-docker-like.json")


def allow_all(*rules, **extra):
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


def pfc(spec):
    with seccomp.compile_filter(spec) as filt:
        return filt.export_pfc()


def test_compile_builds_rules_without_loading():
    with seccomp.compile_filter(allow_all({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})) as filt:
        assert filt.enabled
        assert filt.rules == 1
        listing = filt.export_pfc()
        assert len(filt.export_bpf()) % 8 == 0  # struct sock_filter is 8 bytes
    assert 'syscall "mkdir"' in listing
    assert "action ERRNO(1);" in listing
    assert "action ALLOW;" in listing
    assert not filt.enabled  # released


def test_errno_defaults_to_eperm_and_honours_errno_ret():
    listing = pfc(allow_all({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}))
    assert "action ERRNO(1);" in listing
    assert "action ERRNO(38);" in listing


def test_default_errno_ret():
    listing = pfc({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    assert "# default action\n  action ERRNO(38);" in listing


def test_trace_defaults_to_eperm():
    assert "action TRACE(1);" in pfc(allow_all({"names": ["mkdir"], "action": "SCMP_ACT_TRACE"}))


@pytest.mark.parametrize("action, shown", [
    ("SCMP_ACT_KILL", "KILL"), ("SCMP_ACT_KILL_THREAD", "KILL"), ("SCMP_ACT_KILL_PROCESS", "KILL_PROCESS"),
    ("SCMP_ACT_TRAP", "TRAP"), ("SCMP_ACT_LOG", "LOG"),
])
def test_every_action(action, shown):
    assert f"action {shown};" in pfc(allow_all({"names": ["mkdir"], "action": action}))


def test_unknown_syscalls_are_skipped():
    with seccomp.compile_filter(allow_all({"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"})) as filt:
        assert filt.skipped == ["no_such_syscall"]
        assert filt.rules == 1


def test_rules_equal_to_the_default_action_are_skipped():
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["unlink"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},  # differs: kept
    ]}
    with seccomp.compile_filter(spec) as filt:
        assert filt.rules == 2
        listing = filt.export_pfc()
    assert '"mkdir"' not in listing and '"rmdir"' not in listing
    assert '"read"' in listing and '"unlink"' in listing


def test_conditions_on_different_arguments_form_one_rule():
    spec = allow_all({"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
    ]})
    with seccomp.compile_filter(spec) as filt:
        assert filt.rules == 1
        listing = filt.export_pfc()
    # nested: arg 1 tested inside the branch of arg 0 (AND)
    assert "if ($a0.lo32 == 1)" in listing and "if ($a1.lo32 == 9)" in listing


def test_conditions_on_the_same_argument_become_separate_rules():
    spec = allow_all({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
    ]})
    with seccomp.compile_filter(spec) as filt:
        assert filt.rules == 2
        listing = filt.export_pfc()
    assert "if ($a0.lo32 == 1)" in listing and "if ($a0.lo32 == 2)" in listing


def test_masked_eq_uses_value_as_mask_and_value_two_as_result():
    listing = pfc(allow_all({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0x20000, "op": "SCMP_CMP_MASKED_EQ"}]}))
    assert "if ($a0.lo32 & 0x7e020000 == 131072)" in listing


def test_64_bit_values_reach_libseccomp_whole():
    listing = pfc(allow_all({"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 1, "value": (1 << 40) | 5, "op": "SCMP_CMP_EQ"}]}))
    assert "if ($a1.hi32 == 256)" in listing and "if ($a1.lo32 == 5)" in listing


def test_architectures_are_added_and_the_native_one_is_fine_twice():
    listing = pfc(allow_all({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"]))
    for arch in ("x86_64", "x86", "x32", "aarch64"):
        assert f"# filter for arch {arch} " in listing


def test_flags_are_accepted():
    spec = allow_all({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                     flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    with seccomp.compile_filter(spec) as filt:
        assert filt.rules == 1


def test_empty_spec_means_no_filter():
    for spec in ({}, {"defaultAction": ""}, {"defaultAction": "", "syscalls": []}):
        assert not seccomp.requested(spec)
        filt = seccomp.compile_filter(spec)
        assert not filt.enabled
        filt.load()  # nothing to do
    assert not seccomp.requested(None)


def test_docker_like_profile_compiles():
    with open(DOCKER_LIKE) as f:
        spec = json.load(f)
    with seccomp.compile_filter(spec) as filt:
        assert filt.skipped == ["not_a_real_syscall_dockyard"]
        assert filt.rules > 300
        assert filt.default_action == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize("spec, message", [
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown seccomp action 'SCMP_ACT_MAYBE'"),
    ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}, "unknown seccomp action None"),
    (allow_all({"names": ["read"], "action": "ALLOW"}), r"syscalls\[0\] \(read\): unknown seccomp action 'ALLOW'"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "EQ"}]}),
     "unknown operator 'EQ'"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
     r"index must be an integer from 0 to 5"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"value": 1, "op": "SCMP_CMP_EQ"}]}),
     r"index must be an integer"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}),
     r"value must be an integer from 0 to 18446744073709551615"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": True, "op": "SCMP_CMP_EQ"}]}),
     r"value must be an integer"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]}),
     r"value must be an integer"),
    (allow_all({"names": [], "action": "SCMP_ACT_ERRNO"}), "names must be a non-empty list"),
    (allow_all({"names": [""], "action": "SCMP_ACT_ERRNO"}), "is not a syscall name"),
    (allow_all({"action": "SCMP_ACT_ERRNO"}), "names must be a non-empty list"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}), "errnoRet must be an integer"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}), "errnoRet must be an integer"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 1}), "errnoRet 1 given for SCMP_ACT_KILL"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "errnoRet 1 given for SCMP_ACT_ALLOW"),
    (allow_all(architectures=["SCMP_ARCH_PDP11"]), "unknown architecture 'SCMP_ARCH_PDP11'"),
    (allow_all(architectures=["x86_64"]), "unknown architecture 'x86_64'"),
    (allow_all(flags=["SECCOMP_FILTER_FLAG_FAST"]), "unknown flag 'SECCOMP_FILTER_FLAG_FAST'"),
    (allow_all(flags="SECCOMP_FILTER_FLAG_LOG"), "flags must be a list"),
    (allow_all({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": {"index": 0}}), "args must be a list"),
    (allow_all("read"), r"syscalls\[0\] must be an object"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": ["read"]}}, "syscalls must be a list"),
])
def test_invalid_specs(spec, message):
    with pytest.raises(InvalidSpec, match=message):
        seccomp.compile_filter(spec)


def test_invalid_spec_is_rejected_as_a_whole():
    with pytest.raises(InvalidSpec):
        seccomp.compile_filter("SCMP_ACT_ALLOW")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [
    allow_all({"names": ["read"], "action": "SCMP_ACT_NOTIFY"}),
    {"defaultAction": "SCMP_ACT_NOTIFY"},
    allow_all(listenerPath="/run/agent.sock"),
    allow_all(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]),
])
def test_seccomp_agents_are_not_implemented(spec):
    with pytest.raises(NotImplementedFeature):
        seccomp.compile_filter(spec)


def test_supported_has_the_features_json_shape():
    info = seccomp.supported()
    assert info["enabled"] is True
    assert set(info) == {"enabled", "actions", "operators", "archs", "knownFlags", "supportedFlags"}
    assert "SCMP_ACT_ERRNO" in info["actions"] and "SCMP_ACT_NOTIFY" not in info["actions"]
    assert info["operators"] == sorted(seccomp.OPERATORS)
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"} <= set(info["archs"])
    assert set(info["supportedFlags"]) <= set(info["knownFlags"])
    json.dumps(info)


def test_version_is_a_triple():
    major, minor, micro = seccomp.version()
    assert (major, minor) >= (2, 4)
