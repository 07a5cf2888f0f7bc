"""`dockyard-runtime create` stays cheap to start: what its modules load in a fresh `python -I -S`."""

from __future__ import annotations

from test_cgroups_imports import loaded_after

HEAVY = {"dataclasses", "inspect", "typing", "tempfile"}


def test_create_path_loads_no_heavy_modules() -> None:
    loaded = loaded_after("import dockyard.cli.runtime, dockyard.runtime.container, dockyard.runtime.init, "
                          "dockyard.runtime.rootfs, dockyard.runtime.mountopts, dockyard.security.capabilities")
    assert not (loaded & HEAVY), sorted(loaded & HEAVY)
