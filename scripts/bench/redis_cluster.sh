#!/usr/bin/env bash
# Redis Cluster sweep benchmark (see scripts/bench/redis_cluster_bench.py): the same keys
# swept on one primary and on a 3-primary cluster, private redis-servers.
# Usage: scripts/bench/redis_cluster.sh [--keys N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
command -v redis-server >/dev/null || scripts/services.sh install
bench_setup
exec "$BENCH_PYTHON" scripts/bench/redis_cluster_bench.py "$@"
