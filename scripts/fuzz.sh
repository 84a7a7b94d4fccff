#!/usr/bin/env bash
# Fuzz the admin API against its own OpenAPI document with schemathesis (every check):
# starts target/debug/janitor (build it first: cargo build) on the test servers with
# settings that cannot touch real data (dry run, Redis database 60, MongoDB database
# fuzz_db, S3 prefix fuzz-only/, audit log and history in a throwaway directory), fuzzes
# it once with an admin token and once without, then stops it. Exits non-zero when
# schemathesis reports a failure; its reports (JUnit, VCR cassette) stay in the printed
# directory. Cleanup/emergency (6/min) and /api/session (10/min) answer mostly 429.
#
# Usage: scripts/fuzz.sh [--examples N] [--seed N]
#   --examples N   test cases per operation and phase (default 300)
#   --seed N       schemathesis's seed, to replay a run
# Environment: JANITOR_CACHE_DIR (venv, default ~/.cache/resource-janitor),
#              JANITOR_SERVICES_DIR as for scripts/services.sh,
#              FUZZ_ADDR (default 127.0.0.1:18090)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${JANITOR_SERVICES_DIR:-$REPO/.services}
CACHE=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}
VENV=$CACHE/fuzz-venv
SCHEMATHESIS=schemathesis==4.32.5
ADDR=${FUZZ_ADDR:-127.0.0.1:18090}
TOKEN=fuzz-token-0123456789
BIN=$REPO/target/debug/janitor

say() { printf '[fuzz] %s\n' "$*" >&2; }

EXAMPLES=300
SEED=()
while [ $# -gt 0 ]; do
  case "$1" in
    --examples) EXAMPLES=$2; shift 2 ;;
    --seed) SEED=(--seed "$2"); shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown option: $1 (see --help)"; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { say "no $BIN: run cargo build first"; exit 2; }

# 1. schemathesis, pinned, in its own venv
if [ "$(cat "$VENV/.version" 2>/dev/null)" != "$SCHEMATHESIS" ]; then
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$SCHEMATHESIS"
  echo "$SCHEMATHESIS" > "$VENV/.version"
fi

# 2. the test servers
"$REPO/scripts/services.sh" up

WORK=$(mktemp -d /tmp/janitor-fuzz.XXXXXX)
say "work dir: $WORK"
PID=""
stop() { [ -z "$PID" ] || { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; PID=""; }
trap stop EXIT

# start NAME [TOKEN]: the daemon in a clean environment (no stray JANITOR_* from the
# caller, no .env: it runs in $WORK/NAME), answering /readyz within 30 s.
start() {
  local dir=$WORK/$1; mkdir -p "$dir"
  (
    cd "$dir"
    exec env -i PATH="$PATH" HOME="$HOME" bash -c '
      set -a; . "$1"; set +a
      export REDIS_URL="redis://127.0.0.1:${TEST_REDIS_PORT}/60" MONGODB_DATABASE=fuzz_db \
        JANITOR_AUDIT_LOG="$PWD/audit.jsonl" JANITOR_S3_PREFIXES=fuzz-only/ \
        JANITOR_DRY_RUN=true JANITOR_ADMIN_ADDR="$2"
      [ -z "$3" ] || export JANITOR_ADMIN_TOKEN="$3"
      exec "$4" run' _ "$STATE/services.env" "$ADDR" "${2:-}" "$BIN"
  ) > "$dir/daemon.log" 2>&1 &
  PID=$!
  for _ in $(seq 150); do
    curl -sf -o /dev/null "http://$ADDR/readyz" && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.2
  done
  say "the daemon did not get ready (log: $dir/daemon.log)"; exit 1
}

# fuzz NAME [HEADER...]: every phase and check; one worker (two trip a Hypothesis
# thread-safety bug in schemathesis 4.32 on /api/dedup/check)
fuzz() {
  local name=$1; shift
  say "schemathesis, $name"
  (cd "$WORK/$name" && "$VENV/bin/schemathesis" run "http://$ADDR/api/openapi.json" \
    --url "http://$ADDR" --checks all --max-examples "$EXAMPLES" "${SEED[@]}" \
    --workers 1 --continue-on-failure --request-timeout 30 "$@" \
    --report junit,vcr --report-dir "$WORK/$name/report" | tee "$WORK/$name/schemathesis.txt")
}

# 3. with a token, then without one (read endpoints open, mutating ones 403)
failed=0
start token "$TOKEN"
fuzz token -H "Authorization: Bearer $TOKEN" || failed=1
stop
start no-token
fuzz no-token || failed=1
stop

[ "$failed" = 0 ] && say "no failures" || say "failures: see $WORK/*/schemathesis.txt"
exit "$failed"
