#!/bin/sh
# Runs one container from a busybox bundle through dockyard-runtime, then removes the bundle.
# (Once the daemon lands this becomes: dockyard run --rm busybox echo hello)
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/dockyard-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc"
cp /bin/busybox "$dir/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do ln -sf busybox "$dir/rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/rootfs/etc/group"
cd "$dir"
"$here/.venv/bin/dockyard-runtime" spec
"$here/.venv/bin/python" - <<'PY'
import json
spec = json.load(open("config.json"))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", "echo hello from $(hostname), a dockyard container; id"]
json.dump(spec, open("config.json", "w"))
PY
"$here/.venv/bin/dockyard-runtime" run "demo-$$"
