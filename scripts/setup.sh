#!/bin/sh
# Installs everything Dockyard and its tests need on a Debian 12 machine, as root.
# Safe to run again. Creates a virtual environment in .venv (Debian's python3, which starts
# faster than most builds) and links the console scripts into /usr/local/bin.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
need=""
for p in python3 python3-venv python3-dev gcc libseccomp2 busybox-static iproute2 procps \
         util-linux tar gzip zstd nftables iptables psmisc tini \
         docker.io containerd runc crun skopeo umoci docker-registry docker-compose; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# The runtime runs on a private, immutable copy of the interpreter: a container process that
# reaches /proc/<pid>/exe of a runtime process cannot write through it (CVE-2019-5736 class).
py=/usr/local/bin/dockyard-python
src=$(readlink -f /usr/bin/python3)
if ! cmp -s "$src" "$py"; then
  [ -e "$py" ] && chattr -i "$py" 2>/dev/null || true
  install -m 0755 "$src" "$py.new" && mv -f "$py.new" "$py"
fi
chattr +i "$py" 2>/dev/null || echo "warning: cannot make $py immutable on this filesystem" >&2
if [ "$(readlink -f "$here/.venv/bin/python" 2>/dev/null)" != "$py" ]; then
  rm -rf "$here/.venv"
  "$py" -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q --upgrade pip >/dev/null
"$here/.venv/bin/pip" install -q -e "$here[test]"
# dockyard-runtime is called once per container operation. Its Python part starts with -I -S
# (no site, no environment) from byte-compiled sources and needs nothing outside the standard
# library; a native front (native/runtime_front.c) answers state, start, kill and the delete of
# a stopped container without starting Python at all and hands every other command to Python.
launcher="$here/.venv/bin/dockyard-runtime-python"
cat >"$launcher.new" <<LAUNCHER
#!$py -IS
import sys
sys.path.insert(0, "$here/src")
from dockyard.cli.runtime import main
from dockyard.cli.runtime import exit_now
exit_now(main())
LAUNCHER
chmod 0755 "$launcher.new"
mv -f "$launcher.new" "$launcher"
# Like the interpreter, the front is installed immutable, outside the checkout (named by its
# content, so that several checkouts can each have their own).
front="$here/.venv/bin/dockyard-runtime"
built="$here/.venv/runtime-front.new"
rm -f "$built"
case "$launcher" in
  *[\\\"]*) echo "warning: $launcher: path not usable in C, dockyard-runtime runs without its native front" >&2 ;;
  *) cc -std=gnu11 -O2 -Wall -Wextra -Werror -DDOCKYARD_LAUNCHER="\"$launcher\"" \
        -o "$built" "$here/native/runtime_front.c" ||
       echo "warning: cannot build native/runtime_front.c, dockyard-runtime runs without its native front" >&2 ;;
esac
if [ -x "$built" ]; then
  installed="/usr/local/lib/dockyard/runtime-front-$(sha256sum "$built" | cut -c1-16)"
  if ! cmp -s "$built" "$installed"; then
    mkdir -p /usr/local/lib/dockyard
    [ -e "$installed" ] && chattr -i "$installed" 2>/dev/null || true
    install -m 0755 "$built" "$installed.new" && mv -f "$installed.new" "$installed"
  fi
  chattr +i "$installed" 2>/dev/null || echo "warning: cannot make $installed immutable on this filesystem" >&2
  rm -f "$built" "$front.new"
  ln -s "$installed" "$front.new"
else
  rm -f "$front.new"
  cp "$launcher" "$front.new"
fi
mv -T -f "$front.new" "$front"  # a running container manager never finds it missing
"$here/.venv/bin/python" -m compileall -q "$here/src" >/dev/null
for s in dockyard dockyardd dockyard-runtime; do
  ln -sf "$here/.venv/bin/$s" "/usr/local/bin/$s"
done
echo "dockyard installed: $("$here/.venv/bin/dockyard-runtime" --version | head -1)"
