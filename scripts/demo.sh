#!/usr/bin/env bash
# The janitor's first run: local servers, a small demo application in them, and the daemon
# cleaning it up within a minute.
#
#   1. scripts/services.sh up: redis-server, Garage (S3), secantusd-rs (MongoDB) and the
#      Qdrant test server (installed the first time: about 20 minutes on 2 cores)
#   2. cargo build --release
#   3. scripts/demo_seed.py: when the servers are empty, a demo application (database
#      janitor_demo, objects under demo/, collection demo_chunks, keys demo:*) with garbage of
#      every kind beside live data; servers that hold data are left alone
#   4. writes .services/demo.env (the servers, then the demo settings set below), prints the
#      status page's URL and runs `janitor run` with it
#
# Usage: scripts/demo.sh [--no-build]
#   --no-build   use target/release/janitor as it is
# Environment: JANITOR_ADMIN_ADDR (default 127.0.0.1:8089, or a free port when that one is
# taken), JANITOR_SERVICES_DIR and JANITOR_CACHE_DIR as for scripts/services.sh.
# To see it from the start again: scripts/services.sh down && scripts/demo.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${JANITOR_SERVICES_DIR:-$REPO/.services}
CACHE=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}
VENV=$CACHE/bench-venv
REQUIREMENTS=$REPO/scripts/bench/requirements.txt
export PATH="$HOME/.cargo/bin:$PATH"
cd "$REPO"

say() { printf '[demo] %s\n' "$*" >&2; }

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown option: $arg (see --help)"; exit 2 ;;
  esac
done

# 1. the servers
scripts/services.sh up

# 2. the janitor
if [ "$BUILD" = 1 ]; then
  say "cargo build --release (the first time: several minutes)"
  cargo build --release --quiet
fi
[ -x target/release/janitor ] || { say "target/release/janitor is missing: run without --no-build"; exit 1; }

# 3. the demo application, in the venv the benchmarks use (redis, boto3, pymongo,
#    qdrant-client; the same stamp as scripts/bench/lib.sh, so they share it)
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.requirements"; then
  say "python venv: pip install -r scripts/bench/requirements.txt"
  rm -rf "$VENV"; mkdir -p "$CACHE"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/.requirements"
fi
"$VENV/bin/python" scripts/demo_seed.py --env "$STATE/services.env"

# 4. the demo settings
port_free() { ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
ADDR=${JANITOR_ADMIN_ADDR:-127.0.0.1:8089}
if [ -z "${JANITOR_ADMIN_ADDR:-}" ] && ! port_free 127.0.0.1 8089; then
  ADDR=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  say "127.0.0.1:8089 is taken: the admin API listens on $ADDR"
fi
DEMO_ENV=$STATE/demo.env
{
  echo "# Written by scripts/demo.sh: the servers of services.env, then the demo's settings."
  grep -v '^MONGODB_DATABASE=' "$STATE/services.env"
  cat <<EOF

# --- the demo application (scripts/demo_seed.py) ---
MONGODB_DATABASE=janitor_demo
JANITOR_S3_PREFIXES=demo/
JANITOR_QDRANT_COLLECTIONS=demo_chunks=30d
JANITOR_QDRANT_TIMESTAMP_FIELD=created_at
# unreferenced files go once 30 s old: the seeder cannot backdate LastModified, so the TTL
# and the grace for in-flight uploads are cut below their 1 h floor (demo only)
JANITOR_ALLOW_SHORT_TTL=true
FILES_TTL_DAYS=0.000347
JANITOR_S3_GRACE_HOURS=0.00833
# cache answers idle for an hour go; document segments without a TTL get one; pinned keys
# are never touched
JANITOR_REDIS_POLICIES=demo:cache:*=delete_idle:1h;demo:doc_segments:*=expire:24h
JANITOR_REDIS_PROTECT=demo:cache:pinned:*
# vectors whose document is gone go too (past the 1 h grace)
JANITOR_QDRANT_ORPHAN_FIELD=document_id
# documents expire after 14 days with their file, vectors and cache keys, unless in flight
# or held by a chat session active within those 14 days
JANITOR_DOCUMENTS_EXPIRE=true
JANITOR_DOCUMENTS_TTL_DAYS=14
JANITOR_DOCUMENTS_REDIS_KEYS=demo:doc_segments:{document_id}*

# --- a fast pace, so every sweep runs within the first minute ---
REDIS_CLEANUP_INTERVAL_SECONDS=30
QDRANT_CLEANUP_INTERVAL_SECONDS=30
MINIO_CLEANUP_INTERVAL_SECONDS=15
JANITOR_DOCUMENTS_INTERVAL_SECONDS=60
RESOURCE_MONITORING_INTERVAL_SECONDS=10

JANITOR_AUDIT_LOG=$STATE/demo-audit.jsonl
JANITOR_ADMIN_ADDR=$ADDR
JANITOR_LOG_FORMAT=text
EOF
} >"$DEMO_ENV"

target/release/janitor --env-file "$DEMO_ENV" config show >/dev/null
cat >&2 <<EOF
[demo] settings: $DEMO_ENV; audit log: $STATE/demo-audit.jsonl
[demo]
[demo]   status page:  http://$ADDR/
[demo]   past runs:    curl -s http://$ADDR/api/resources/runs
[demo]
[demo] starting the janitor (Ctrl-C stops it)
EOF
exec target/release/janitor --env-file "$DEMO_ENV" run
