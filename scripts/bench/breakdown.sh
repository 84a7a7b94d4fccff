#!/usr/bin/env bash
# Redis breakdown benchmark (see scripts/bench/breakdown_bench.py): `janitor report
# breakdown --resource redis` vs `redis-cli --bigkeys` and `--memkeys` on the same data.
# Usage: scripts/bench/breakdown.sh [--keys N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
command -v redis-server >/dev/null || scripts/services.sh install
bench_setup
exec "$BENCH_PYTHON" scripts/bench/breakdown_bench.py "$@"
