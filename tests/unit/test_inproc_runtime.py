"""When the supervisor may run dockyard-runtime's verbs in a fork (dockyard.shim.inproc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dockyard
from dockyard.shim import inproc

SRC = os.path.dirname(os.path.dirname(dockyard.__file__))


def test_only_the_launcher_script_counts(tmp_path: Path) -> None:
    launcher = tmp_path / "dockyard-runtime"
    launcher.write_text("#!/usr/local/bin/dockyard-python -IS\nimport sys\nfrom dockyard.cli.runtime import main\n")
    assert inproc.is_dockyard_runtime(str(launcher))
    other = tmp_path / "runc"
    other.write_bytes(b"\x7fELF" + b"\0" * 100)
    assert not inproc.is_dockyard_runtime(str(other))
    assert not inproc.is_dockyard_runtime(str(tmp_path / "missing"))


def test_the_native_front_counts_when_it_hands_over_to_the_launcher(tmp_path: Path) -> None:
    launcher = tmp_path / "dockyard-runtime-python"
    launcher.write_text("#!/usr/local/bin/dockyard-python -IS\nimport sys\nfrom dockyard.cli.runtime import main\n")
    front = tmp_path / "dockyard-runtime"
    front.write_bytes(b"\x7fELF" + b"\0" * 64 + inproc.FRONT_MARK + os.fsencode(launcher) + b"\0more")
    assert inproc.native_front_launcher(str(front)) == str(launcher)
    assert inproc.is_dockyard_runtime(str(front))
    launcher.write_text("#!/bin/sh\nexec runc \"$@\"\n")
    assert not inproc.is_dockyard_runtime(str(front))
    script = tmp_path / "script"
    script.write_bytes(b"#!/bin/sh\n# " + inproc.FRONT_MARK + os.fsencode(launcher) + b"\0")
    assert inproc.native_front_launcher(str(script)) is None  # only an executable counts


def test_not_used_on_a_mutable_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = tmp_path / "dockyard-runtime"
    launcher.write_text("#!/x -IS\nfrom dockyard.cli.runtime import main\n")
    monkeypatch.setattr(inproc, "_immutable", False)
    assert not inproc.usable(str(launcher))
    monkeypatch.setattr(inproc, "_immutable", True)
    assert inproc.usable(str(launcher))
    monkeypatch.setenv("DOCKYARD_SHIM_SPAWN_RUNTIME", "1")
    assert not inproc.usable(str(launcher))


def test_immutability_is_read_from_the_running_interpreter() -> None:
    private = "/usr/local/bin/dockyard-python"
    code = f"import sys; sys.path.insert(0, {SRC!r}); from dockyard.shim import inproc; print(inproc.interpreter_is_immutable())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(os.path.realpath(sys.executable) == private and _immutable(private))
    if os.access(private, os.X_OK) and _immutable(private):
        out = subprocess.run([private, "-I", "-S", "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "True"


def _immutable(path: str) -> bool:
    try:
        out = subprocess.run(["lsattr", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return "i" in out.split()[0]


def test_call_runs_only_the_light_verbs_and_returns_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "state")
    runtime = str(tmp_path / "dockyard-runtime")
    assert inproc.call_runtime([runtime, "--root", root, "delete", "--force", "gone"]) == (0, "")
    code, message = inproc.call_runtime([runtime, "--root", root, "delete", "gone"])
    assert code == 1 and "gone" in message and "does not exist" in message
    code, message = inproc.call_runtime([runtime, "--root", root, "start", "gone"])
    assert code == 1 and "does not exist" in message
    code, message = inproc.call_runtime([runtime, "--root", root, "create", "--bundle", str(tmp_path), "c1"])
    assert code == 2 and "not callable in-process" in message
    code, message = inproc.call_runtime([runtime, "--root", root, "start"])
    assert code == 2 and "missing" in message.lower()
    assert capsys.readouterr() == ("", "")  # nothing printed: the caller reports
