"""The forked side of `create`: stage-1 enters the namespaces, the init builds the container.

Both run in freshly forked copies of the runtime (single-threaded, as setns into mount and
user namespaces requires). Neither returns: they exit or execve, reporting errors upstream.
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidSpec
from dockyard.linux import libc
from dockyard.runtime import process, rootfs
from dockyard.runtime.spec import NAMESPACE_FLAGS, Spec, join_order
from dockyard.runtime.sync import Channel, report_and_exit

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any, NoReturn


class InitContext:
    """Everything the init needs, prepared by the runtime before forking."""

    def __init__(self, spec: Spec, container_id: str, bundle: str, rootfs: str, fifo_fd: int,
                 cgroup_mounts: list[tuple[str, str]], cgroup: Any = None, seccomp: Any = None,
                 console_sock: Any = None, no_pivot: bool = False, no_new_keyring: bool = False,
                 preserve_fds: int = 0, runtime_fds: tuple[int, ...] = ()) -> None:
        self.spec = spec
        self.container_id = container_id
        self.bundle = bundle
        self.rootfs = rootfs
        self.fifo_fd = fifo_fd
        self.cgroup_mounts = cgroup_mounts
        self.cgroup = cgroup  # joined by stage-1 itself (CgroupManager.join_self)
        self.runtime_fds = runtime_fds  # the runtime's own (its state lock): closed first by stage-1
        self.seccomp = seccomp
        self.console_sock = console_sock
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds


def enter_namespaces(spec: Spec, chan: Channel) -> None:
    """Join namespaces given by path and unshare the new ones (stage-1 of create)."""
    linux = spec.get("linux") or {}
    entries = sorted(linux.get("namespaces") or [], key=lambda n: join_order(n["type"]))
    new_flags = 0
    user_new = False
    for ns in entries:
        kind = ns["type"]
        path = ns.get("path")
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc.setns(fd, NAMESPACE_FLAGS[kind])
            finally:
                os.close(fd)
        elif kind == "user":
            user_new = True
        else:
            new_flags |= NAMESPACE_FLAGS[kind]
    if user_new:
        libc.unshare(libc.CLONE_NEWUSER)
        chan.send("userns")
        chan.expect("mapped", "user namespace mapping")
    if user_new or any(n["type"] == "user" for n in entries):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if new_flags:
        libc.unshare(new_flags)


def stage1(ctx: InitContext, chan: Channel) -> NoReturn:
    try:
        for fd in ctx.runtime_fds:  # not even a preserved fd number may carry them into the container
            try:
                os.close(fd)
            except OSError:
                pass
        chan.expect("go", "stage-1")
        if ctx.cgroup is not None:
            ctx.cgroup.join_self()  # before unsharing: the cgroup namespace is rooted here
        enter_namespaces(ctx.spec, chan)
        pid = os.fork()
        if pid == 0:
            container_init(ctx, chan)
        chan.send("pid", pid=pid)
    except BaseException as e:  # noqa: BLE001 - every failure must reach the runtime
        report_and_exit(chan, e)
    os._exit(0)


def container_init(ctx: InitContext, chan: Channel) -> NoReturn:
    try:
        _init(ctx, chan)
    except BaseException as e:  # noqa: BLE001
        report_and_exit(chan, e)
    os._exit(0)


def _init(ctx: InitContext, chan: Channel) -> NoReturn:
    spec = ctx.spec
    linux = spec.get("linux") or {}
    proc = spec.get("process") or {}
    in_userns = any(n["type"] == "user" for n in linux.get("namespaces") or [])
    # non-dumpable: other container processes cannot open /proc/<us>/exe (the host interpreter)
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    keep = {chan.read_fd, chan.write_fd, ctx.fifo_fd}
    if ctx.console_sock is not None:
        keep.add(ctx.console_sock.fileno())
    process.close_inherited_fds(ctx.preserve_fds, keep)
    process.reset_signals()
    os.setsid()
    if not ctx.no_new_keyring:
        libc.join_session_keyring(f"_ses.{ctx.container_id}")

    fifo_fd = ctx.fifo_fd  # opened (O_PATH) by the runtime: its directory may be closed to us

    new_mount = any(n["type"] == "mount" for n in linux.get("namespaces") or [])
    if new_mount:
        rootfs.prepare_root(ctx.rootfs, linux.get("rootfsPropagation"))
        for m in spec.get("mounts") or []:
            rootfs.mount_one(m, ctx.rootfs, ctx.cgroup_mounts)
        dev_is_bind = any(m["destination"] == "/dev" and (m.get("type") == "bind" or "bind" in (m.get("options") or [])
                                                           or "rbind" in (m.get("options") or []))
                          for m in spec.get("mounts") or [])
        if not dev_is_bind:
            rootfs.create_devices(linux.get("devices") or [], ctx.rootfs, bind_from_host=in_userns)
            rootfs.create_dev_links(ctx.rootfs)
        if proc.get("terminal"):
            console_path = os.path.join(ctx.rootfs, "dev/console")
            if not os.path.lexists(console_path):
                os.close(os.open(console_path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))

    chan.send("hooks")  # prestart and createRuntime hooks run now, in the runtime's namespaces
    host_pid = chan.expect("ok", "runtime hooks")["pid"]
    hooks = spec.get("hooks") or {}
    if hooks.get("createContainer") or hooks.get("startContainer"):
        # imported now: after pivot_root the host's Python library is out of reach
        from dockyard.runtime.hooks import run_hooks
    state_for_hooks = {"ociVersion": spec.get("ociVersion"), "id": ctx.container_id, "status": "created",
                       "pid": host_pid, "bundle": ctx.bundle,
                       "annotations": spec.get("annotations") or {}}
    if hooks.get("createContainer"):
        run_hooks(hooks["createContainer"], state_for_hooks, "createContainer")

    host_proc = -1
    if new_mount:
        rootfs.pivot(ctx.rootfs, ctx.no_pivot)
        rootfs.finish_root_propagation(linux.get("rootfsPropagation"))
    else:
        # without a mount namespace of our own the rootfs may have no /proc: keep the host's
        # at hand (close-on-exec, closed as soon as the fifo is open) to reopen the fifo
        host_proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if ctx.rootfs != "/":
            os.chroot(ctx.rootfs)
        os.chdir("/")

    if proc.get("terminal"):
        _setup_console(ctx, proc)

    if spec.get("hostname"):
        libc.sethostname(spec["hostname"])
    if spec.get("domainname"):
        libc.setdomainname(spec["domainname"])
    rootfs.set_sysctls(linux.get("sysctl") or {})
    if new_mount:
        rootfs.readonly_paths(linux.get("readonlyPaths") or [])
        rootfs.mask_paths(linux.get("maskedPaths") or [])
        if (spec.get("root") or {}).get("readonly"):
            rootfs.readonly_root()

    process.set_oom_score_adj(proc.get("oomScoreAdj"))
    prep = process.Prepared(proc, in_userns)
    prep.resolve()

    chan.send("ready")
    chan.close()
    # block until `start` opens the fifo for reading
    if host_proc >= 0:
        fd = os.open(f"self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=host_proc)
        os.close(host_proc)
    else:
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)
    if hooks.get("startContainer"):
        run_hooks(hooks["startContainer"], dict(state_for_hooks, status="running"), "startContainer")
    process.finalize_and_exec(prep, ctx.seccomp, ctx.preserve_fds)


def _setup_console(ctx: InitContext, proc: dict[str, Any]) -> None:
    from dockyard.runtime import console  # already loaded by the runtime before it forked

    if ctx.console_sock is None:
        raise InvalidSpec("process.terminal is set but no --console-socket was given")
    master, slave, name = console.open_pty(proc.get("consoleSize"))
    if os.path.exists("/dev/console"):
        libc.mount(name, "/dev/console", "bind", libc.MS_BIND)
    console.send_master(ctx.console_sock, master, name)
    os.close(master)
    ctx.console_sock.close()
    console.make_controlling(slave)
