#!/usr/bin/env bash
# S3 orphan sweep benchmark (see scripts/bench/s3_bench.py): janitor vs the DeleteObjects
# floor vs rclone on identical buckets of a private Garage; MongoDB from scripts/services.sh.
# Usage: scripts/bench/s3.sh [--objects N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
scripts/services.sh up
command -v rclone >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q rclone >/dev/null; }
bench_setup
MONGODB_URI=$(grep '^MONGODB_URI=' .services/services.env | cut -d= -f2-)
exec "$BENCH_PYTHON" scripts/bench/s3_bench.py --mongodb-uri "$MONGODB_URI" "$@"
