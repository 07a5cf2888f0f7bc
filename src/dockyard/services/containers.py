"""The container service: records, snapshots, OCI bundles, the supervisor, restart policies.

On disk, per container (written atomically):

    <data-root>/containers/<id>/
        config.json          the engine's record (Container below)
        bundle/config.json   the OCI spec (from services.specgen), bundle/rootfs the snapshot's mount
        hostname, hosts, resolv.conf
        <id>-json.log        the json-file log (written by the supervisor)

The supervisor (dockyard.shim) owns the processes: the daemon may die and come back; `restore`
rebuilds the state from the records and the supervisor's list.

Lifecycle: `create` prepares the snapshot, mounts it, writes the bundle and asks the supervisor
to create the container (so that a client can attach before `start`, as `docker run` does);
`start` starts it (re-creating it in the supervisor when it ran before); when it exits the
service records the status, deletes it from the supervisor and applies the restart policy or
AutoRemove.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
import signal as signals
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Callable
from typing import Any

from dockyard.errors import AlreadyExists, DockyardError, InvalidArgument, NotFound, NotImplementedFeature, WrongState
from dockyard.image.model import ImageUser
from dockyard.services import links
from dockyard.services.events import EventService
from dockyard.services.images import ImageService
from dockyard.utils.fileio import write_atomic, write_json_atomic

log = logging.getLogger("dockyard.services.containers")

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"
CGROUP_PARENT = "dockyard"
DEFAULT_STOP_TIMEOUT = 10
BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty", "proud")
_NOUNS = ("anchor", "barge", "buoy", "crane", "dock", "ferry", "harbor", "keel", "mast", "pier", "quay", "tug")


def now_rfc3339() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000)) + f".{t % 1_000_000_000:09d}Z"


def parse_rfc3339(text: str) -> float:
    if not text or text.startswith("0001-"):
        return 0.0
    head, _, rest = text.replace("Z", "").partition(".")
    frac = float("0." + "".join(c for c in rest if c.isdigit())) if rest else 0.0
    return datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp() + frac


@dataclass
class State:
    status: str = "created"        # created, running, paused, restarting, exited, removing, dead
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    restart_count: int = 0
    manually_stopped: bool = False
    health: dict[str, Any] | None = None   # Docker's State.Health, when the container has a health check

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


@dataclass
class Container:
    id: str
    name: str
    created: str
    image: str                     # as the client named it
    image_id: str
    config: dict[str, Any]         # Docker's container Config, merged with the image's defaults
    host_config: dict[str, Any]
    runtime: str
    path: str = ""
    args: list[str] = field(default_factory=list)
    state: State = field(default_factory=State)
    driver: str = "overlayfs"
    # network name -> Docker's EndpointSettings (NetworkID, EndpointID, IPAddress, Aliases, ...)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # mount points (services.volumes.mount_point): binds, volumes, tmpfs; inspect's Mounts
    mounts: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Container:
        state = State(**value.pop("state", {}))
        return cls(**value, state=state)

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def auto_remove(self) -> bool:
        return bool(self.host_config.get("AutoRemove"))

    @property
    def restart_policy(self) -> tuple[str, int]:
        policy = self.host_config.get("RestartPolicy") or {}
        return str(policy.get("Name") or "no"), int(policy.get("MaximumRetryCount") or 0)


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}{secrets.randbelow(1000)}"


def _signal_number(value: str | int | None, default: int = signals.SIGTERM) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    text = str(value).upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signals.Signals[text])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None


class ContainerService:
    def __init__(self, config: Any, images: ImageService, events: EventService) -> None:
        self.daemon_config = config
        self.images = images
        self.events = events
        self.root = os.path.join(config.data_root, "containers")
        self.shim_root = os.path.join(config.exec_root, "shim")
        self.runtime_root = os.path.join(config.exec_root, "runtime")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.containers: dict[str, Container] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._exit_waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._remove_waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._shim: Any = None
        self.on_started: list[Callable[[Container], None]] = []  # e.g. the health monitor
        self.networks: Any = None  # the NetworkService, when the daemon has networking
        self.volumes: Any = None  # the VolumeService, when the daemon has volumes
        images.set_users(self.image_users)

    # --- the supervisor -----------------------------------------------------------------

    async def shim(self) -> Any:
        if self._shim is None:
            from dockyard.shim.client import ShimClient

            os.makedirs(self.shim_root, mode=0o700, exist_ok=True)
            self._shim = await ShimClient.connect(self.shim_root, start=True)
        return self._shim

    async def close(self) -> None:
        for task in list(self._monitors.values()):
            task.cancel()
        for task in list(self._monitors.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self._shim is not None and hasattr(self._shim, "close"):
            result = self._shim.close()
            if asyncio.iscoroutine(result):
                await result

    # --- records ------------------------------------------------------------------------

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def bundle(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "bundle")

    def log_path(self, cid: str) -> str:
        return os.path.join(self.dir(cid), f"{cid}-json.log")

    def save(self, c: Container) -> None:
        write_json_atomic(os.path.join(self.dir(c.id), "config.json"), dataclasses.asdict(c), 0o600)

    def lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without /), or unique ID prefix, like Docker."""
        ref = ref.strip()
        if ref in self.containers:
            return self.containers[ref]
        name = ref.lstrip("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        if ref:
            matches = [c for c in self.containers.values() if c.id.startswith(ref)]
            if len(matches) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
            if matches:
                return matches[0]
        raise NotFound(f"No such container: {ref}")

    def list(self) -> list[Container]:
        return sorted(self.containers.values(), key=lambda c: c.created, reverse=True)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.containers.values():
            out[c.state.status] = out.get(c.state.status, 0) + 1
        return out

    def image_users(self, image_id: str) -> list[ImageUser]:
        return [ImageUser(c.id, c.state.running) for c in self.containers.values() if c.image_id == image_id]

    def _event(self, action: str, c: Container, extra: dict[str, str] | None = None) -> None:
        attrs = {"name": c.name, "image": c.image, **(c.config.get("Labels") or {}), **(extra or {})}
        self.events.publish("container", action, c.id, attrs)

    # --- create -------------------------------------------------------------------------

    async def create(self, name: str | None, config: dict[str, Any], host_config: dict[str, Any],
                     networking: dict[str, Any] | None = None) -> Container:
        asyncio.get_running_loop().run_in_executor(None, prewarm_cgroup_migration)
        image_name = config.get("Image") or ""
        if not image_name:
            raise InvalidArgument("no image given (Config.Image is empty)")
        if name:
            if not NAME_RE.match(name):
                raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            for c in self.containers.values():
                if c.name == name:
                    raise AlreadyExists(f'Conflict. The container name "/{name}" is already in use by container '
                                        f'"{c.id}". You have to remove (or rename) that container to be able to reuse that name.')
        else:
            name = random_name()
            while any(c.name == name for c in self.containers.values()):
                name = random_name()
        # docker-py's create_container(runtime=...) sends it beside the Config, not in the HostConfig
        runtime = host_config.get("Runtime") or config.pop("Runtime", None) or self.daemon_config.default_runtime
        self.daemon_config.runtime_path(runtime)
        _, max_retries = _restart_policy_check(host_config)
        host_config = dict(host_config)
        host_config["Runtime"] = runtime
        _log_config(host_config.get("LogConfig"), getattr(self.daemon_config, "log_opts", {}))  # refuse bad ones now
        # inspect shows what the client asked for, as dockerd does; the defaults apply at run time
        host_config["LogConfig"] = {"Type": (host_config.get("LogConfig") or {}).get("Type") or "json-file",
                                    "Config": dict((host_config.get("LogConfig") or {}).get("Config") or {})}
        image = await self.images.resolve(image_name)
        details = await self.images.details(str(image.id))
        image_config = details.container_config
        merged = _merge_image_config(config, image_config)
        entry = list(merged.get("Entrypoint") or [])
        cmd = list(merged.get("Cmd") or [])
        argv = entry + cmd
        if not argv:
            raise InvalidArgument("no command specified")
        cid = secrets.token_hex(32)
        if host_config.get("Links"):
            networking = self._plan_links(name, host_config, networking)
        c = Container(cid, name, now_rfc3339(), image_name, str(details.image.id), merged, dict(host_config), runtime,
                      argv[0], argv[1:])
        if self.networks is not None:
            self.networks.plan(c, networking)
        else:
            _refuse_networking(host_config, networking)
        os.makedirs(self.dir(cid), mode=0o700)
        try:
            await self._resolve_mounts(c, image_config)
            self._write_files(c)
            await asyncio.to_thread(self.images.store.prepare_container, cid, str(details.image.id))
            self.containers[cid] = c
            self.save(c)
            if not self._resolved_at_start(c):
                await self._create_task(c, details.container_config)
        except BaseException:
            self.containers.pop(cid, None)
            await self._cleanup_files(cid)
            await self._release_volumes(c, remove_anonymous=True)
            raise
        self._event("create", c)
        return c

    def _write_files(self, c: Container) -> None:
        hostname = c.config.get("Hostname") or c.id[:12]
        c.config["Hostname"] = hostname
        write_atomic(os.path.join(self.dir(c.id), "hostname"), f"{hostname}\n".encode(), 0o644)
        write_atomic(os.path.join(self.dir(c.id), "hosts"), self.hosts_text(c).encode(), 0o644)
        dns = self.host_config_list(c, "Dns")
        search = self.host_config_list(c, "DnsSearch")
        options = self.host_config_list(c, "DnsOptions")
        lines = [f"nameserver {d}" for d in dns]
        if search:
            lines.append("search " + " ".join(search))
        if options:
            lines.append("options " + " ".join(options))
        if not lines:
            lines.append("# no nameserver: the container has only a loopback interface")
        write_atomic(os.path.join(self.dir(c.id), "resolv.conf"), ("\n".join(lines) + "\n").encode(), 0o644)

    async def sizes(self, c: Container) -> tuple[int, int]:
        """(SizeRw, SizeRootFs): the bytes of the container's writable layer, and of every file it
        sees (its image's layers plus that layer), as `docker ps -s` / `inspect --size` show."""
        try:
            rw = await asyncio.to_thread(self.images.store.snapshots.usage, c.id)
        except (NotFound, OSError):
            rw = 0
        try:
            image = sum((await self.images.details(c.image_id)).layer_sizes)
        except NotFound:
            image = 0
        return rw, rw + image

    def _shm_dir(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "shm")

    async def _shareable_shm(self, c: Container) -> str:
        """`--ipc shareable`: the container's /dev/shm is a tmpfs the daemon mounts in its own
        namespace (under the container's directory), so that `--ipc container:<it>` containers
        can bind the same one; it goes when the container stops (`_unmount_shm`), as dockerd's
        does: joiners still running keep theirs, a restart starts with an empty one."""
        path = self._shm_dir(c.id)
        if not await asyncio.to_thread(os.path.ismount, path):
            from dockyard.linux import libc
            from dockyard.services.specgen import DEFAULT_SHM_SIZE

            size = int(c.host_config.get("ShmSize") or 0) or DEFAULT_SHM_SIZE
            os.makedirs(path, mode=0o755, exist_ok=True)
            libc.mount("shm", path, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
                       f"mode=1777,size={size}")
        return path

    async def _unmount_shm(self, cid: str) -> None:
        shm = self._shm_dir(cid)
        if await asyncio.to_thread(os.path.ismount, shm):
            from dockyard.linux import libc

            await asyncio.to_thread(libc.umount, shm, libc.MNT_DETACH)

    def _resolved_at_start(self, c: Container) -> bool:
        """Whether the container's task waits for `docker start` (or an attach before it), as every
        task does in dockerd: one that links on the default bridge or joins another container's
        PID or IPC namespace takes what those are then. Create needs the targets to exist only."""
        for key in ("PidMode", "IpcMode"):
            mode = str(c.host_config.get(key) or "")
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])  # NotFound: "No such container", as dockerd says at create
                return True
        return bool(c.host_config.get("Links")) and \
            str(c.host_config.get("NetworkMode") or "default") in ("default", "bridge")

    async def _joined(self, c: Container) -> dict[str, str]:
        """`--pid container:<id>` and `--ipc container:<id>`: the running container's namespaces
        (its IPC only when it made it shareable, as dockerd requires, and then its /dev/shm too);
        `--ipc shareable`: the container's own host-side /dev/shm."""
        out = {}
        if str(c.host_config.get("IpcMode") or "") == "shareable":
            out["shm"] = await self._shareable_shm(c)
        for key, kind, label in (("PidMode", "pid", "PID"), ("IpcMode", "ipc", "IPC")):
            mode = str(c.host_config.get(key) or "")
            if not mode.startswith("container:"):
                continue
            other = self.get(mode.split(":", 1)[1])
            if other.id == c.id:
                raise InvalidArgument(f"cannot join own {label} namespace")
            if not other.state.running or not other.state.pid:
                not_running = f"container {other.id} is not running"  # dockerd's words, for either
                raise WrongState(not_running if kind == "pid" else f"can't join IPC of container {other.id}: {not_running}")
            if kind == "ipc" and str(other.host_config.get("IpcMode") or "") not in ("shareable", "host"):
                raise InvalidArgument(f"non-shareable IPC (hint: use IpcMode:shareable for the donor container "
                                      f"{other.name})")
            out[kind] = f"/proc/{other.state.pid}/ns/{kind}"
            if kind == "ipc" and str(other.host_config.get("IpcMode") or "") == "shareable":
                out["shm"] = await self._shareable_shm(other)
        return out

    def hosts_text(self, c: Container, address: str | None = None, more: list[str] | None = None) -> str:
        """The container's /etc/hosts: loopback names, its own (address or 127.0.1.1), --add-host
        entries, then `more` (the network service's lines for links)."""
        hostname = c.config.get("Hostname") or c.id[:12]
        domain = c.config.get("Domainname") or ""
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
                 "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
        fqdn = f"{hostname}.{domain}" if domain else hostname
        hosts.append(f"{address or '127.0.1.1'}\t{fqdn} {hostname}" if fqdn != hostname
                     else f"{address or '127.0.1.1'}\t{hostname}")
        for extra in self.host_config_list(c, "ExtraHosts"):
            host, _, ip = extra.partition(":")
            hosts.append(f"{ip}\t{host}")
        return "\n".join(hosts + list(more or [])) + "\n"

    # --- legacy links -------------------------------------------------------------------

    def _plan_links(self, name: str, host_config: dict[str, Any], networking: dict[str, Any] | None) -> dict[str, Any] | None:
        """HostConfig.Links at create: each target must exist; stored as dockerd shows them. On a
        user-defined network they become the endpoint's Links (DNS aliases, as dockerd does)."""
        mode = str(host_config.get("NetworkMode") or "default")
        if mode in ("host", "none") or mode.startswith("container:"):
            raise InvalidArgument("conflicting options: host type networking can't be used with links. "
                                  "This would result in undefined behavior")
        pairs = []
        for link in host_config.get("Links") or []:
            target, alias = links.parse(link)
            try:
                pairs.append((self.get(target).name, alias))
            except NotFound as e:
                raise InvalidArgument(f"could not get container for {target}: {e}") from None
        host_config["Links"] = [links.stored(target, name, alias) for target, alias in pairs]
        if mode in ("default", "bridge"):
            return networking
        endpoints = dict((networking or {}).get("EndpointsConfig") or {})
        endpoint = dict(endpoints.get(mode) or {})
        endpoint["Links"] = list(endpoint.get("Links") or []) + [f"{t}:{a}" for t, a in pairs]
        endpoints[mode] = endpoint
        return {**(networking or {}), "EndpointsConfig": endpoints}

    def legacy_links(self, c: Container) -> list[tuple[Container, str, str]]:
        """(linked container, alias, its default-bridge address) for a container on the default
        bridge; the linked containers must be running there (dockerd's rule)."""
        if str(c.host_config.get("NetworkMode") or "default") not in ("default", "bridge"):
            return []
        found = []
        for link in self.host_config_list(c, "Links"):
            target, alias = links.parse(link)
            try:
                other = self.get(target)
            except NotFound:
                raise WrongState(f"could not get container for {target} (linked as {alias})") from None
            if not other.state.running:
                raise WrongState(f"Cannot link to a non running container: /{other.name} AS /{c.name}/{alias}")
            address = str((other.networks.get("bridge") or {}).get("IPAddress") or "")
            if not address:
                raise WrongState(f"Cannot link to /{other.name}, as it does not belong to the default network")
            found.append((other, alias, address))
        return found

    def link_env(self, c: Container) -> list[str]:
        out: list[str] = []
        for other, alias, address in self.legacy_links(c):
            out += links.env(c.name, alias, address, other.config.get("ExposedPorts"), other.config.get("Env"))
        return out

    def _drop_links_to(self, name: str) -> None:
        """A removed container's legacy links go with it, as dockerd drops them (a later
        container of the same name is not linked by accident)."""
        for o in self.containers.values():
            kept = [x for x in self.host_config_list(o, "Links") if links.parse(x)[0] != name]
            if len(kept) != len(self.host_config_list(o, "Links")):
                o.host_config["Links"] = kept
                self.save(o)

    def link_names(self, c: Container) -> list[str]:
        """The names other containers' default-bridge links give `c` ("/linking/alias"), as
        dockerd lists them (on user-defined networks links are only DNS aliases)."""
        names = []
        for o in self.containers.values():
            if str(o.host_config.get("NetworkMode") or "default") not in ("default", "bridge"):
                continue
            for link in self.host_config_list(o, "Links"):
                target, alias = links.parse(link)
                if target == c.name:
                    names.append(f"/{o.name}/{alias}")
        return names

    def remove_link(self, path: str) -> None:
        """DELETE /containers/linking/alias?link=1: the link goes, both containers stay."""
        linking, _, alias = path.strip("/").rpartition("/")
        c = self.get(linking) if linking else None
        kept = [] if c is None else [x for x in self.host_config_list(c, "Links") if links.parse(x)[1] != alias]
        if c is None or len(kept) == len(self.host_config_list(c, "Links")):
            raise NotFound(f"Could not find link {path!r}: no container {linking!r} with a link called {alias!r}")
        c.host_config["Links"] = kept
        self.save(c)

    @staticmethod
    def host_config_list(c: Container, key: str) -> list[str]:
        return [str(v) for v in (c.host_config.get(key) or [])]

    def files(self, cid: str) -> dict[str, str]:
        return self._files(cid)

    def _files(self, cid: str) -> dict[str, str]:
        return {name: os.path.join(self.dir(cid), name) for name in ("hostname", "hosts", "resolv.conf")}

    async def mount_rootfs(self, c: Container) -> str:
        from dockyard.snapshot.mount import mount_all

        rootfs = os.path.join(self.bundle(c.id), "rootfs")
        os.makedirs(rootfs, mode=0o755, exist_ok=True)
        if not os.path.ismount(rootfs):
            mounts = await asyncio.to_thread(self.images.store.snapshots.mounts, c.id)
            await asyncio.to_thread(mount_all, mounts, rootfs)
        return rootfs

    async def unmount_rootfs(self, cid: str) -> None:
        from dockyard.snapshot.mount import unmount

        rootfs = os.path.join(self.bundle(cid), "rootfs")
        if os.path.ismount(rootfs):
            await asyncio.to_thread(unmount, rootfs)

    async def _write_bundle(self, c: Container, image_config: dict[str, Any]) -> None:
        from dockyard.services import specgen

        rootfs = await self.mount_rootfs(c)
        netns = self.networks.netns_path(c) if self.networks is not None else None
        volumes = await self._mount_volumes(c, rootfs) if self.volumes is not None else None
        config = c.config
        link_env = self.link_env(c)
        if link_env:  # before the container's own variables, which win (dockerd's order)
            config = dict(c.config, Env=link_env + list(c.config.get("Env") or []))
        spec = specgen.build_spec(c.id, config, c.host_config, image_config, rootfs, self._files(c.id),
                                  CGROUP_PARENT, netns, self.daemon_config.init_path,
                                  **({} if volumes is None else {"volumes": volumes}), joined=await self._joined(c))
        await asyncio.to_thread(ensure_working_dir, rootfs, str(spec["process"].get("cwd") or "/"))
        write_json_atomic(os.path.join(self.bundle(c.id), "config.json"), spec, 0o600)

    async def _create_task(self, c: Container, image_config: dict[str, Any] | None = None) -> None:
        """The container in the supervisor, ready to start (its process waits on the runtime's fifo)."""
        if image_config is None:
            image_config = (await self.images.details(c.image_id)).container_config
        await self._write_bundle(c, image_config)
        shim = await self.shim()
        log_config = _log_config(c.host_config.get("LogConfig"), getattr(self.daemon_config, "log_opts", {}))
        log_opts = log_config.get("Config") or {}
        log_path = "" if log_config.get("Type") == "none" else self.log_path(c.id)
        pid = await shim.create(c.id, bundle=self.bundle(c.id), runtime=self.daemon_config.runtime_path(c.runtime),
                                runtime_root=self.runtime_root, tty=c.tty, stdin=bool(c.config.get("OpenStdin")),
                                log_path=log_path, log_max_size=_size(log_opts.get("max-size", "0")),
                                log_max_files=int(log_opts.get("max-file", "1") or 1))
        c.state.pid = pid
        if self.networks is not None and c.networks:
            try:
                await self.networks.setup(c, pid)
            except BaseException:
                await shim.delete(c.id, force=True)
                raise
        self._watch(c)

    # --- volumes ------------------------------------------------------------------------

    async def _resolve_mounts(self, c: Container, image_config: dict[str, Any]) -> None:
        """c.mounts: the request's mount points, its volumes found (or created) and claimed."""
        from dockyard.services.volumes import plan_mounts

        config = dict(c.config)
        config["Volumes"] = {**(image_config.get("Volumes") or {}), **(c.config.get("Volumes") or {})}
        plan = plan_mounts(config, c.host_config, self._volumes_from(c))
        if any(m["type"] == "volume" for m in plan) and self.volumes is None:
            raise NotImplementedFeature("volumes: this daemon has no volume service")
        c.mounts = plan
        for m in plan:
            if m["type"] != "volume":
                continue
            if not m.get("inherited"):
                opts, labels = m.pop("driver_opts", {}), m.pop("labels", {})
                volume = await asyncio.to_thread(self.volumes.create, m["name"], m["driver"], opts, labels,
                                                 anonymous=not m["name"])
                m["name"], m["driver"] = volume.name, volume.driver
                m["source"] = self.volumes.mountpoint(volume.name)
            await asyncio.to_thread(self.volumes.claim, m["name"], c.id)  # released if the create fails

    def _volumes_from(self, c: Container) -> list[dict[str, Any]]:
        """HostConfig.VolumesFrom (`container[:ro|rw]`): the other containers' binds and volumes."""
        out: list[dict[str, Any]] = []
        for spec in c.host_config.get("VolumesFrom") or []:
            ref, _, mode = str(spec).partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"HostConfig.VolumesFrom: invalid mode {mode!r} in {spec!r}")
            other = self.get(ref)
            for m in other.mounts:
                if m["type"] not in ("bind", "volume"):
                    continue
                entry = {**m, "inherited": True}
                if mode:
                    entry["rw"] = mode == "rw"
                out.append(entry)
        return out

    async def _mount_volumes(self, c: Container, rootfs: str) -> list[dict[str, Any]]:
        """The OCI mounts of the container's volumes (and inherited binds), each volume mounted
        for it and, the first time, filled with the image's content (copy-up) when empty."""
        out: list[dict[str, Any]] = []
        for m in c.mounts:
            if m["type"] == "volume":
                source = await asyncio.to_thread(self.volumes.mount, m["name"], c.id)
                if not m.get("nocopy") and not m.get("copied"):
                    await asyncio.to_thread(self.volumes.populate, m["name"], rootfs, m["destination"])
                    m["copied"] = True  # dockerd copies once, for the container's first run
            elif m["type"] == "bind" and m.get("inherited"):
                source = m["source"]
            else:
                continue
            options = ["rbind", m.get("propagation") or "rprivate"] + ([] if m["rw"] else ["ro"])
            out.append({"destination": m["destination"], "type": "bind", "source": source, "options": options})
        return out

    async def _release_volumes(self, c: Container, remove_anonymous: bool) -> None:
        """The container is gone: its volumes are unmounted and released; with `remove_anonymous`
        (rm -v, --rm) its anonymous volumes that nobody else uses are removed."""
        if self.volumes is None:
            return
        released = await asyncio.to_thread(self.volumes.release, c.id)
        if not remove_anonymous:
            return
        for m in c.mounts:
            name = m.get("name")
            if m["type"] != "volume" or name not in released:
                continue
            volume = self.volumes.volumes.get(name)
            if volume is None or not volume.anonymous or self.volumes.users(name):
                continue
            try:
                await asyncio.to_thread(self.volumes.remove, name)
            except Exception as e:  # noqa: BLE001 - logged: the container is gone either way
                log.warning("container %s: removing anonymous volume %s: %s", c.id[:12], name, e)

    def _claim_volumes_again(self) -> None:
        """After a daemon restart: every container claims its volumes again."""
        if self.volumes is None:
            return
        for c in self.containers.values():
            for m in c.mounts:
                if m["type"] == "volume":
                    try:
                        self.volumes.claim(m["name"], c.id)
                    except NotFound:
                        log.error("container %s: its volume %s is gone", c.id[:12], m["name"])

    # --- start / stop -------------------------------------------------------------------

    async def start(self, ref: str) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.state.status == "paused":
                raise WrongState(f"cannot start a paused container {c.id[:12]}, try unpause instead")
            if c.state.status in ("running", "restarting"):
                return
            if c.state.status == "removing":
                raise WrongState(f"container {c.id[:12]} is marked for removal and cannot be started")
            await self._start(c)

    async def _start(self, c: Container) -> None:
        shim = await self.shim()
        try:
            state = await _shim_state(shim, c.id)
            if state is None or state.status == "stopped":
                if state is not None:
                    await shim.delete(c.id)
                await self._create_task(c)
            c.state.manually_stopped = False
            await shim.start(c.id)
        except Exception as e:
            c.state.error = str(e)
            if c.state.status != "created":
                c.state.status = "exited"
            c.state.exit_code = 128
            self.save(c)
            if c.auto_remove:  # as dockerd does (`docker run --rm` waits for the removal)
                loop = asyncio.get_running_loop()
                loop.create_task(self._remove_quietly(c.id), name=f"remove-{c.id[:12]}")
            raise
        st = await _shim_state(shim, c.id)
        c.state.status = "running"
        c.state.pid = st.pid if st is not None else c.state.pid
        c.state.started_at = now_rfc3339()
        c.state.error = ""
        c.state.exit_code = 0
        c.state.oom_killed = False
        c.state.health = None
        self.save(c)
        self._event("start", c)
        self._started(c)

    async def _remove_quietly(self, cid: str) -> None:
        try:
            await self.remove(cid, force=True, volumes=True)
        except Exception as e:  # noqa: BLE001 - logged
            log.error("container %s: auto-remove after a failed start: %s", cid[:12], e)

    def _started(self, c: Container) -> None:
        for hook in self.on_started:
            try:
                hook(c)
            except Exception:  # noqa: BLE001 - a hook must not fail a start
                log.exception("container %s: start hook failed", c.id[:12])

    def _watch(self, c: Container) -> None:
        old = self._monitors.get(c.id)
        if old is not None and not old.done():
            return
        self._monitors[c.id] = asyncio.get_running_loop().create_task(self._monitor(c.id), name=f"monitor-{c.id[:12]}")

    async def _monitor(self, cid: str) -> None:
        """Wait for the container's exit; record it; restart or auto-remove."""
        try:
            shim = await self.shim()
            status = await shim.wait(cid)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the supervisor lost it: record that
            log.error("container %s: waiting for its exit failed: %s", cid[:12], e)
            status = None
        self._monitors.pop(cid, None)
        c = self.containers.get(cid)
        if c is None:
            return
        async with self.lock(cid):
            await self._exited(c, status)
        await self._after_exit(c)

    async def _exited(self, c: Container, status: Any) -> None:
        started = c.state.status in ("running", "paused")
        c.state.exit_code = int(status.code) if status is not None else 255
        c.state.finished_at = status.exited_at if status is not None and status.exited_at else now_rfc3339()
        c.state.oom_killed = bool(getattr(status, "oom_killed", False))
        if status is None:
            c.state.error = "the supervisor lost the container"
        c.state.status = "exited"
        c.state.pid = 0
        try:
            shim = await self.shim()
            await shim.delete(c.id)
        except Exception as e:  # noqa: BLE001 - it may be gone already
            log.debug("container %s: delete in the supervisor: %s", c.id[:12], e)
        try:
            await self.unmount_rootfs(c.id)
            await self._unmount_shm(c.id)
        except Exception as e:  # noqa: BLE001 - logged; remove retries
            log.warning("container %s: unmount: %s", c.id[:12], e)
        if self.volumes is not None:
            try:
                await asyncio.to_thread(self.volumes.unmount_container, c.id)
            except Exception as e:  # noqa: BLE001 - logged; remove retries
                log.warning("container %s: unmounting its volumes: %s", c.id[:12], e)
        if self.networks is not None and c.networks:
            try:
                await self.networks.teardown(c)
            except Exception as e:  # noqa: BLE001 - logged: the container is gone either way
                log.warning("container %s: network teardown: %s", c.id[:12], e)
        self.save(c)
        if started or status is not None:
            self._event("die", c, {"exitCode": str(c.state.exit_code)})
        for fut in self._exit_waiters.pop(c.id, []):
            if not fut.done():
                fut.set_result(c.state.exit_code)

    async def _after_exit(self, c: Container) -> None:
        if await self._should_restart(c):
            return
        if c.auto_remove and c.id in self.containers:
            await self._remove_quietly(c.id)  # --rm takes the anonymous volumes too

    async def _should_restart(self, c: Container) -> bool:
        name, max_retries = c.restart_policy
        if c.state.manually_stopped or name in ("", "no") or c.id not in self.containers:
            return False
        if name == "on-failure" and (c.state.exit_code == 0 or (max_retries and c.state.restart_count >= max_retries)):
            return False
        ran = parse_rfc3339(c.state.finished_at) - parse_rfc3339(c.state.started_at)
        delay = 0.0 if ran > 10 else min(BACKOFF_MAX, BACKOFF_START * (2 ** min(c.state.restart_count, 20)))
        c.state.status = "restarting"
        c.state.restart_count += 1
        self.save(c)
        asyncio.get_running_loop().create_task(self._restart_later(c.id, delay))
        return True

    async def _restart_later(self, cid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        c = self.containers.get(cid)
        if c is None or c.state.status != "restarting" or c.state.manually_stopped:
            return
        async with self.lock(cid):
            try:
                await self._start(c)
                self._event("restart", c)
            except Exception as e:  # noqa: BLE001 - recorded on the container
                log.error("container %s: restart failed: %s", cid[:12], e)
                c.state.status = "exited"
                c.state.error = str(e)
                self.save(c)

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> bool:
        """StopSignal, then SIGKILL after `timeout` seconds. False when it was not running."""
        c = self.get(ref)
        c.state.manually_stopped = True
        if c.state.status == "restarting":
            c.state.status = "exited"
            self.save(c)
            return True
        if not c.state.running:
            return False
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
        sig = _signal_number(signal or c.config.get("StopSignal"))
        exited = self._exit_future(c.id)
        shim = await self.shim()
        if c.state.status == "paused":
            await shim.kill(c.id, sig, all=False)
            await shim.resume(c.id)
        else:
            await shim.kill(c.id, sig, all=False)
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout if timeout >= 0 else None)
        except asyncio.TimeoutError:
            await shim.kill(c.id, signals.SIGKILL, all=True)
            await asyncio.wait_for(asyncio.shield(exited), 30)
        self._event("stop", c)
        return True

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = self.get(ref)
        await self.stop(c.id, timeout, signal)
        await self.start(c.id)
        self._event("restart", c)

    async def kill(self, ref: str, signal: str | None = None) -> None:
        c = self.get(ref)
        if c.state.status not in ("running", "paused"):
            raise WrongState(f"Cannot kill container: {ref}: Container {c.id} is not running")
        sig = _signal_number(signal, signals.SIGKILL)
        exited = None
        if sig == signals.SIGKILL:
            c.state.manually_stopped = True
            exited = self._exit_future(c.id)
        shim = await self.shim()
        await shim.kill(c.id, sig, all=sig == signals.SIGKILL)
        self._event("kill", c, {"signal": str(sig)})
        if exited is not None:  # like dockerd: a SIGKILL returns once the container is gone
            try:
                await asyncio.wait_for(asyncio.shield(exited), 10)
            except asyncio.TimeoutError:
                log.warning("container %s: still running 10 s after SIGKILL", c.id[:12])

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state.status != "running":
            raise WrongState(f"Container {c.id} is not running" if c.state.status != "paused" else f"Container {c.id} is already paused")
        await (await self.shim()).pause(c.id)
        c.state.status = "paused"
        self.save(c)
        self._event("pause", c)

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state.status != "paused":
            raise WrongState(f"Container {c.id} is not paused")
        await (await self.shim()).resume(c.id)
        c.state.status = "running"
        self.save(c)
        self._event("unpause", c)

    # --- wait / remove / rename ---------------------------------------------------------

    def _exit_future(self, cid: str) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._exit_waiters.setdefault(cid, []).append(fut)
        return fut

    def wait_future(self, ref: str, condition: str = "not-running") -> asyncio.Future[int]:
        """A future of the exit code: at once when not running (not-running), at the next exit, or on removal."""
        c = self.get(ref)
        if condition == "removed":
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._remove_waiters.setdefault(c.id, []).append(fut)
            return fut
        if condition in ("", "not-running") and c.state.status in ("created", "exited", "dead"):
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            done.set_result(c.state.exit_code)
            return done
        if condition not in ("", "not-running", "next-exit"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        return self._exit_future(c.id)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.state.status == "removing":
            return
        if c.state.running and not force:
            raise WrongState(f"cannot remove container \"/{c.name}\": container is running: stop the container "
                             "before removing or force remove")
        if c.state.status == "restarting":  # between two runs: nothing to kill
            c.state.manually_stopped = True
            c.state.status = "exited"
        if c.state.running:
            c.state.manually_stopped = True
            exited = self._exit_future(c.id)
            shim = await self.shim()
            await shim.kill(c.id, signals.SIGKILL, all=True)
            if c.state.status == "paused":
                await shim.resume(c.id)
            try:
                await asyncio.wait_for(exited, 30)
            except asyncio.TimeoutError:
                raise WrongState(f"container {c.id[:12]} did not die after SIGKILL") from None
        async with self.lock(c.id):
            if c.id not in self.containers:
                return
            c.state.status = "removing"
            task = self._monitors.pop(c.id, None)
            if task is not None:
                task.cancel()
            try:
                shim = await self.shim()
                if await _shim_state(shim, c.id) is not None:
                    # force: a created (never started) container's init may not be reaped yet
                    await shim.delete(c.id, force=True)
            except Exception as e:  # noqa: BLE001 - best effort: the container is gone or going
                log.debug("container %s: supervisor delete: %s", c.id[:12], e)
            await self._cleanup_files(c.id)
            del self.containers[c.id]
            self._drop_links_to(c.name)
            await self._release_volumes(c, remove_anonymous=volumes)
        self._event("destroy", c)
        for fut in self._remove_waiters.pop(c.id, []):
            if not fut.done():
                fut.set_result(c.state.exit_code)
        for fut in self._exit_waiters.pop(c.id, []):
            if not fut.done():
                fut.set_result(c.state.exit_code)

    async def _cleanup_files(self, cid: str) -> None:
        await self.unmount_rootfs(cid)
        await self._unmount_shm(cid)
        try:
            await asyncio.to_thread(self.images.store.remove_container, cid)
        except NotFound:
            pass
        await asyncio.to_thread(shutil.rmtree, self.dir(cid), True)

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name or not NAME_RE.match(new_name):
            raise InvalidArgument(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new_name = new_name.lstrip("/")
        if any(o.name == new_name and o.id != c.id for o in self.containers.values()):
            raise AlreadyExists(f'Conflict. The container name "/{new_name}" is already in use')
        old = c.name
        c.name = new_name
        self.save(c)
        for o in self.containers.values():  # links name both ends: keep them pointing at it
            renamed = []
            for link in self.host_config_list(o, "Links"):
                target, alias = links.parse(link)
                renamed.append(links.stored(new_name if target == old else target, o.name, alias))
            changed = renamed != self.host_config_list(o, "Links")
            if changed:
                o.host_config["Links"] = renamed
            for ep in o.networks.values():  # endpoint links (DNS aliases): "name:alias"
                kept = [str(x) for x in ep.get("Links") or []]
                moved = [f"{new_name}:{x.partition(':')[2] or old}" if x.partition(":")[0].strip("/") == old else x
                         for x in kept]
                if moved != kept:
                    ep["Links"], changed = moved, True
            if changed:
                self.save(o)
        self._event("rename", c, {"oldName": "/" + old})

    async def prune(self, keep: Any = None) -> tuple[list[str], int]:
        """Remove every stopped container (that `keep(c)` does not keep); (IDs, bytes reclaimed)."""
        removed: list[str] = []
        reclaimed = 0
        for c in list(self.containers.values()):
            if c.state.status not in ("exited", "created", "dead") or (keep is not None and keep(c)):
                continue
            try:
                reclaimed += await asyncio.to_thread(self.images.store.snapshots.usage, c.id)
            except Exception:  # noqa: BLE001 - the size is informational
                pass
            try:
                await self.remove(c.id)
            except (WrongState, NotFound) as e:
                log.info("prune: container %s kept: %s", c.id[:12], e)
                continue
            removed.append(c.id)
        return removed, reclaimed

    _UPDATABLE = ("CpuShares", "Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "CpuPeriod", "CpuQuota",
                  "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "BlkioWeight", "PidsLimit",
                  "KernelMemory", "RestartPolicy")

    async def update(self, ref: str, changes: dict[str, Any]) -> list[str]:
        """`docker update`: new resource limits (applied at once when running) or restart policy."""
        from dockyard.services import specgen
        from dockyard.services.model import HostConfig

        c = self.get(ref)
        unknown = sorted(k for k, v in changes.items() if k not in self._UPDATABLE and v not in (None, 0, "", [], {}))
        if unknown:
            raise InvalidArgument(f"cannot update: {', '.join(unknown)} (only resources and the restart policy)")
        async with self.lock(c.id):
            new = dict(c.host_config)
            for key, value in changes.items():
                # Docker's clients send every field; zero means "leave as it is"
                if key in self._UPDATABLE and value not in (None, "", 0):
                    new[key] = value
            if "RestartPolicy" in changes:
                _restart_policy_check(new)
            res = specgen.resources(HostConfig.from_docker(new))
            if c.state.status in ("running", "paused"):
                await self._runtime_update(c, res)
            c.host_config = new
            self.save(c)
        self._event("update", c)
        return []

    async def _runtime_update(self, c: Container, res: dict[str, Any]) -> None:
        res = {k: v for k, v in res.items() if k != "devices"}
        spec_file = os.path.join(self.dir(c.id), "update.json")
        write_json_atomic(spec_file, res, 0o600)
        runtime = self.daemon_config.runtime_path(c.runtime)
        proc = await asyncio.create_subprocess_exec(runtime, "--root", self.runtime_root, "update", "--resources",
                                                    spec_file, c.id, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        os.unlink(spec_file)
        if proc.returncode != 0:
            raise InvalidArgument(f"Cannot update container {c.id}: {(err or out).decode(errors='replace').strip()}")

    # --- stdio, resize, top, stats ------------------------------------------------------

    async def attach(self, ref: str, stdin: bool, stdout: bool, stderr: bool) -> tuple[Container, Any, Any]:
        c = self.get(ref)
        shim = await self.shim()
        async with self.lock(c.id):
            state = await _shim_state(shim, c.id)
            if state is None or state.status == "stopped":
                # `docker start -a` attaches before it starts: make the container ready to start again
                if c.state.status in ("removing", "dead"):
                    raise WrongState(f"container {c.id[:12]} is being removed: you cannot attach to it")
                if state is not None:
                    await shim.delete(c.id)
                try:
                    await self._create_task(c)
                except DockyardError:
                    # e.g. a link or namespace it takes at start is not there (dockerd's attach
                    # does not look): an empty stream, and the start that follows says why
                    self._event("attach", c)
                    return c, _ended_stream(), StdinOfContainer(_Discard(), None)
        reader, writer = await shim.attach(c.id, None, stdin=stdin and bool(c.config.get("OpenStdin")),
                                           stdout=stdout, stderr=stderr, stdin_eof=False)
        self._event("attach", c)
        # dockerd: the client's EOF closes the container's stdin only without a tty and with StdinOnce
        # (`docker run -i`); a tty, or a detach, leaves it open for the next attach
        close_on_eof = not c.tty and bool(c.config.get("StdinOnce"))
        return c, reader, StdinOfContainer(writer, (lambda: shim.close_stdin(c.id)) if close_on_eof else None)

    async def resize(self, ref: str, height: int, width: int, exec_id: str | None = None) -> None:
        c = self.get(ref)
        if c.state.status not in ("running", "paused", "created"):
            raise WrongState(f"Container {c.id} is not running")
        await (await self.shim()).resize(c.id, exec_id, height, width)

    async def stats(self, ref: str) -> tuple[Container, dict[str, Any]]:
        c = self.get(ref)
        if c.state.status not in ("running", "paused"):
            return c, {}
        return c, await (await self.shim()).stats(c.id)

    def pids(self, c: Container) -> list[int]:
        """The processes in the container's PID namespace (found from its init)."""
        if not c.state.pid:
            return []
        try:
            ns = os.readlink(f"/proc/{c.state.pid}/ns/pid")
        except OSError:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                        out.append(int(entry))
                except OSError:
                    continue
        return sorted(out)

    async def top(self, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
        c = self.get(ref)
        if c.state.status not in ("running", "paused"):
            raise WrongState(f"Container {c.id} is not running")
        pids = set(self.pids(c))
        proc = await asyncio.create_subprocess_exec("ps", *(ps_args.split() or ["-ef"]), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidArgument(f"ps {ps_args}: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        if not lines:
            return [], []
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidArgument(f"Couldn't find PID field in ps output of ps {ps_args}")
        col = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
                rows.append(fields)
        return titles, rows

    # --- daemon restart -----------------------------------------------------------------

    async def restore(self) -> None:
        """Load every record and reconcile it with what the supervisor has."""
        for cid in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, cid, "config.json")
            try:
                with open(path) as f:
                    self.containers[cid] = Container.from_json(json.load(f))
            except FileNotFoundError:
                # the daemon died in the middle of a create, before the record was written
                log.warning("container %s: removing the remains of an unfinished create", cid[:12])
                try:
                    await self._cleanup_files(cid)
                except Exception as e:  # noqa: BLE001 - logged; retried at the next start
                    log.error("container %s: cleaning up an unfinished create: %s", cid[:12], e)
            except (OSError, ValueError, TypeError) as e:
                log.error("container %s: unreadable record %s: %s", cid[:12], path, e)
        self._claim_volumes_again()
        shim = await self.shim()  # started now, so that containers never wait for it
        known = {s.id: s for s in await shim.list()}
        for c in list(self.containers.values()):
            s = known.get(c.id)
            if c.state.status == "removing":
                await self.remove(c.id, force=True)
            elif s is None:
                if c.state.running:
                    c.state.status = "exited"
                    c.state.exit_code = 255
                    c.state.error = "the supervisor no longer knows the container"
                    c.state.finished_at = now_rfc3339()
                    self.save(c)
            elif s.status == "stopped":
                await self._exited(c, s.exit)
                await self._after_exit(c)
            else:
                c.state.status = {"created": "created", "running": "running", "paused": "paused"}.get(s.status, c.state.status)
                if c.state.status == "created" and c.state.started_at != ZERO_TIME:
                    c.state.status = "created"
                c.state.pid = s.pid
                self.save(c)
                self._watch(c)
                if c.state.status in ("running", "paused"):
                    self._started(c)


def _ended_stream() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_eof()
    return reader


class _Discard:
    """Where the input of an attach with no container process behind it goes."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


class StdinOfContainer:
    """The supervisor connection of an attach, as the API layer writes to it: a half-close
    closes the container's stdin (close_stdin), a plain close (a client that detached) does not."""

    def __init__(self, writer: Any, close_stdin: Callable[[], Any] | None) -> None:
        self._writer = writer
        self._close_stdin = close_stdin

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._close_stdin is None:
            return
        task = asyncio.get_running_loop().create_task(self._close_stdin())
        task.add_done_callback(lambda t: t.exception())  # the container may have exited meanwhile

    def close(self) -> None:
        self._writer.close()


async def _shim_state(shim: Any, cid: str) -> Any:
    try:
        return await shim.state(cid)
    except NotFound:
        return None


def prewarm_cgroup_migration() -> None:
    """Start the kernel's wait for the runtime's first cgroup migration now, in parallel.

    On cgroup v1 the first write to a `cgroup.procs` after a quiet period waits for an RCU grace
    period (the global cgroup_threadgroup_rwsem switching to its writer mode: ~10-15 ms here);
    writes soon after are cheap. A no-op migration (this process into the cgroup it is already
    in) pays that wait in a worker thread while the daemon prepares the container, so the
    runtime's own write a few milliseconds later is fast. Best effort: any failure is ignored.
    """
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            names = controllers.split(",")
            if "cpu" in names or "pids" in names:
                procs = f"/sys/fs/cgroup/{controllers}{path}/cgroup.procs"
                with open(procs, "w") as out:
                    out.write(str(os.getpid()))
                return
    except (OSError, ValueError):
        pass


def _size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    if str(text).strip() in ("-1", "0", ""):
        return 0
    m = re.fullmatch(r"(\d+)([kKmMgG]?)[bB]?", str(text).strip())
    if not m:
        raise InvalidArgument(f"invalid log max-size {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


LOG_DRIVERS = ("json-file", "none")
LOG_OPTS = ("max-size", "max-file")
# Docker's json-file grows without bound by default; here logs are capped unless configured:
# 5 files of 20 MB (Docker's `local` driver's defaults).
DEFAULT_LOG_OPTS = {"max-size": "20m", "max-file": "5"}


def _log_config(value: dict[str, Any] | None, daemon_opts: dict[str, str] | None = None) -> dict[str, Any]:
    """The effective LogConfig: json-file (or none) with max-size/max-file, defaults filled in."""
    value = value or {}
    driver = value.get("Type") or "json-file"
    if driver not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")  # dockerd's words
    opts = {str(k): str(v) for k, v in (value.get("Config") or {}).items()}
    unknown = sorted(k for k in opts if k not in LOG_OPTS)
    if unknown:
        raise InvalidArgument(f"unknown log opt '{unknown[0]}' for {driver} log driver (supported: {', '.join(LOG_OPTS)})")
    if driver == "none":
        return {"Type": "none", "Config": {}}
    merged = {**DEFAULT_LOG_OPTS, **(daemon_opts or {}), **opts}
    size = _size(merged["max-size"])
    if not merged["max-file"].isdigit() or int(merged["max-file"]) < 1:
        raise InvalidArgument(f"invalid max-file {merged['max-file']!r}: a positive number")
    if size <= 0:
        merged.pop("max-size")  # "-1"/"0": unlimited, as the user asked
    return {"Type": "json-file", "Config": merged}


def _restart_policy_check(host_config: dict[str, Any]) -> tuple[str, int]:
    policy = host_config.get("RestartPolicy") or {}
    name = str(policy.get("Name") or "no")
    count = int(policy.get("MaximumRetryCount") or 0)
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy '{name}'")
    if count and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if name != "no" and host_config.get("AutoRemove"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    return name, count


def ensure_working_dir(rootfs: str, cwd: str) -> None:
    """Docker makes a missing working directory (`-w`, the image's WorkingDir) before the start,
    resolved inside the container's root, owned by root."""
    from dockyard.services import fscopy

    if cwd in ("", "/"):
        return
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not fscopy.is_directory(fd, cwd):
            fscopy.make_dirs(fd, cwd)
    except (InvalidArgument, NotFound, OSError) as e:
        raise InvalidArgument(f"cannot make the working directory {cwd}: {e}") from None
    finally:
        os.close(fd)


def _refuse_networking(host_config: dict[str, Any], networking: dict[str, Any] | None) -> None:
    """Without a network service every container gets a private namespace with only `lo`
    (or the host's): anything else asked for is refused, never silently dropped."""
    asked = [f"HostConfig.{k}" for k in ("PortBindings", "PublishAllPorts") if host_config.get(k)]
    mode = str(host_config.get("NetworkMode") or "")
    if mode not in ("", "default", "bridge", "none", "host"):
        asked.append(f"HostConfig.NetworkMode={mode}")
    asked += [f"NetworkingConfig.EndpointsConfig.{k}" for k in ((networking or {}).get("EndpointsConfig") or {})
              if k not in ("bridge", "default", "none", "host")]
    if asked:
        raise NotImplementedFeature(f"networking is not available in this daemon: {', '.join(asked)}")


def _merge_image_config(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Docker's merge: the image's Env under the request's, Cmd/Entrypoint/WorkingDir/User/... defaults."""
    out = dict(config)
    env = {e.split("=", 1)[0]: e for e in image.get("Env") or []}
    for e in config.get("Env") or []:
        env[e.split("=", 1)[0]] = e
    out["Env"] = list(env.values())
    if not config.get("Entrypoint") and config.get("Entrypoint") != [""]:
        out["Entrypoint"] = image.get("Entrypoint")
        if not config.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
    elif config.get("Entrypoint") == [""]:
        out["Entrypoint"] = None
    for key in ("WorkingDir", "User", "StopSignal"):
        if not config.get(key) and image.get(key):
            out[key] = image[key]
    health = dict(config.get("Healthcheck") or {})
    if image.get("Healthcheck"):
        # Docker: the image's check, with the request's non-zero fields on top
        merged = dict(image["Healthcheck"])
        merged.update({k: v for k, v in health.items() if v})
        health = merged
    if health:
        out["Healthcheck"] = health
    labels = dict(image.get("Labels") or {})
    labels.update(config.get("Labels") or {})
    out["Labels"] = labels
    if not config.get("ExposedPorts") and image.get("ExposedPorts"):
        out["ExposedPorts"] = image["ExposedPorts"]
    if not config.get("Volumes") and image.get("Volumes"):
        out["Volumes"] = image["Volumes"]
    return out
