# Shared by the benchmark scripts: `time` for peak RSS, the bench venv (redis-py, boto3,
# pymongo, pinned in requirements.txt), and the janitor's release build.
bench_setup() {
  local cache=${JANITOR_CACHE_DIR:-$HOME/.cache/resource-janitor}
  BENCH_PYTHON=$cache/bench-venv/bin/python
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  [ -x /usr/bin/time ] || $sudo apt-get install -y -q time >/dev/null
  if [ ! -x "$BENCH_PYTHON" ] || ! cmp -s scripts/bench/requirements.txt "$cache/bench-venv/.requirements"; then
    rm -rf "$cache/bench-venv"; python3 -m venv "$cache/bench-venv"
    "$cache/bench-venv/bin/pip" install -q --disable-pip-version-check -r scripts/bench/requirements.txt
    cp scripts/bench/requirements.txt "$cache/bench-venv/.requirements"
  fi
  cargo build --release --quiet
}
