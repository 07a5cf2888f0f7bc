"""The front file the native front reads (dockyard.runtime.front), and `state`'s rendering."""

from __future__ import annotations

import json

from dockyard.runtime import front
from dockyard.runtime.state import ContainerState

V1 = {"version": 1, "path": "/dockyard/c1", "hierarchies": [
    {"controllers": ["cpu"], "mountpoint": "/sys/fs/cgroup/cpu", "root": "/", "dir": "/sys/fs/cgroup/cpu/dockyard/c1"},
    {"controllers": ["freezer"], "mountpoint": "/sys/fs/cgroup/freezer", "root": "/",
     "dir": "/sys/fs/cgroup/freezer/dockyard/c1"},
]}


def _state(**changes) -> ContainerState:
    values = dict(id="c1", bundle="/b", rootfs="/b/rootfs", pid=123, pid_start=456, created="2026-01-01T00:00:00Z",
                  config={"annotations": {"k": "v\nw"}}, cgroup=V1, owner="0")
    values.update(changes)
    return ContainerState(**values)


def _parse(text: str) -> tuple[list[str], str, str]:
    lines, rest = text.split("\nstate\n", 1)
    length, rest = rest.split("\n", 1)
    assert length.startswith("head ")
    head, rest = rest[:int(length[5:])], rest[int(length[5:]) + 1:]
    length, rest = rest.split("\n", 1)
    tail, rest = rest[:int(length[5:])], rest[int(length[5:]) + 1:]
    assert rest == "end\n"
    return lines.split("\n"), head, tail


def test_the_summary_names_pid_hooks_freezer_and_cgroups_in_order():
    state = _state(config={"hooks": {"poststop": [{"path": "/x"}]}, "annotations": {"a": "b"}})
    lines, head, tail = _parse(front.text(state))
    assert lines == ["dockyard-front 1", "pid 123", "pid_start 456", "hooks poststop",
                     "freezer v1 /sys/fs/cgroup/freezer/dockyard/c1",
                     "cgroup /sys/fs/cgroup/cpu/dockyard/c1", "cgroup /sys/fs/cgroup/freezer/dockyard/c1"]
    assert head + '  "pid": 123,\n  "status": "running",\n' + tail == front.render_state(state, "running")


def test_v2_and_no_cgroup():
    v2 = {"version": 2, "path": "/c1", "root": "/sys/fs/cgroup", "dir": "/sys/fs/cgroup/c1"}
    lines, _, _ = _parse(front.text(_state(cgroup=v2)))
    assert lines[3:] == ["hooks", "freezer v2 /sys/fs/cgroup/c1", "cgroup /sys/fs/cgroup/c1"]
    lines, _, _ = _parse(front.text(_state(cgroup={})))
    assert lines[3:] == ["hooks", "freezer none"]


def test_what_the_front_could_misread_gets_no_summary():
    assert front.text(_state(pid=0, pid_start=0)) is None  # create has no init yet
    assert front.text(_state(cgroup={"version": "systemd"})) is None
    bad = json.loads(json.dumps(V1))
    bad["hierarchies"][0]["dir"] = "/sys/fs/cgroup/cpu/odd\nname"
    assert front.text(_state(cgroup=bad)) is None
    bad["hierarchies"][0]["dir"] = "relative"
    assert front.text(_state(cgroup=bad)) is None


def test_state_output_is_the_oci_state_one_key_a_line():
    out = front.render_state(_state(), "stopped")
    value = json.loads(out)
    assert list(value) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations"]
    assert value["pid"] == 0 and value["status"] == "stopped" and value["annotations"] == {"k": "v\nw"}
    assert len(out.splitlines()) == len(value) + 2
    assert json.loads(front.render_state(_state(), "paused"))["pid"] == 123
