#!/usr/bin/env bash
# Admin API load benchmark (see scripts/bench/load_bench.py): wrk against the read
# endpoints of `janitor run` whose MongoDB is down, and a cleanup flood that must be
# refused with 429 without ever queueing more than the rate allows.
# Usage: scripts/bench/load.sh [--seconds 10] [--connections 64]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q wrk >/dev/null; }
scripts/services.sh up
bench_setup
exec "$BENCH_PYTHON" scripts/bench/load_bench.py "$@"
