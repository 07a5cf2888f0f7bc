"""The daemon: builds the services, serves the API on its unix sockets, reloads, shuts down."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker.app import Backend, build_app
from dockyard.daemon.config import DaemonConfig
from dockyard.services.events import EventService
from dockyard.services.images import ImageService
from dockyard.services.system import SystemService

log = logging.getLogger("dockyard.daemon")
SOCKET_MODE = 0o660


class Daemon:
    def __init__(self, config: DaemonConfig, reload: Any = None) -> None:
        self.config = config
        self._reload = reload
        self.runner: web.AppRunner | None = None
        self.backend = Backend()
        self.health: Any = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        from dockyard.image.store import ImageStore

        cfg = self.config
        os.makedirs(cfg.data_root, mode=0o711, exist_ok=True)
        os.makedirs(cfg.exec_root, mode=0o711, exist_ok=True)
        events = EventService()
        store = await asyncio.to_thread(ImageStore, cfg.data_root)
        images = ImageService(store, events, cfg.insecure_registries, cfg.registry_mirrors)
        system = SystemService(cfg.data_root, cfg.exec_root, cfg.default_runtime, cfg.runtimes)
        system.bridge = cfg.bridge
        self.backend = Backend(system=system,
                               events=events, images=images)
        await self._start_containers(images, events)
        app = build_app(self.backend)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        for path in cfg.socket_paths:
            await self._listen(path)
        events.publish("daemon", "start", self.backend.system.id, {"name": self.backend.system.info().name})
        log.info("dockyardd listening on %s", ", ".join(cfg.socket_paths))

    async def _start_containers(self, images: ImageService, events: EventService) -> None:
        from dockyard.services.containerfs import ContainerFilesystem
        from dockyard.services.containers import ContainerService
        from dockyard.services.exec import ExecService
        from dockyard.services.health import HealthService

        containers = ContainerService(self.config, images, events)
        self.backend.containers = containers
        from dockyard.services.volumes import VolumeService

        containers.volumes = self.backend.volumes = await asyncio.to_thread(VolumeService, self.config.data_root)
        self.backend.execs = ExecService(containers, events)
        self.backend.containerfs = ContainerFilesystem(containers)
        self.health = HealthService(containers, self.backend.execs)
        try:
            from dockyard.services.build import BuildService
        except ImportError as e:
            log.warning("the builder is unavailable: %s", e)
        else:
            self.backend.builder = await asyncio.to_thread(BuildService, self.config.data_root, images, containers)
        from dockyard.services.netkernel import Kernel
        from dockyard.services.networks import NetworkService

        networks = await asyncio.to_thread(NetworkService, self.config.data_root, containers, events, Kernel(),
                                           self.config.bridge)
        containers.networks = self.backend.networks = networks
        try:
            await containers.restore()
        except ImportError as e:
            log.warning("containers are unavailable: the supervisor is missing (%s)", e)
        await networks.restore()

    async def _listen(self, path: str) -> None:
        assert self.runner is not None
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        site = web.UnixSite(self.runner, path)
        await site.start()
        os.chmod(path, SOCKET_MODE)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; runtimes, default runtime and log level take effect."""
        if self._reload is None:
            return
        try:
            new: DaemonConfig = self._reload()
        except Exception as e:  # noqa: BLE001 - a bad file must not stop the daemon
            log.error("reload failed, keeping the old configuration: %s", e)
            return
        self.config.runtimes = new.runtimes
        self.config.default_runtime = new.default_runtime
        self.config.log_level = new.log_level
        logging.getLogger().setLevel(new.log_level.upper().replace("FATAL", "CRITICAL").replace("WARN", "WARNING"))
        system = self.backend.system
        if system is not None:
            system.runtimes = new.runtimes
            system.default_runtime = new.default_runtime
        if self.backend.events is not None:
            self.backend.events.publish("daemon", "reload", system.id if system else "", {})
        log.info("configuration reloaded")

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.start()
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop serving; containers keep running in the supervisor."""
        log.info("shutting down (containers keep running)")
        if self.runner is not None:
            await self.runner.cleanup()
        if self.health is not None:
            await self.health.close()
        if self.backend.networks is not None:
            await self.backend.networks.close()
        if self.backend.containers is not None:
            await self.backend.containers.close()
        if self.backend.volumes is not None:
            await asyncio.to_thread(self.backend.volumes.close)
        if self.backend.images is not None:
            self.backend.images.store.close()
        for path in self.config.socket_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
