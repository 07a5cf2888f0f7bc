"""The container service on a real image store: snapshot, rootfs mount, generated files, cleanup.

The supervisor and the spec generator are stand-ins (tests/unit/test_daemon_containers.py):
this checks the daemon's own side of the kernel work: overlay mounts and snapshots.
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from test_daemon_containers import FakeShim, fake_build_spec  # noqa: E402

from dockyard.daemon.config import DaemonConfig  # noqa: E402
from dockyard.image.store import ImageStore  # noqa: E402
from dockyard.services.containers import ContainerService  # noqa: E402
from dockyard.services.events import EventService  # noqa: E402
from dockyard.services.images import ImageService  # noqa: E402

pytestmark = pytest.mark.root


def test_rootfs_mounted_while_it_exists_and_everything_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_module = types.ModuleType("dockyard.services.specgen")
    spec_module.build_spec = fake_build_spec  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dockyard.services.specgen", spec_module)
    import dockyard.services

    monkeypatch.setattr(dockyard.services, "specgen", spec_module, raising=False)
    shim = FakeShim()

    async def fake_shim(self: ContainerService) -> FakeShim:
        return shim

    monkeypatch.setattr(ContainerService, "shim", fake_shim)
    cfg = DaemonConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "exec"),
                       runtimes={"dockyard-runtime": "/bin/true"})
    store = ImageStore(cfg.data_root, durable=False)
    events = EventService()
    images = ImageService(store, events)
    service = ContainerService(cfg, images, events)

    async def main() -> None:
        c = await service.create("rooty", {"Image": "busybox", "Cmd": ["sleep", "60"], "Hostname": "box",
                                           "Domainname": "example.org"},
                                 {"ExtraHosts": ["db:10.0.0.9"], "Dns": ["127.0.0.53"]})
        rootfs = os.path.join(service.bundle(c.id), "rootfs")
        assert os.path.ismount(rootfs) and os.path.exists(os.path.join(rootfs, "bin", "busybox"))
        files = Path(service.dir(c.id))
        assert (files / "hostname").read_text() == "box\n"
        hosts = (files / "hosts").read_text()
        assert "127.0.1.1\tbox.example.org box" in hosts and "10.0.0.9\tdb" in hosts
        assert (files / "resolv.conf").read_text() == "nameserver 127.0.0.53\n"
        assert images.store.users(c.image_id)[0].container_id == c.id
        assert "conflict" in str((await _raises(images.remove("busybox"))))
        await service.start(c.id)
        await service.stop(c.id, timeout=1)
        assert not os.path.ismount(rootfs)  # unmounted at the exit, mounted again by start
        await service.start(c.id)
        assert os.path.ismount(rootfs)
        await service.remove(c.id, force=True)
        assert not os.path.exists(service.dir(c.id))
        assert not store.snapshots.exists(c.id)
        assert store.check() == []
        await service.close()

    try:
        asyncio.run(main())
    finally:
        store.close()


async def _raises(coro: object) -> BaseException:
    try:
        await coro  # type: ignore[misc]
    except BaseException as e:  # noqa: BLE001 - the test looks at it
        return e
    raise AssertionError("no error")
