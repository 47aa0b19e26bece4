#!/usr/bin/env bash
# Training throughput, ours vs PyTorch on the same architectures, side by side:
#   bench/compare_pytorch.sh [--threads T] [--device cpu|cuda:0] [--steps N] [--batch B]
#                            [--rounds R] [--rows "model:size ..."]
# Each row is measured R times per side, the two sides alternating (and swapping which goes
# first every round) so that both see the same machine noise; the table prints the median
# images/s of each side, the ratio of the medians, and the spread of the per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2; DEVICE=cpu; STEPS=20; BATCH=32; ROUNDS=5
ROWS="cnn_alltricks:32 cnn_alltricks:64 cnn_baseline:64 alexnet:224 lenet:224 googlenet:64 resnet18:64"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2;;
    --device) DEVICE=$2; shift 2;;
    --steps) STEPS=$2; shift 2;;
    --batch) BATCH=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --rows) ROWS=$2; shift 2;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
[ -f deploy/env.sh ] || bash deploy/setup.sh
source deploy/env.sh
FEATURES=""
[[ "$DEVICE" == cuda* ]] && FEATURES="--features cuda"
cargo build --release -q -p ablate-worker $FEATURES
WORKER="$CARGO_TARGET_DIR/release/ablate-worker"
SAMPLES=$(mktemp)
trap 'rm -f "$SAMPLES"' EXIT

ours() {
  "$WORKER" bench "$@" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])'
}
theirs() {
  ABLATE_WORKER="$WORKER" python3 bench/pytorch_train.py "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])'
}

echo "threads $THREADS, device $DEVICE, batch $BATCH, $STEPS timed steps, $ROUNDS rounds per side (median)"
printf '%-16s %6s %12s %12s %8s %15s\n' model size "ours img/s" "torch img/s" ratio "round ratios"
for row in $ROWS; do
  model=${row%%:*}; size=${row##*:}
  flags=(--model "$model" --image-size "$size" --batch "$BATCH" --steps "$STEPS" --threads "$THREADS" --device "$DEVICE" --json)
  : > "$SAMPLES"
  for round in $(seq 1 "$ROUNDS"); do
    if (( round % 2 )); then
      o=$(ours "${flags[@]}"); t=$(theirs "${flags[@]}")
    else
      t=$(theirs "${flags[@]}"); o=$(ours "${flags[@]}")
    fi
    echo "$o $t" >> "$SAMPLES"
  done
  python3 - "$model" "$size" "$SAMPLES" <<'PY'
import statistics, sys
model, size, path = sys.argv[1], sys.argv[2], sys.argv[3]
pairs = [tuple(map(float, line.split())) for line in open(path) if line.strip()]
ours = statistics.median(o for o, _ in pairs)
torch = statistics.median(t for _, t in pairs)
ratios = sorted(o / t for o, t in pairs)
spread = f"{ratios[0]:.2f}..{ratios[-1]:.2f}"
print(f"{model:<16} {size:>6} {ours:>12.1f} {torch:>12.1f} {ours / torch:>8.2f} {spread:>15}")
PY
done
