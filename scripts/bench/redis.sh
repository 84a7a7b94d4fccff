#!/usr/bin/env bash
# Redis sweep benchmark (see scripts/bench/redis_bench.py): janitor vs redis-cli | xargs
# unlink vs seed 003's algorithm, on identical data sets, printed as a table.
# Usage: scripts/bench/redis.sh [--keys N] [--skip-seed-algorithm]
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}
VENV=$CACHE/bench-venv
command -v redis-server >/dev/null || scripts/services.sh install
[ -x /usr/bin/time ] || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q time >/dev/null; }
if [ ! -x "$VENV/bin/python" ] || ! cmp -s scripts/bench/requirements.txt "$VENV/.requirements"; then
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/bench/requirements.txt
  cp scripts/bench/requirements.txt "$VENV/.requirements"
fi
cargo build --release --quiet
exec "$VENV/bin/python" scripts/bench/redis_bench.py "$@"
