#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, end-to-end with the real binaries),
# after making sure the set-up is done. The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
ABLATE_SKIP_BUILD=1 bash deploy/setup.sh
# The report's screenshot test needs a headless browser (it skips, saying so, without one).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "chromium not installed: the report screenshot test will be skipped"
fi
source deploy/env.sh
# The end-to-end tests start the real binaries: build them first (debug profile).
cargo build -q -p ablate-coordinator -p ablate-worker
export ABLATE_BIN_DIR="$CARGO_TARGET_DIR/debug"
cargo test --workspace -- --test-threads=2 "$@"
