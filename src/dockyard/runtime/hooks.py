"""Running OCI lifecycle hooks: the container state on stdin, a timeout, a clear failure."""

from __future__ import annotations

from dockyard.utils import fastjson as json
import subprocess

from dockyard.errors import SystemFailure

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any


def run_hooks(hooks: list[dict[str, Any]] | None, state: dict[str, Any], kind: str) -> None:
    for hook in hooks or []:
        run_hook(hook, state, kind)


def run_hook(hook: dict[str, Any], state: dict[str, Any], kind: str) -> None:
    args = hook.get("args") or [hook["path"]]
    env = dict(e.split("=", 1) for e in hook.get("env") or [])
    try:
        proc = subprocess.run(args, executable=hook["path"], input=json.dumps(state).encode(), env=env,
                              capture_output=True, timeout=hook.get("timeout"), close_fds=True)
    except subprocess.TimeoutExpired:
        raise SystemFailure(f"{kind} hook {hook['path']} timed out after {hook.get('timeout')}s") from None
    except OSError as e:
        raise SystemFailure(f"{kind} hook {hook['path']}: {e.strerror}", e.errno or 0) from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise SystemFailure(f"{kind} hook {hook['path']} exited with status {proc.returncode}: {detail}")
