"""Hostile layers are rejected or confined: nothing is ever written outside the snapshot."""

from __future__ import annotations

import io
import os

import pytest

from dockyard.errors import InvalidArgument
from dockyard.snapshot import ApplyLimits, HostileLayer, OverlaySnapshotter, apply_layer
from hostile_tars import corpus

pytestmark = pytest.mark.root


def _tree(path: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), path))
    return sorted(out)


@pytest.mark.parametrize("deferred", [False, True], ids=["lowers", "lowers-later"])
@pytest.mark.parametrize("case", corpus("/OUTSIDE"), ids=lambda c: c.name)
def test_hostile_corpus(tmp_path, case, deferred: bool) -> None:
    """`lowers-later`: the lower dirs come from a function, as when the store unpacks layers in
    parallel (parents the layer implies get their metadata, and their checks, at the end)."""
    outside = str(tmp_path / "outside")
    os.mkdir(outside)
    # the corpus is built against the real `outside` path for this test
    case = next(c for c in corpus(outside) if c.name == case.name)
    passwd_links = os.stat("/etc/passwd").st_nlink
    snaps = OverlaySnapshotter(str(tmp_path / "snaps"))
    limits = ApplyLimits(**case.limits)  # type: ignore[arg-type]
    parent = None
    error: Exception | None = None
    upper = ""
    for i, layer in enumerate(case.layers):
        key = f"layer-{i}"
        snaps.prepare(key, parent)
        upper = snaps.upper_dir(key)
        try:
            lowers = snaps.lower_dirs(key)
            apply_layer(io.BytesIO(layer), upper, (lambda lowers=lowers: lowers) if deferred else lowers, limits=limits)
        except InvalidArgument as e:
            error = e
            snaps.remove(key)
            break
        snaps.commit(f"c{i}", key)
        parent = f"c{i}"
    if case.expect == "hostile":
        assert isinstance(error, HostileLayer), f"expected HostileLayer, got {error!r}"
    elif case.expect == "invalid":
        assert error is not None and not isinstance(error, HostileLayer), f"expected a plain invalid-layer error, got {error!r}"
    else:
        assert error is None, repr(error)
        assert case.check is not None and parent is not None
        case.check(snaps.fs_dir(snaps.stat(parent)))
    assert _tree(outside) == [], f"written outside the snapshot: {_tree(outside)}"
    assert sorted(os.listdir(tmp_path)) == ["outside", "snaps"]
    assert os.stat("/etc/passwd").st_nlink == passwd_links
    if error is not None:
        # the failed layer's snapshot went away whole; only committed lower layers remain
        assert all(i.kind == "committed" for i in snaps.walk())
    snaps.close()


def test_errors_name_the_entry(tmp_path) -> None:
    from hostile_tars import f, sym, tar

    os.mkdir(tmp_path / "up")
    with pytest.raises(HostileLayer) as e:
        apply_layer(io.BytesIO(tar(sym("evil", "/"), f("evil/etc/x"))), str(tmp_path / "up"))
    assert "evil" in str(e.value) and "symlink" in str(e.value)
