#!/usr/bin/env bash
# One short GPU check for a lent GPU machine (one call of the device tool):
#   builds with `cuda`, trains a small run on cuda:0 with and without bf16 autocast,
#   then prints the training-throughput table against PyTorch on the same GPU.
# On the GPU machine torch 2.11.0+cu130 lives in /opt/torch/.venv: its libtorch is used
# through LD_LIBRARY_PATH (our binaries' RUNPATH yields to it).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VENV="${TORCH_VENV:-/opt/torch/.venv}"
if [ -d "$TORCH_VENV" ]; then
  SITE=$(ls -d "$TORCH_VENV"/lib/python3*/site-packages | head -1)
  export LD_LIBRARY_PATH="$SITE/torch/lib:$SITE/nvidia/nccl/lib:${LD_LIBRARY_PATH:-}"
  export PATH="$TORCH_VENV/bin:$PATH"
fi
BIN="${ABLATE_BIN_DIR:-bin}"
if [ ! -x "$BIN/ablate-worker" ]; then
  source deploy/env.sh
  cargo build --release -q -p ablate-worker --features cuda
  BIN="$CARGO_TARGET_DIR/release"
fi
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for amp in false true; do
  cat > "$WORK/run-$amp.toml" <<TOML
model = "cnn_alltricks"
image_size = 32
channels = 1
classes = 10
epochs = 2
batch_size = 128
devices = "cuda:0"
mixed_precision = $amp
[dataset]
format = "idx"
root = "/usr/share/datasets/fashion-mnist"
train = { images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz", limit = 10000 }
eval = { images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz", limit = 2000 }
fit = "pad"
TOML
  if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "== train cuda:0 mixed_precision=$amp"
    "$BIN/ablate-worker" train --spec "$WORK/run-$amp.toml" --run-dir "$WORK/run-$amp"
  fi
done

echo "== training throughput, ours vs PyTorch on cuda:0 (batch 64)"
printf '%-16s %6s %14s %14s %8s\n' model size "ours img/s" "torch img/s" ratio
for row in cnn_alltricks:32 cnn_alltricks:64 cnn_baseline:64 alexnet:224 lenet:224 googlenet:64 resnet18:64; do
  model=${row%%:*}; size=${row##*:}
  flags=(--model "$model" --image-size "$size" --batch 64 --steps 30 --warmup 5 --device cuda:0 --json)
  ours=$("$BIN/ablate-worker" bench "${flags[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])')
  theirs=$(ABLATE_WORKER="$BIN/ablate-worker" python3 bench/pytorch_train.py "${flags[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])')
  python3 -c "import sys; o,t=float('$ours'),float('$theirs'); print(f'{\"$model\":<16} {\"$size\":>6} {o:>14.1f} {t:>14.1f} {o/t:>8.2f}')"
done
