#!/usr/bin/env bash
# Health-check latency of a busy coordinator: a real `ablate serve` on loopback, probed
# idle (the reference, measured in the same run), during a 10,000-run submit, and while
# more HTML reports of it render at once than the coordinator has async threads.
#   bench/health_latency.sh [--profile release|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=$2; shift 2;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
[ -f deploy/env.sh ] || bash deploy/setup.sh
source deploy/env.sh
cargo build --profile "$PROFILE" -q -p ablate-coordinator -p ablate-tests --bin health-latency
BIN="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
ABLATE_BIN_DIR="$BIN" "$BIN/health-latency"
