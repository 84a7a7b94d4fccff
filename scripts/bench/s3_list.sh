#!/usr/bin/env bash
# S3 listing benchmark (see scripts/bench/s3_list_bench.py): the janitor's listing at list
# parallelism 1, 4 and 8 vs rclone, on one bucket of a private Garage.
# Usage: scripts/bench/s3_list.sh [--objects N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
scripts/services.sh install >/dev/null
command -v rclone >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q rclone >/dev/null; }
bench_setup
exec "$BENCH_PYTHON" scripts/bench/s3_list_bench.py "$@"
