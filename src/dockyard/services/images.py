"""The image service: the image store behind asyncio, with events. Pulls only the embedded images."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, BinaryIO

from dockyard.errors import NotFound
from dockyard.image import archive, embedded, importer
from dockyard.image.model import DeleteReport, HistoryEntry, Image, ImageDetails, ImageUser, PruneReport
from dockyard.image.store import ImageStore
from dockyard.services.events import EventService
from dockyard.types.reference import DEFAULT_DOMAIN, familiar, parse_image


class ImageService:
    def __init__(self, store: ImageStore, events: EventService, insecure_registries: list[str] | None = None,
                 registry_mirrors: list[str] | None = None) -> None:
        self.store = store
        self.events = events
        self.insecure_registries = list(insecure_registries or [])
        self.registry_mirrors = list(registry_mirrors or [])

    def set_users(self, users: Callable[[str], list[ImageUser]]) -> None:
        self.store.users = users

    def _event(self, action: str, image_id: str, name: str | None = None) -> None:
        self.events.publish("image", action, image_id, {"name": name or image_id})

    async def list(self, dangling: bool | None = None) -> list[Image]:
        return await asyncio.to_thread(self.store.list, dangling=dangling)

    async def get(self, name: str) -> Image:
        return await asyncio.to_thread(self.store.get, name)

    async def details(self, name: str) -> ImageDetails:
        return await asyncio.to_thread(self.store.details, name)

    async def history(self, name: str) -> list[HistoryEntry]:
        return await asyncio.to_thread(self.store.history, name)

    async def tag(self, source: str, target: str) -> str:
        image = await self.get(source)
        ref = await asyncio.to_thread(self.store.tag, source, target)
        self._event("tag", str(image.id), ref.familiar())
        return ref.familiar()

    async def remove(self, name: str, force: bool = False, prune_children: bool = True) -> DeleteReport:
        report = await asyncio.to_thread(self.store.remove, name, force=force, prune_children=prune_children)
        for u in report.untagged:
            self._event("untag", u, u)
        for d in report.deleted:
            self._event("delete", d)
        return report

    async def prune(self, all_images: bool = False, until: float | None = None,
                    labels: Callable[[dict[str, str]], bool] | None = None) -> PruneReport:
        report = await asyncio.to_thread(self.store.prune, all_images=all_images, until=until, labels=labels)
        self.events.publish("image", "prune", "", {"reclaimed": str(report.space_reclaimed)})
        return report

    async def login(self, server: str, username: str, password: str) -> None:
        from dockyard.registry.client import Credentials, login

        await asyncio.to_thread(login, server, Credentials(username, password), self.insecure_registries)

    async def pull(self, name: str, progress: Callable[[dict[str, Any]], None] | None = None,
                   credentials: Any = None) -> Image:
        """The embedded images from the embedded source; others from their registry.

        Docker Hub itself is refused: this project's machines cannot reach it, so that path was
        never tested (and tests must not send traffic beyond loopback); its names are pulled from
        the configured registry mirrors instead, or from another registry."""
        ref = parse_image(name)
        if embedded.is_embedded(str(ref)):
            image = await asyncio.to_thread(embedded.ensure_embedded, self.store, str(ref))
        elif ref.domain == DEFAULT_DOMAIN and not self.registry_mirrors:
            raise NotFound(f"pull access denied for {familiar(str(ref))}: pulling from Docker Hub is not enabled "
                           "(only the embedded busybox:latest is available from docker.io; configure "
                           "registry-mirrors, pull from another registry, e.g. localhost:5000/name, or use "
                           "docker load/import)")
        else:
            from dockyard.registry.client import pull

            image = await asyncio.to_thread(pull, self.store, ref, insecure_registries=self.insecure_registries,
                                            progress=progress, mirrors=self.registry_mirrors, credentials=credentials)
        self._event("pull", str(image.id), ref.familiar())
        return image

    async def push(self, name: str, progress: Callable[[dict[str, Any]], None] | None = None,
                   credentials: Any = None) -> tuple[str, int]:
        """Push a local image to its registry; (digest, size) of the pushed manifest."""
        from dockyard.registry.client import push

        ref = parse_image(name)
        await self.get(str(ref))
        digest, size = await asyncio.to_thread(push, self.store, ref, insecure_registries=self.insecure_registries,
                                               progress=progress, credentials=credentials)
        self._event("push", str(ref), ref.familiar())
        return str(digest), size

    async def distribution(self, name: str, credentials: Any = None) -> dict[str, Any]:
        from dockyard.registry.client import distribution

        return await asyncio.to_thread(distribution, parse_image(name), insecure_registries=self.insecure_registries,
                                       credentials=credentials)

    async def resolve(self, name: str) -> Image:
        """An image for a container: from the store, else an embedded one."""
        return await asyncio.to_thread(embedded.get_or_embedded, self.store, name)

    async def import_rootfs(self, stream: BinaryIO, reference: str | None, changes: list[str], message: str,
                            source_name: str) -> Image:
        image = await asyncio.to_thread(importer.import_rootfs, self.store, stream, reference=reference,
                                        changes=changes, message=message, source_name=source_name)
        self._event("import", str(image.id), reference)
        return image

    def save(self, refs: list[str], out: BinaryIO) -> None:
        """Blocking: run it in a thread. Writes a docker-archive to `out`."""
        archive.save(self.store, refs, out, archive.DOCKER_ARCHIVE)

    async def load(self, stream: BinaryIO) -> list[archive.LoadedImage]:
        loaded = await asyncio.to_thread(archive.load, self.store, stream)
        for item in loaded:
            self._event("load", str(item.image.id), item.names[0] if item.names else None)
        return loaded
