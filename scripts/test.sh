#!/usr/bin/env bash
# The test command: starts the real test servers (installing what is missing), then runs
# every test (unit tests and the integration tests against the servers).
# Set JANITOR_REQUIRE_SERVICES=1 to make a missing server fail the tests instead of
# skipping them (CI does). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh up
cargo test --all-targets "$@"
