#!/usr/bin/env bash
# Document lifecycle benchmark (see scripts/bench/documents_bench.py): the janitor's full
# cascade vs a reproduction of the seed's per-document loop, on identical data in the
# servers of scripts/services.sh.
# Usage: scripts/bench/documents.sh [--documents N] [--batch-size N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
scripts/services.sh up
bench_setup
exec "$BENCH_PYTHON" scripts/bench/documents_bench.py --env .services/services.env "$@"
