"""Driving the real `dockyard-runtime` executable against real bundles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from dockyard.runtime.defaults import default_spec

RUNTIME = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")
_TEMPLATE = "/tmp/dockyard-test-busybox-rootfs"


def busybox_rootfs(target: str) -> None:
    """A rootfs with the host's static busybox and its applets (a cached template, copied)."""
    if not os.path.exists(os.path.join(_TEMPLATE, ".complete")):
        tmp = _TEMPLATE + f".{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(os.path.join(tmp, "bin"))
        shutil.copy2("/bin/busybox", os.path.join(tmp, "bin", "busybox"))
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", os.path.join(tmp, "bin", applet))
        for d in ("proc", "sys", "dev", "tmp", "etc", "root", "home/user"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        os.chmod(os.path.join(tmp, "tmp"), 0o1777)
        with open(os.path.join(tmp, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        with open(os.path.join(tmp, "etc/group"), "w") as f:
            f.write("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, _TEMPLATE)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["cp", "-a", _TEMPLATE, target], check=True)


@dataclass
class Bundle:
    path: str
    spec: dict[str, Any]

    def save(self) -> None:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.spec, f)

    @property
    def rootfs(self) -> str:
        return os.path.join(self.path, "rootfs")


def make_bundle(directory: str, args: list[str], terminal: bool = False) -> Bundle:
    os.makedirs(directory, exist_ok=True)
    busybox_rootfs(os.path.join(directory, "rootfs"))
    spec = default_spec(args, terminal=terminal)
    spec["root"]["readonly"] = False
    spec["process"]["env"].append("HOME=/root")
    b = Bundle(directory, spec)
    b.save()
    return b


class Runtime:
    def __init__(self, root: str) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True, timeout: float = 30,
                 **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run one runtime command. Output goes through files, not pipes: a container started by
        `create` or `run -d` inherits them and would hold pipes open (as a shim's fifos are held)."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            kw.setdefault("stdin", subprocess.DEVNULL)
            code = subprocess.run([RUNTIME, "--root", self.root, *args], stdout=out, stderr=err, timeout=timeout,
                                  **kw).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(list(args), code, out.read().decode(), err.read().decode())
        if check and proc.returncode != 0:
            raise AssertionError(f"dockyard-runtime {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self("list", "-q", check=False).stdout.split():
            self("delete", "--force", cid, check=False)
