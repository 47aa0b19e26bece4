#!/usr/bin/env bash
# Scheduling benchmark: the real coordinator state and SQLite store, in process, on
# simulated time, with 500 simulated workers of 8 GPUs, a 10,000-run grid of 1/2/4/8-GPU
# runs (seeded durations, 5 to 60 simulated minutes) and 5 workers dying. Prints the
# table of coordinator/src/scheduling/sim.rs (submit time, placement latency p50/p99, GPU
# utilization while work is queued, longest waits, coordinator CPU, peak RSS, store size),
# then /usr/bin/time's view of the whole process when it is installed.
#
#   bench/sched_sim.sh [sched-sim flags: --workers N --runs N --dying N --seed N --data-dir DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
[ -f "$here/deploy/env.sh" ] && source "$here/deploy/env.sh"
cd "$here"
cargo build -q --release -p ablate-coordinator --bin sched-sim
bin="${CARGO_TARGET_DIR:-$here/target}/release/sched-sim"
data="$(mktemp -d "${TMPDIR:-/tmp}/ablate-sched-sim.XXXXXX")"
trap 'rm -rf "$data"' EXIT
if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$bin" --data-dir "$data/store" "$@" 2>"$data/time.txt"
    grep -E "Maximum resident set size|User time|System time|Elapsed" "$data/time.txt" | sed 's/^\s*/  /'
else
    "$bin" --data-dir "$data/store" "$@"
fi
