#!/usr/bin/env bash
# Qdrant TTL sweep benchmark (see scripts/bench/qdrant_bench.py): the janitor's bounded,
# indexed batches vs one direct filtered delete, on identical collections of a private
# Qdrant test server (Qdrant's engine). Uses the test server's venv (qdrant-client).
# Usage: scripts/bench/qdrant.sh [--points N]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
scripts/services.sh install >/dev/null
bench_setup
# the bench starts its own server: only the venv `services.sh install` made is needed
QDRANT_PYTHON=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}/qdrant-venv/bin/python
exec "$QDRANT_PYTHON" scripts/bench/qdrant_bench.py "$@"
