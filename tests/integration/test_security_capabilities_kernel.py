"""Capabilities applied for real, each in a forked child, in the order the container init uses."""

import errno
import json
import os

import pytest

from dockyard.linux import libc
from dockyard.security import capabilities as caps
from dockyard.security.capabilities import CAP_NAMES, CapabilitySets

pytestmark = pytest.mark.root

NOBODY = 65534


def in_child(body):
    """Run body() in a forked child; returns what it returned, or {"error": ..., "errno": ...}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                message = {"result": body()}
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                message = {"error": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)}
            os.write(w, json.dumps(message).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child ended with status {status:#x}"
    return json.loads(b"".join(chunks))


def result_of(body):
    message = in_child(body)
    assert "error" not in message, message
    return message["result"]


def mask(*names):
    return caps.mask_of({CAP_NAMES[n] for n in names})


def have(*names):
    """Skip when the test process itself lacks a capability the test hands out."""
    bounding = caps.current()["CapEff"]
    missing = [n for n in names if not bounding & mask(n)]
    if missing:
        pytest.skip(f"the test process lacks {missing}")


def become(uid, keep_caps):
    """The init's user switch: keepcaps around setgroups/setresgid/setresuid."""
    if keep_caps:
        libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if keep_caps:
        libc.prctl(libc.PR_SET_KEEPCAPS, 0)


def test_drop_bounding_then_apply_as_root():
    have("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETPCAP")
    sets = CapabilitySets.from_spec({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    })

    def body():
        caps.drop_bounding(sets.bounding)
        caps.apply(sets)
        return caps.current()

    after = result_of(body)
    assert after["CapBnd"] == mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert after["CapEff"] == mask("CAP_CHOWN", "CAP_NET_BIND_SERVICE")
    assert after["CapPrm"] == mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert after["CapInh"] == mask("CAP_NET_BIND_SERVICE")
    assert after["CapAmb"] == mask("CAP_NET_BIND_SERVICE")
    assert caps.current()["CapBnd"] != after["CapBnd"]  # the parent keeps its own


def test_empty_sets_leave_root_powerless(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(0)

    def body():
        caps.drop_bounding(set())
        caps.apply(CapabilitySets.from_spec(None))
        try:
            os.chown(str(path), NOBODY, NOBODY)
            chown = 0
        except OSError as e:
            chown = e.errno
        return [caps.current(), chown]

    after, chown = result_of(body)
    assert after == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    assert chown == errno.EPERM
    assert os.stat(path).st_uid == 0


def test_keepcaps_across_setresuid_then_apply_raises_effective(tmp_path):
    have("CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
    sets = CapabilitySets.from_spec({
        "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
    })
    path = tmp_path / "owned-by-root"
    path.write_text("x")

    def body():
        fd = os.open(str(path), os.O_RDONLY)  # before the switch: nobody cannot reach tmp_path
        caps.drop_bounding(sets.bounding)
        become(NOBODY, keep_caps=True)
        between = caps.current()
        caps.apply(sets)
        os.fchown(fd, NOBODY, NOBODY)  # needs CAP_CHOWN in the effective set
        os.close(fd)
        return [os.getresuid(), between, caps.current()]

    uids, between, after = result_of(body)
    assert uids == [NOBODY] * 3
    # the uid change cleared effective; keepcaps kept permitted (the bounding drop does not shrink it)
    assert between["CapEff"] == 0
    assert between["CapPrm"] == caps.current()["CapPrm"]
    assert after["CapPrm"] == mask("CAP_CHOWN", "CAP_NET_BIND_SERVICE")
    assert after["CapEff"] == mask("CAP_CHOWN", "CAP_NET_BIND_SERVICE")
    assert after["CapBnd"] == mask("CAP_CHOWN", "CAP_NET_BIND_SERVICE")
    assert os.stat(path).st_uid == NOBODY


def test_without_keepcaps_apply_fails_with_context():
    have("CAP_CHOWN", "CAP_SETUID", "CAP_SETGID")
    sets = CapabilitySets.from_spec({"effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"], "bounding": ["CAP_CHOWN"]})

    def body():
        become(NOBODY, keep_caps=False)
        caps.apply(sets)

    failed = in_child(body)
    assert failed["errno"] == errno.EPERM
    assert "SystemFailure" in failed["error"] and "capset(effective 0x1, permitted 0x1" in failed["error"]
    assert "the process has effective 0x0, permitted 0x0" in failed["error"]


def test_ambient_capabilities_survive_execve_as_nobody():
    """The whole init sequence, then execve: a non-root program keeps only the ambient set."""
    have("CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
    sets = CapabilitySets.from_spec({
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    })
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            caps.drop_bounding(sets.bounding)
            become(NOBODY, keep_caps=True)
            caps.apply(sets)
            os.execv("/bin/cat", ["cat", "/proc/self/status"])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as f:
        status_text = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    masks = {k: int(v, 16) for k, _, v in (line.partition(":\t") for line in status_text.splitlines()) if k.startswith("Cap")}
    assert masks["CapEff"] == mask("CAP_NET_BIND_SERVICE")
    assert masks["CapPrm"] == mask("CAP_NET_BIND_SERVICE")
    assert masks["CapAmb"] == mask("CAP_NET_BIND_SERVICE")
    assert masks["CapBnd"] == mask("CAP_NET_BIND_SERVICE", "CAP_KILL")


def test_drop_bounding_is_a_no_op_without_setpcap_when_nothing_is_left_to_drop():
    have("CAP_SETPCAP")

    def body():
        caps.drop_bounding({CAP_NAMES["CAP_KILL"]})
        caps.apply(CapabilitySets.from_spec({"bounding": ["CAP_KILL"]}))  # no CAP_SETPCAP any more
        caps.drop_bounding({CAP_NAMES["CAP_KILL"]})
        try:
            caps.drop_bounding(set())
        except Exception as e:  # noqa: BLE001
            return [caps.current()["CapBnd"], getattr(e, "errno", None), str(e)]
        return [caps.current()["CapBnd"], None, ""]

    bounding, err, message = result_of(body)
    assert bounding == mask("CAP_KILL")
    assert err == errno.EPERM
    assert "dropping CAP_KILL from the bounding set" in message
