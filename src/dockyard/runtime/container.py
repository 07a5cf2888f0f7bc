"""The container lifecycle verbs of the OCI runtime: create, start, state, kill, delete, pause...

Each verb has the same shape: load the state, derive the status from the kernel, check the
state machine allows the verb, act, save. Errors are raised, never printed here.
"""

from __future__ import annotations

import os
import select
import time

from dockyard import OCI_VERSION
from dockyard.errors import DockyardError, InvalidArgument, InvalidSpec, SystemFailure
from dockyard.runtime import state as st
from dockyard.runtime.spec import NAMESPACE_PROC_NAMES, Spec, has_new_namespace, load_bundle, validate_id
from dockyard.runtime.sync import Channel
from dockyard.utils.fileio import write_atomic

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any


SIGKILL = 9  # signal numbers as plain ints: the signal module costs milliseconds to import


class CreateOptions:
    def __init__(self, bundle: str, pid_file: str | None = None, console_socket: str | None = None,
                 no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds


def _now_rfc3339() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def _cgroup_manager(spec: Spec, container_id: str, systemd: bool) -> Any:
    from dockyard.cgroups import new_manager

    return new_manager((spec.get("linux") or {}).get("cgroupsPath"), container_id, systemd=systemd)


def cgroup_of(state: st.ContainerState) -> Any:
    from dockyard.cgroups import manager_from_dict

    return manager_from_dict(state.cgroup) if state.cgroup else None


def current_status(store: st.StateStore, state: st.ContainerState) -> str:
    status = st.status(store, state)
    if status in (st.RUNNING, st.CREATED):
        cg = cgroup_of(state)
        if cg is not None and cg.is_frozen():
            return st.PAUSED
    return status


def oci_state(store: st.StateStore, state: st.ContainerState) -> dict[str, Any]:
    status = current_status(store, state)
    return {
        "ociVersion": OCI_VERSION,
        "id": state.id,
        "pid": state.pid if status != st.STOPPED else 0,
        "status": status,
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
        "annotations": state.config.get("annotations") or {},
    }


def _write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    for kind in ("uid", "gid"):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(f"{kind}Mappings") or [])
        try:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(lines)
        except OSError as e:
            raise SystemFailure(f"writing {kind}_map for the container: {e.strerror}", e.errno or 0) from None


# Devices every container may use, whatever its spec's device rules say (as runc allows them).
DEFAULT_DEVICE_RULES = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


def cgroup_resources(spec: Spec) -> dict[str, Any]:
    """linux.resources with the default device rules and the spec's own devices allowed after them."""
    linux = spec.get("linux") or {}
    resources = dict(linux.get("resources") or {})
    if not resources and not linux.get("devices"):
        return resources
    rules = list(resources.get("devices") or [])
    rules += DEFAULT_DEVICE_RULES
    for d in linux.get("devices") or []:
        if d.get("type") in ("c", "b", "u"):
            rules.append({"allow": True, "type": "c" if d["type"] == "u" else d["type"], "major": d["major"],
                          "minor": d["minor"], "access": "rwm"})
    resources["devices"] = rules
    return resources


def create(store: st.StateStore, container_id: str, opts: CreateOptions, systemd_cgroup: bool = False) -> st.ContainerState:
    validate_id(container_id)
    spec = load_bundle(opts.bundle)
    if not (spec.get("process") or {}).get("args"):
        raise InvalidSpec("process.args must name the program to run")
    from dockyard.security.capabilities import CapabilitySets

    CapabilitySets.from_spec(spec["process"].get("capabilities"))  # unknown names fail here
    if systemd_cgroup:
        _cgroup_manager(spec, container_id, True)  # raises NotImplementedFeature with a clear message
    store.reserve(container_id)
    lock = store.lock(container_id)  # a `delete` meanwhile waits for this create to end
    cg = None
    init_pid = 0
    chan = None
    try:
        cg = _cgroup_manager(spec, container_id, False)
        # provisional (no pid: it reads as stopped): if this process is killed from here on, the
        # state says which cgroup to clean, and `delete` removes it all
        store.save(st.ContainerState(id=container_id, bundle=os.path.abspath(opts.bundle), rootfs=spec["root"]["path"],
                                     pid=0, pid_start=0, created=_now_rfc3339(), config=spec, cgroup=cg.to_dict(),
                                     owner=str(os.geteuid()), status_hint=st.CREATING))
        cg.create()
        resources = cgroup_resources(spec)
        if resources:
            cg.set(resources)
        init_pid, chan = _start_init(store, container_id, spec, opts, cg, lock)
        now = _now_rfc3339()
        pid_start = st.process_start_time(init_pid)
        if pid_start is None:
            raise SystemFailure("container init exited during create")
        state = st.ContainerState(id=container_id, bundle=os.path.abspath(opts.bundle), rootfs=spec["root"]["path"],
                                  pid=init_pid, pid_start=pid_start, created=now, config=spec,
                                  cgroup=cg.to_dict(), owner=str(os.geteuid()))
        store.save(state)
        if opts.pid_file:
            write_atomic(os.path.abspath(opts.pid_file), str(init_pid).encode(), sync=False)
        return state
    except BaseException:
        if init_pid:
            _kill_quietly(init_pid)
        if cg is not None:
            _destroy_cgroup(cg)
        store.remove(container_id)
        raise
    finally:
        os.close(lock)
        if chan is not None:
            chan.close()


def _start_init(store: st.StateStore, container_id: str, spec: Spec, opts: CreateOptions, cg: Any,
                lock: int) -> tuple[int, Channel]:
    from dockyard.runtime.init import InitContext, stage1

    linux = spec.get("linux") or {}
    seccomp = None
    if linux.get("seccomp"):
        from dockyard.security.seccomp import compile_filter

        seccomp = compile_filter(linux["seccomp"], os.path.join(store.root, st.SECCOMP_CACHE))
    fifo = store.fifo(container_id)
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)  # mkfifo is subject to the umask
    root_uid, root_gid = _host_root_ids(linux)
    os.chown(fifo, root_uid, root_gid)  # the init opens it as the container's root
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    console_sock = None
    if (spec.get("process") or {}).get("terminal"):
        if not opts.console_socket:
            raise InvalidArgument("process.terminal is true: --console-socket is required")
        from dockyard.runtime.console import connect_console_socket

        console_sock = connect_console_socket(opts.console_socket)
    ctx = InitContext(spec=spec, container_id=container_id, bundle=os.path.abspath(opts.bundle),
                      rootfs=spec["root"]["path"], fifo_fd=fifo_fd, cgroup_mounts=cg.mounts(), cgroup=cg, seccomp=seccomp,
                      console_sock=console_sock, no_pivot=opts.no_pivot, no_new_keyring=opts.no_new_keyring,
                      preserve_fds=opts.preserve_fds, runtime_fds=(lock,))
    parent, child = Channel.pair()
    stage1_pid = cg.fork()
    if stage1_pid == 0:
        parent.close()
        stage1(ctx, child)
    child.close()
    os.close(fifo_fd)
    if console_sock is not None:
        console_sock.close()
    init_pid = 0
    try:
        parent.send("go")
        # stage-1 reports the init's pid and the init reports "hooks" once its mounts are done;
        # both write to the same pipe, and a stage-1 descheduled after its fork can come second
        hooks_due = False
        while not (init_pid and hooks_due):
            msg = parent.expect_any("container init")
            if msg["type"] == "userns":
                _write_id_maps(stage1_pid, linux)
                parent.send("mapped")
            elif msg["type"] == "pid":
                init_pid = int(msg["pid"])
                _reap(stage1_pid)
                stage1_pid = 0
            elif msg["type"] == "hooks":
                hooks_due = True
            else:
                raise SystemFailure(f"container init: unexpected message {msg['type']!r}")
        hooks = spec.get("hooks") or {}
        if hooks.get("prestart") or hooks.get("createRuntime"):
            from dockyard.runtime.hooks import run_hooks

            hook_state = {"ociVersion": OCI_VERSION, "id": container_id, "status": st.CREATING, "pid": init_pid,
                          "bundle": ctx.bundle, "annotations": spec.get("annotations") or {}}
            run_hooks(hooks.get("prestart"), hook_state, "prestart")
            run_hooks(hooks.get("createRuntime"), hook_state, "createRuntime")
        parent.send("ok", pid=init_pid)
        parent.expect("ready", "container init")
    except BaseException:
        if init_pid:
            _kill_quietly(init_pid)
        if stage1_pid:
            _kill_quietly(stage1_pid)
            _reap(stage1_pid)
        parent.close()
        raise
    return init_pid, parent


def _host_root_ids(linux: dict[str, Any]) -> tuple[int, int]:
    """The host uid and gid of the container's root (itself outside a user namespace)."""
    ids = []
    for kind in ("uidMappings", "gidMappings"):
        host = 0
        for m in linux.get(kind) or []:
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                host = m["hostID"] - m["containerID"]
        ids.append(host)
    return ids[0], ids[1]


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
        return status
    except ChildProcessError:
        return 0


def _destroy_cgroup(cg: Any) -> None:
    try:
        cg.kill_all(SIGKILL)
    except DockyardError:
        pass
    cg.destroy()


def start(store: st.StateStore, container_id: str) -> None:
    lock = store.lock(container_id)
    try:
        state = store.load(container_id)
        status = current_status(store, state)
        st.require(status, (st.CREATED,), "start", container_id)
        fifo = store.fifo(container_id)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            _await_fifo(fd, state)
        finally:
            os.close(fd)
        os.unlink(fifo)  # the status now reads as running: nothing else to save
    finally:
        os.close(lock)
    hooks = (state.config.get("hooks") or {}).get("poststart")
    if hooks:
        _run_hooks_warning(hooks, oci_state(store, state), "poststart")


def _await_fifo(fd: int, state: st.ContainerState) -> None:
    """The init writes one byte once it sees a reader; fail if it dies instead."""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            if os.read(fd, 1):
                return
        if st.process_start_time(state.pid) != state.pid_start:
            raise SystemFailure(f"container {state.id}: the init process exited before it could start")


def kill(store: st.StateStore, container_id: str, sig: int, all_processes: bool = False) -> None:
    state = store.load(container_id)
    status = current_status(store, state)
    st.require(status, (st.CREATED, st.RUNNING, st.PAUSED), "kill", container_id)
    if all_processes:
        cg = cgroup_of(state)
        if cg is None:
            raise InvalidArgument("kill --all needs the container's cgroup")
        cg.kill_all(sig)
        return
    _signal_init(state, sig)


def _signal_init(state: st.ContainerState, sig: int) -> None:
    """Signal the init through a pidfd taken before its start time is checked again, so that a
    pid reused after the status check is never signalled; os.kill where there are no pidfds."""
    try:
        fd = os.pidfd_open(state.pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd_open (before Linux 5.3)
        try:
            os.kill(state.pid, sig)
        except ProcessLookupError:
            pass
        return
    try:
        if st.process_start_time(state.pid) == state.pid_start:
            import signal

            signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def delete(store: st.StateStore, container_id: str, force: bool = False) -> None:
    lock = store.lock(container_id)
    try:
        state = store.load(container_id)
        status = current_status(store, state)
        if status in (st.RUNNING, st.PAUSED) and not force:
            raise st.WrongState(f"cannot delete container {container_id!r}: it is {status} (stop it or use --force)")
        cg = cgroup_of(state)
        if status != st.STOPPED:
            if cg is not None:
                cg.kill_all(SIGKILL)
                if status == st.PAUSED:
                    cg.thaw()
            _signal_init(state, SIGKILL)
            _wait_gone(state)
        if cg is not None:
            _destroy_cgroup(cg)  # what an interrupted create or a host-pid container left is killed first
        hooks = (state.config.get("hooks") or {}).get("poststop")
        if hooks:
            _run_hooks_warning(hooks, dict(oci_state(store, state), status=st.STOPPED), "poststop")
        store.remove(container_id)
    finally:
        os.close(lock)


def _wait_gone(state: st.ContainerState, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while st.process_start_time(state.pid) == state.pid_start:
        if time.monotonic() > deadline:
            raise SystemFailure(f"container {state.id}: init {state.pid} did not exit after SIGKILL")
        time.sleep(0.01)


def pause(store: st.StateStore, container_id: str) -> None:
    state = store.load(container_id)
    st.require(current_status(store, state), (st.RUNNING, st.CREATED), "pause", container_id)
    cgroup_of(state).freeze()


def resume(store: st.StateStore, container_id: str) -> None:
    state = store.load(container_id)
    st.require(current_status(store, state), (st.PAUSED,), "resume", container_id)
    cgroup_of(state).thaw()


def pids(store: st.StateStore, container_id: str) -> list[int]:
    state = store.load(container_id)
    st.require(current_status(store, state), (st.CREATED, st.RUNNING, st.PAUSED), "list processes of", container_id)
    cg = cgroup_of(state)
    return sorted(cg.pids()) if cg is not None else [state.pid]


def namespace_paths(state: st.ContainerState) -> dict[str, str]:
    """/proc paths of the init's namespaces, for exec to join."""
    out = {}
    for ns in (state.config.get("linux") or {}).get("namespaces") or []:
        out[ns["type"]] = f"/proc/{state.pid}/ns/{NAMESPACE_PROC_NAMES[ns['type']]}"
    return out


def _run_hooks_warning(hooks: list[dict[str, Any]], state: dict[str, Any], kind: str) -> None:
    """poststart and poststop: a failing hook is a warning, and the remaining hooks still run."""
    from dockyard.runtime.hooks import run_hook

    for hook in hooks:
        try:
            run_hook(hook, state, kind)
        except DockyardError as e:
            _warn(f"{kind} hook failed: {e}")


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


__all__ = ["CreateOptions", "create", "start", "kill", "delete", "pause", "resume", "pids", "oci_state",
           "current_status", "has_new_namespace"]
