"""`exec`: start another process inside a running container's namespaces and cgroups.

    runtime --fork--> joiner: setns into the init's namespaces (user first, mount last)
                        --fork--> process (inside the pid namespace): console, resolve, drop
                                  privileges, execve; its end of the channel closes on exec
"""

from __future__ import annotations

import os

from dockyard.errors import WrongState
from dockyard.linux import libc
from dockyard.runtime import process
from dockyard.runtime import state as st
from dockyard.runtime.container import cgroup_of, current_status, namespace_paths
from dockyard.runtime.spec import NAMESPACE_FLAGS, join_order
from dockyard.runtime.sync import Channel, report_and_exit
from dockyard.utils.fileio import write_atomic

SIGKILL = 9

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any, NoReturn


def merged_process(base: dict[str, Any], args: list[str], *, cwd: str | None = None, env: list[str] | None = None,
                   user: str | None = None, additional_gids: list[int] | None = None, caps: list[str] | None = None,
                   tty: bool = False, no_new_privs: bool | None = None) -> dict[str, Any]:
    """A process object for exec built from the container's own process, as runc does without --process."""
    proc = {k: v for k, v in base.items() if k not in ("args", "terminal", "consoleSize")}
    proc["args"] = args
    proc["terminal"] = tty
    if cwd:
        proc["cwd"] = cwd
    if env:
        merged = process.env_dict(base.get("env") or [])
        merged.update(process.env_dict(env))
        proc["env"] = [f"{k}={v}" for k, v in merged.items()]
    if user:
        uid, _, gid = user.partition(":")
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if additional_gids:
        proc.setdefault("user", {})["additionalGids"] = additional_gids
    if caps:
        capsets = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for kind in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            current = capsets.setdefault(kind, [])
            current.extend(c for c in caps if c not in current)
        proc["capabilities"] = capsets
    if no_new_privs is not None:
        proc["noNewPrivileges"] = no_new_privs
    return proc


def exec_process(store: st.StateStore, container_id: str, proc: dict[str, Any], *, detach: bool,
                 pid_file: str | None = None, console_socket: str | None = None, preserve_fds: int = 0,
                 ignore_paused: bool = False) -> int:
    """Start `proc` in the container; returns its exit status unless detached (then 0)."""
    state = store.load(container_id)
    status = current_status(store, state)
    if status == st.PAUSED and not ignore_paused:
        raise WrongState(f"cannot exec in container {container_id!r}: it is paused")
    st.require(status, (st.CREATED, st.RUNNING, st.PAUSED), "exec in", container_id)
    linux = state.config.get("linux") or {}
    seccomp = None
    if linux.get("seccomp"):
        from dockyard.security.seccomp import compile_filter

        seccomp = compile_filter(linux["seccomp"], os.path.join(store.root, st.SECCOMP_CACHE))
    ns_fds = _open_namespaces(state)
    own_console = None
    console_sock = None
    if proc.get("terminal"):
        import socket

        from dockyard.runtime import console

        if console_socket:
            console_sock = console.connect_console_socket(console_socket)
        elif detach:
            raise WrongState("exec --tty --detach needs --console-socket")
        else:
            own_console, console_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if not detach:
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    in_userns = any(n["type"] == "user" for n in linux.get("namespaces") or [])
    cg = cgroup_of(state)
    parent, child = Channel.pair()
    joiner = cg.fork() if cg is not None else os.fork()
    if joiner == 0:
        parent.close()
        if own_console is not None:
            own_console.close()
        _joiner(ns_fds, cg, proc, child, seccomp, console_sock, in_userns, preserve_fds)
    child.close()
    for fd in ns_fds.values():
        os.close(fd)
    if console_sock is not None:
        console_sock.close()
    pid = 0
    try:
        parent.send("go")
        pid = int(parent.expect("pid", "exec")["pid"])
        os.waitpid(joiner, 0)
        msg = parent.recv()
        if msg["type"] == "error":
            from dockyard.runtime.sync import ChildError

            raise ChildError(msg.get("message", "exec failed"))
    except BaseException:
        if pid:
            _reap_quietly(pid)
        else:
            _reap_quietly(joiner)
        raise
    finally:
        parent.close()
    if pid_file:
        write_atomic(os.path.abspath(pid_file), str(pid).encode(), sync=False)
    if detach:
        return 0
    from dockyard.runtime.foreground import wait_foreground

    master = None
    if own_console is not None:
        from dockyard.runtime import console

        master = console.recv_master(own_console)
        own_console.close()
    return wait_foreground(pid, master)


def _reap_quietly(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _open_namespaces(state: st.ContainerState) -> dict[str, int]:
    fds = {}
    try:
        for kind, path in namespace_paths(state).items():
            fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        for fd in fds.values():
            os.close(fd)
        raise WrongState(f"container {state.id}: cannot open its namespaces: {e.strerror}") from None
    # the init might have died and its pid been reused between loading the state and opening
    if st.process_start_time(state.pid) != state.pid_start:
        for fd in fds.values():
            os.close(fd)
        raise WrongState(f"container {state.id} is stopped")
    return fds


def _joiner(ns_fds: dict[str, int], cg: Any, proc: dict[str, Any], chan: Channel, seccomp: Any,
            console_sock: Any, in_userns: bool, preserve_fds: int) -> NoReturn:
    try:
        # non-dumpable before entering the container's pid namespace (CVE-2019-5736 class)
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        chan.expect("go", "exec")
        if cg is not None:
            cg.join_self()
        for kind in sorted(ns_fds, key=join_order):
            if kind == "user":
                # already in it when it is the host's own user namespace (setns would fail)
                if os.readlink(f"/proc/self/fd/{ns_fds[kind]}") == os.readlink("/proc/self/ns/user"):
                    continue
            libc.setns(ns_fds[kind], NAMESPACE_FLAGS[kind])
            os.close(ns_fds[kind])
        if in_userns:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        pid = os.fork()
        if pid == 0:
            _exec_child(proc, chan, seccomp, console_sock, in_userns, preserve_fds)
        chan.send("pid", pid=pid)
    except BaseException as e:  # noqa: BLE001
        report_and_exit(chan, e)
    os._exit(0)


def _exec_child(proc: dict[str, Any], chan: Channel, seccomp: Any, console_sock: Any,
                in_userns: bool, preserve_fds: int) -> NoReturn:
    try:
        process.reset_signals()
        keep = {chan.read_fd, chan.write_fd}
        if console_sock is not None:
            keep.add(console_sock.fileno())
        process.close_inherited_fds(preserve_fds, keep)
        os.setsid()
        if console_sock is not None:
            from dockyard.runtime import console  # loaded before the fork

            master, slave, name = console.open_pty(proc.get("consoleSize"))
            console.send_master(console_sock, master, name)
            os.close(master)
            console_sock.close()
            console.make_controlling(slave)
        process.set_oom_score_adj(proc.get("oomScoreAdj"))
        prep = process.Prepared(proc, in_userns)
        prep.resolve()
        process.finalize_and_exec(prep, seccomp, preserve_fds)
    except BaseException as e:  # noqa: BLE001
        report_and_exit(chan, e)
