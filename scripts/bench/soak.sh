#!/usr/bin/env bash
# Soak (see scripts/bench/soak_bench.py): the daemon sweeping every second for --minutes
# against the test servers, its memory, descriptors and tasks sampled from /metrics.
# Usage: scripts/bench/soak.sh [--minutes 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
scripts/services.sh up
bench_setup
exec "$BENCH_PYTHON" scripts/bench/soak_bench.py "$@"
