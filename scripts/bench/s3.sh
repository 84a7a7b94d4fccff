#!/usr/bin/env bash
# S3 orphan sweep benchmark (see scripts/bench/s3_bench.py): janitor vs the DeleteObjects
# floor vs rclone on identical buckets of a private Garage; MongoDB from scripts/services.sh.
# Usage: scripts/bench/s3.sh [--objects N]
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}
VENV=$CACHE/bench-venv
scripts/services.sh up
command -v rclone >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q rclone >/dev/null; }
[ -x /usr/bin/time ] || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q time >/dev/null; }
if [ ! -x "$VENV/bin/python" ] || ! cmp -s scripts/bench/requirements.txt "$VENV/.requirements"; then
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/bench/requirements.txt
  cp scripts/bench/requirements.txt "$VENV/.requirements"
fi
cargo build --release --quiet
MONGODB_URI=$(grep '^MONGODB_URI=' .services/services.env | cut -d= -f2-)
exec "$VENV/bin/python" scripts/bench/s3_bench.py --mongodb-uri "$MONGODB_URI" "$@"
