#!/usr/bin/env bash
# Dedup hashing benchmark (see scripts/bench/dedup_bench.py): a 1 GiB upload through
# POST /api/dedup/check vs sha256sum vs the seed's in-memory hashlib; MongoDB from
# scripts/services.sh. Usage: scripts/bench/dedup.sh [--mib 1024]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
scripts/services.sh up
command -v curl >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q curl >/dev/null; }
bench_setup
MONGODB_URI=$(grep '^MONGODB_URI=' .services/services.env | cut -d= -f2-)
exec "$BENCH_PYTHON" scripts/bench/dedup_bench.py --mongodb-uri "$MONGODB_URI" "$@"
