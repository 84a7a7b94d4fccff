#!/usr/bin/env bash
# Redis sweep benchmark (see scripts/bench/redis_bench.py): janitor vs redis-cli | xargs
# unlink vs seed 003's algorithm, on identical data sets, printed as a table.
# Usage: scripts/bench/redis.sh [--keys N] [--rounds R] [--skip-seed-algorithm] [--paced OPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
command -v redis-server >/dev/null || scripts/services.sh install
bench_setup
exec "$BENCH_PYTHON" scripts/bench/redis_bench.py "$@"
