"""The front file: what dockyard-runtime's native front (native/runtime_front.c) works from.

The native front answers `state`, `start`, `kill` and the `delete` of a stopped container
without starting Python; it reads `<root>/<id>/front`, which `StateStore.save` writes beside
state.json from the same state. Its lines:

    dockyard-front 1
    pid <the init's pid>
    pid_start <its start time, field 22 of /proc/<pid>/stat>
    hooks[ poststart][ poststop]          the hooks the front must leave to Python
    freezer none | v1 <dir> | v2 <dir>    where `paused` is read (freezer.self_freezing, cgroup.freeze)
    cgroup <dir>                          one per cgroup directory, in the order delete removes them
    state
    head <n>                              then n bytes and a newline
    tail <n>                              idem
    end

`state` prints head + the pid and status lines + tail: `render_state` below, which the Python
`state` uses too, so both print the same bytes. A state the front could misread (no init yet,
a cgroup driver it does not know, a newline in a path) gets no front file, and the front then
hands the command to Python.
"""

from __future__ import annotations

from dockyard import OCI_VERSION
from dockyard.utils import fastjson as json

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

    from dockyard.runtime.state import ContainerState

NAME = "front"
VERSION_LINE = "dockyard-front 1"


def _line(key: str, value: Any) -> str:
    return f"  {json.dumps(key)}: {json.dumps(value)}"


def _head(state: ContainerState) -> str:
    return "{\n" + _line("ociVersion", OCI_VERSION) + ",\n" + _line("id", state.id) + ",\n"


def _tail(state: ContainerState) -> str:
    rest = {
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
        "annotations": state.config.get("annotations") or {},
    }
    return ",\n".join(_line(k, v) for k, v in rest.items()) + "\n}"


def render_state(state: ContainerState, status: str) -> str:
    """`state`'s output (without the final newline): the OCI state, one key a line, as runc prints it."""
    pid = state.pid if status != "stopped" else 0
    return _head(state) + _line("pid", pid) + ",\n" + _line("status", status) + ",\n" + _tail(state)


def _cgroup_lines(cgroup: dict[str, Any]) -> list[str] | None:
    """The freezer and cgroup lines for a saved cgroup (CgroupManager.to_dict), or None."""
    version = cgroup.get("version")
    if version == 1:
        dirs = [h["dir"] for h in cgroup.get("hierarchies") or []]
        freezer = next((h["dir"] for h in cgroup["hierarchies"] if "freezer" in h["controllers"]), None)
        lines = [f"freezer v1 {freezer}" if freezer else "freezer none"]
    elif version == 2:
        dirs = [cgroup["dir"]]
        lines = [f"freezer v2 {cgroup['dir']}"]
    else:
        return None
    if not all(isinstance(d, str) and d.startswith("/") for d in dirs):
        return None
    return lines + [f"cgroup {d}" for d in dirs]


def text(state: ContainerState) -> str | None:
    """The front file for `state`, or None if the native front must leave it to Python."""
    if state.pid <= 0 or not state.pid_start:
        return None
    cgroups = _cgroup_lines(state.cgroup) if state.cgroup else ["freezer none"]
    if cgroups is None:
        return None
    hooks = state.config.get("hooks") or {}
    head, tail = _head(state), _tail(state)
    lines = [VERSION_LINE, f"pid {state.pid}", f"pid_start {state.pid_start}",
             " ".join(["hooks"] + [kind for kind in ("poststart", "poststop") if hooks.get(kind)]), *cgroups]
    if any("\n" in line for line in lines):
        return None
    return "\n".join(lines) + f"\nstate\nhead {len(head.encode())}\n{head}\ntail {len(tail.encode())}\n{tail}\nend\n"
