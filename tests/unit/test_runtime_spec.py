import json
import os

import pytest

from dockyard.errors import InvalidSpec
from dockyard.runtime.defaults import default_spec
from dockyard.runtime.paths import secure_join
from dockyard.runtime.spec import load_bundle, validate_id


def write_bundle(tmp_path, spec):
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(tmp_path)


def test_default_spec_validates(tmp_path):
    spec = load_bundle(write_bundle(tmp_path, default_spec(["true"])))
    assert spec["root"]["path"] == str(tmp_path / "rootfs")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.pop("ociVersion"), "ociVersion"),
        (lambda s: s["root"].update(path="missing"), "rootfs does not exist"),
        (lambda s: s["process"].update(cwd="relative"), "must be an absolute path"),
        (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}), "unknown namespace type"),
        (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "listed twice"),
        (lambda s: s["mounts"].append({"destination": "rel/path", "type": "tmpfs"}), "must be an absolute path"),
        (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "uidMappings"),
        (lambda s: s["linux"].update(sysctl={"kernel.panic": "1"}), "not namespaced"),
        (lambda s: s.update(hooks={"prestart": [{"path": "relative"}]}), "absolute path"),
        (lambda s: s["linux"].update(namespaces=[{"type": "mount"}]), "hostname requires"),
        (lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "unknown rlimit"),
        (lambda s: s["linux"].update(namespaces=[{"type": "uts"}, {"type": "network", "path": "/nonexistent/ns"}]),
         "does not exist"),
    ],
)
def test_bad_bundles_are_rejected_with_a_clear_error(tmp_path, mutate, message):
    spec = default_spec(["true"])
    mutate(spec)
    with pytest.raises(InvalidSpec, match=message):
        load_bundle(write_bundle(tmp_path, spec))


def test_invalid_json_names_the_file(tmp_path):
    with pytest.raises(InvalidSpec, match="config.json: invalid JSON"):
        load_bundle(write_bundle(tmp_path, "{not json"))


def test_missing_config(tmp_path):
    with pytest.raises(InvalidSpec, match="config.json not found"):
        load_bundle(str(tmp_path))


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a b", "x;y"])
def test_container_ids(bad):
    with pytest.raises(InvalidSpec):
        validate_id(bad)
    validate_id("ok-id_1.2+3")


def test_secure_join_never_leaves_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "etc" / "abs")
    os.symlink("../../../../", root / "etc" / "rel")
    os.symlink("loop", root / "loop")
    assert secure_join(str(root), "/etc/abs/passwd") == str(root / "passwd")
    assert secure_join(str(root), "/etc/rel/x") == str(root / "x")
    assert secure_join(str(root), "../../etc") == str(root / "etc")
    with pytest.raises(OSError):
        secure_join(str(root), "/loop/x")
