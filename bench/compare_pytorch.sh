#!/usr/bin/env bash
# Training throughput, ours vs PyTorch on the same architectures, side by side:
#   bench/compare_pytorch.sh [--threads T] [--device cpu|cuda:0] [--steps N] [--batch B]
# Prints a table with images/s of both and the ratio ours/PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2; DEVICE=cpu; STEPS=10; BATCH=32
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2;;
    --device) DEVICE=$2; shift 2;;
    --steps) STEPS=$2; shift 2;;
    --batch) BATCH=$2; shift 2;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
[ -f deploy/env.sh ] || bash deploy/setup.sh
source deploy/env.sh
FEATURES=""
[[ "$DEVICE" == cuda* ]] && FEATURES="--features cuda"
cargo build --release -q -p ablate-worker $FEATURES
WORKER="$CARGO_TARGET_DIR/release/ablate-worker"
ROWS="cnn_alltricks:32 cnn_alltricks:64 cnn_baseline:64 alexnet:224 lenet:224 googlenet:64 resnet18:64"
printf '%-16s %6s %6s %14s %14s %8s\n' model size batch "ours img/s" "torch img/s" ratio
for row in $ROWS; do
  model=${row%%:*}; size=${row##*:}
  flags=(--model "$model" --image-size "$size" --batch "$BATCH" --steps "$STEPS" --threads "$THREADS" --device "$DEVICE" --json)
  ours=$("$WORKER" bench "${flags[@]}" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])')
  torch=$(ABLATE_WORKER="$WORKER" python3 bench/pytorch_train.py "${flags[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])')
  python3 - "$model" "$size" "$BATCH" "$ours" "$torch" <<'PY'
import sys
m, s, b, o, t = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
print(f"{m:<16} {s:>6} {b:>6} {o:>14.1f} {t:>14.1f} {o / t:>8.2f}")
PY
done
