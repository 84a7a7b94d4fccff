#!/usr/bin/env bash
# History benchmark (see scripts/bench/history_bench.py): a year of 30-minute measurements
# for 4 stores plus 100k runs; the file's size, the 30 d report's and the page's response
# times, and the daemon's RSS with an empty and with the full history.
# Usage: scripts/bench/history.sh [--runs 100000]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
bench_setup
exec "$BENCH_PYTHON" scripts/bench/history_bench.py "$@"
