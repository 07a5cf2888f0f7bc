#!/bin/sh
# crun 1.8 stops with "cgroups in hybrid mode not supported" on a machine whose cgroup v1
# hierarchies sit beside a cgroup v2 mount at /sys/fs/cgroup/unified (this machine's layout).
# This wrapper gives crun a private mount namespace in which that v2 mount is gone, so crun sees
# plain cgroup v1; the machine's own mounts are not changed. Use it exactly like `crun`:
#   bench/crun-hybrid.sh --root DIR create --bundle B ID
# The extra unshare and sh cost a little time on every call; runtime_lifecycle.py measures it.
exec unshare --mount --propagation private \
  sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"' crun "$@"
