#!/bin/sh
# Runs the whole test suite (unit, integration, acceptance), after installing what it needs.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
sh "$here/scripts/setup.sh"
cd "$here"
exec "$here/.venv/bin/python" -m pytest -p no:cacheprovider "$@"
