#!/usr/bin/env bash
# Real test servers for resource-janitor, on 127.0.0.1 only, each with its own port and data
# directory under one state directory:
#   redis-server (Debian), Garage 2.5.0 (S3), secantusd-rs (MongoDB wire protocol on
#   WiredTiger) and tests/support/qdrant_server.py (Qdrant's gRPC API on Qdrant's engine).
#
# Usage: scripts/services.sh COMMAND
#   install   install what is missing (apt packages, cargo binaries, the Qdrant venv)
#   up        install, start every server, wait until each is ready, write the env file
#   down      stop exactly the processes `up` started (by pid) and remove their data
#   status    one line per server: pid, port, running or not
#   env       print the env file (REDIS_URL, S3_*, AWS_*, MONGODB_URI, QDRANT_URL, TEST_*)
#   clock OFFSET   with `up --faketime`: shift Garage's clock (e.g. -8d, +0) so new objects
#                  get an old LastModified
#
# Options for up: --faketime   run Garage under libfaketime (see `clock`)
# Environment: JANITOR_SERVICES_DIR (state dir, default ./.services),
#              JANITOR_CACHE_DIR (venv, default ~/.cache/resource-janitor)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${JANITOR_SERVICES_DIR:-$REPO/.services}
CACHE=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}
ENV_FILE=$STATE/services.env
VENV=$CACHE/qdrant-venv
REQUIREMENTS=$REPO/tests/support/requirements.txt
GARAGE_VERSION=2.5.0
SECANTUS_VERSION=0.5.3-beta.196
LIBFAKETIME=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[services] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
  local name=$1 seconds=$2; shift 2
  local tries=$((seconds * 5))
  for ((i = 0; i < tries; i++)); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  die "$name not ready after ${seconds}s (log: $STATE/$name/)"
}

# ---------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------

install_apt() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -e "$LIBFAKETIME" ] || missing+=(faketime)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v curl >/dev/null || missing+=(curl)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  # checkers of the deployment files: promtool (the rules), systemd-analyze (the unit)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  # the status page's browser test (headless --dump-dom / --screenshot of assets/status.html)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -eq 0 ]; then say "apt packages: already installed"; return; fi
  say "apt packages: installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}

install_garage() {
  if garage --version 2>/dev/null | grep -qE "[: v]$GARAGE_VERSION( |$)"; then
    say "garage $GARAGE_VERSION: already installed"; return
  fi
  say "garage $GARAGE_VERSION: cargo install (12-15 min on 2 cores the first time)"
  cargo install garage --version "$GARAGE_VERSION" --locked --quiet
}

install_secantus() {
  if secantusd-rs --version 2>/dev/null | grep -qF "$SECANTUS_VERSION"; then
    say "secantusd-rs $SECANTUS_VERSION: already installed"; return
  fi
  say "secantusd-rs $SECANTUS_VERSION: cargo install (about 9 min on 2 cores the first time)"
  # It declares rust-version 1.98 but builds and runs on 1.95. A separate process only:
  # never a dev-dependency (GPL).
  cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version --locked --quiet
}

install_venv() {
  local stamp=$VENV/.requirements
  if [ -x "$VENV/bin/python" ] && cmp -s "$REQUIREMENTS" "$stamp"; then
    say "qdrant test server venv: already installed"; return
  fi
  say "qdrant test server venv: pip install -r tests/support/requirements.txt"
  rm -rf "$VENV"; mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$stamp"
}

cmd_install() {
  install_apt
  install_venv
  install_garage
  install_secantus
}

# ---------------------------------------------------------------------------------------
# start / stop
# ---------------------------------------------------------------------------------------

# start NAME LOGFILE COMMAND...: start a server in the background, record its pid.
start() {
  local name=$1 log=$2; shift 2
  "$@" >>"$log" 2>&1 &
  echo $! >"$STATE/$name/pid"
}

pid_alive() { [ -f "$STATE/$1/pid" ] && kill -0 "$(cat "$STATE/$1/pid")" 2>/dev/null; }

up_redis() {
  local dir=$STATE/redis port; port=$(free_port); mkdir -p "$dir"
  say "redis-server: starting on 127.0.0.1:$port"
  start redis "$dir/redis.log" redis-server --port "$port" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize no --dir "$dir" --databases 64
  wait_for redis 20 redis-cli -p "$port" ping >/dev/null 2>&1
  echo "REDIS_URL=redis://127.0.0.1:$port/0" >>"$ENV_FILE.tmp"
  echo "TEST_REDIS_PORT=$port" >>"$ENV_FILE.tmp"
}

up_garage() {
  local dir=$STATE/garage s3 rpc admin key secret token
  s3=$(free_port); rpc=$(free_port); admin=$(free_port); mkdir -p "$dir/meta" "$dir/data"
  key=GK$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$token"
EOF
  chmod 600 "$dir/garage.toml"
  local pre=()
  if [ "$FAKETIME" = 1 ]; then
    echo "+0" >"$dir/faketime"
    pre=(env LD_PRELOAD="$LIBFAKETIME" FAKETIME_TIMESTAMP_FILE="$dir/faketime" FAKETIME_NO_CACHE=1
      FAKETIME_DONT_FAKE_MONOTONIC=1)
    say "garage: starting on 127.0.0.1:$s3 under libfaketime (scripts/services.sh clock -8d)"
  else
    say "garage: starting on 127.0.0.1:$s3"
  fi
  start garage "$dir/garage.log" "${pre[@]}" env GARAGE_DEFAULT_ACCESS_KEY="$key" \
    GARAGE_DEFAULT_SECRET_KEY="$secret" GARAGE_DEFAULT_BUCKET=janitor-test RUST_LOG=warn \
    garage -c "$dir/garage.toml" server --single-node --default-bucket
  wait_for garage 30 curl -fs -o /dev/null "http://127.0.0.1:$admin/health"
  cat >>"$ENV_FILE.tmp" <<EOF
S3_ENDPOINT=http://127.0.0.1:$s3
S3_BUCKET=janitor-test
AWS_ACCESS_KEY_ID=$key
AWS_SECRET_ACCESS_KEY=$secret
AWS_REGION=garage
TEST_GARAGE_ADMIN_URL=http://127.0.0.1:$admin
TEST_GARAGE_ADMIN_TOKEN=$token
EOF
  [ "$FAKETIME" = 1 ] && echo "TEST_GARAGE_FAKETIME_FILE=$dir/faketime" >>"$ENV_FILE.tmp"
  return 0
}

up_mongo() {
  local dir=$STATE/mongo port; port=$(free_port); mkdir -p "$dir/db"
  say "secantusd-rs: starting on 127.0.0.1:$port"
  start mongo "$dir/secantusd.log" secantusd-rs --host 127.0.0.1 --port "$port" \
    --storage-path "$dir/db" --cache-size 256M --log-file-max 16MB --log-level WARNING
  wait_for mongo 30 port_open "$port"
  echo "MONGODB_URI=mongodb://127.0.0.1:$port/?directConnection=true" >>"$ENV_FILE.tmp"
}

up_qdrant() {
  local dir=$STATE/qdrant port; port=$(free_port); mkdir -p "$dir/storage"
  say "qdrant test server (Qdrant's engine): starting on 127.0.0.1:$port"
  start qdrant "$dir/qdrant.log" "$VENV/bin/python" "$REPO/tests/support/qdrant_server.py" \
    --host 127.0.0.1 --port "$port" --storage-path "$dir/storage"
  wait_for qdrant 60 grep -q READY "$dir/qdrant.log"
  echo "QDRANT_URL=http://127.0.0.1:$port" >>"$ENV_FILE.tmp"
}

cmd_up() {
  FAKETIME=0
  [ "${1:-}" = "--faketime" ] && FAKETIME=1
  if [ -f "$ENV_FILE" ]; then
    local running=1
    for s in redis garage mongo qdrant; do pid_alive "$s" || running=0; done
    if [ "$running" = 1 ]; then say "already up ($ENV_FILE)"; return; fi
    say "a previous run is partly down: cleaning it up first"
    cmd_down
  fi
  cmd_install
  mkdir -p "$STATE"; rm -f "$ENV_FILE.tmp"
  mkdir -p "$STATE"/{redis,garage,mongo,qdrant}
  trap 'say "start failed: stopping what was started"; cmd_down' ERR
  up_redis
  up_garage
  up_mongo
  up_qdrant
  trap - ERR
  cat >>"$ENV_FILE.tmp" <<EOF
MONGODB_DATABASE=janitor
TEST_REDIS_SERVER_BIN=$(command -v redis-server)
TEST_GARAGE_BIN=$(command -v garage)
TEST_SECANTUSD_BIN=$(command -v secantusd-rs)
TEST_QDRANT_PYTHON=$VENV/bin/python
TEST_QDRANT_SERVER=$REPO/tests/support/qdrant_server.py
TEST_LIBFAKETIME=$LIBFAKETIME
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
  say "all servers ready; env file: $ENV_FILE"
}

cmd_down() {
  [ -d "$STATE" ] || { say "nothing to stop"; return 0; }
  for s in qdrant mongo garage redis; do
    local pidfile=$STATE/$s/pid
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      say "$s: stopping pid $pid"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$STATE"
  say "stopped; data removed"
}

cmd_status() {
  for s in redis garage mongo qdrant; do
    if pid_alive "$s"; then echo "$s: running (pid $(cat "$STATE/$s/pid"))"
    else echo "$s: not running"; fi
  done
  [ -f "$ENV_FILE" ] && echo "env file: $ENV_FILE"
  return 0
}

cmd_clock() {
  local file=$STATE/garage/faketime
  [ -f "$file" ] || die "garage was not started with --faketime"
  [ -n "${1:-}" ] || die "usage: services.sh clock OFFSET (e.g. -8d, +0)"
  echo "$1" >"$file"
  say "garage clock offset: $1"
}

case "${1:-}" in
  install) cmd_install ;;
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cat "$ENV_FILE" ;;
  clock) shift; cmd_clock "$@" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
