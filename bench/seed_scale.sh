#!/usr/bin/env bash
# The seed's biggest model through the cluster path, on the CPU:
#   bench/seed_scale.sh [--model vgg16] [--epochs 3] [--images 64] [--threads 2] [--device cpu]
#                       [--lease-ttl 15s] [--profile release|dev] [--keep DIR] [--bin-dir DIR]
#                       [--loader-threads 1]
# A real coordinator (`ablate serve`) and worker (`ablate-worker`) on loopback train MODEL at
# 224×224 (batch 32, Momentum lr 0.001) on a generated list-file dataset in the seed's layout
# (`labels/Train.txt`, `Images/<class>/…jpg`; IMAGES training images, so a few steps an
# epoch), with the default lease TTL. Prints per epoch: train s, eval s, checkpoint save s
# (how long training waited for checkpointing, and its share of the epoch), the background
# upload's s, and the checkpoint's size; then the peak RSS of the worker and the coordinator,
# and beside them the peak RSS of the same training step in `ablate-worker bench` and in
# PyTorch (bench/pytorch_train.py), measured in the same run with /usr/bin/time -v.
# --bin-dir uses prebuilt `ablate` and `ablate-worker` (and a `time` binary, if there is one)
# from DIR instead of building; deploy/gpu-check.sh runs it that way on a GPU machine, where
# `python3` (with torch, numpy and pillow) and the library path come from the caller.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=vgg16; EPOCHS=3; IMAGES=64; THREADS=2; DEVICE=cpu; LEASE_TTL=15s; KEEP=""; PROFILE=release
BIN_DIR=""; LOADER_THREADS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2;;
    --epochs) EPOCHS=$2; shift 2;;
    --images) IMAGES=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --device) DEVICE=$2; shift 2;;
    --lease-ttl) LEASE_TTL=$2; shift 2;;
    --keep) KEEP=$2; shift 2;;
    --profile) PROFILE=$2; shift 2;;
    --bin-dir) BIN_DIR=$2; shift 2;;
    --loader-threads) LOADER_THREADS=$2; shift 2;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
TIME=/usr/bin/time
[ -n "$BIN_DIR" ] && [ -x "$BIN_DIR/time" ] && TIME="$BIN_DIR/time"
[ -x "$TIME" ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
if [ -n "$BIN_DIR" ]; then
  BIN=$(cd "$BIN_DIR" && pwd)
  PROFILE="prebuilt ($BIN_DIR)"
else
  [ -f deploy/env.sh ] || bash deploy/setup.sh
  source deploy/env.sh
  # The features of deploy/setup.sh's build, so that nothing is rebuilt back and forth.
  cargo build --profile "$PROFILE" -q -p ablate-coordinator -p ablate-worker --features ablate-worker/cuda
  BIN="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
fi
WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
[ -n "$KEEP" ] || trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# The data set: random JPEGs in the seed's layout, 4 classes, 256×256.
python3 bench/make_listfile.py "$WORK/data" --classes 4 --split "Train=$IMAGES" --split Eval=32 \
  --lists labels

GPUS=0; [[ "$DEVICE" == cuda* ]] && GPUS=1   # a CUDA worker offers no CPU device
cat > "$WORK/grid.toml" <<EOF
name = "seed-scale"
[base]
model = "$MODEL"
image_size = 224
channels = 3
classes = 4
epochs = $EPOCHS
batch_size = 32
optimizer = "momentum"
momentum = 0.9
lr = 0.001
max_attempts = 1
gpus = $GPUS
[base.dataset]
format = "listfile"
root = "$WORK/data"
train = "labels/Train.txt"
eval = "labels/Eval.txt"
fit = "resize"
loader_threads = $LOADER_THREADS
EOF

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Two credentials, as `ablate serve` requires: the CLI holds the user token, the worker the
# worker token.
unset ABLATE_TOKEN
export ABLATE_USER_TOKEN="seed-scale-user-$$" ABLATE_WORKER_TOKEN="seed-scale-worker-$$"
export ABLATE_COORDINATOR="http://127.0.0.1:$PORT"
"$TIME" -v -o "$WORK/coordinator.time" "$BIN/ablate" serve --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/coordinator" --lease-ttl "$LEASE_TTL" > "$WORK/coordinator.log" 2>&1 &
COORD=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
WORKER_DEVICES=cpu; [[ "$DEVICE" == cuda* ]] && WORKER_DEVICES=$DEVICE
"$TIME" -v -o "$WORK/worker.time" "$BIN/ablate-worker" --coordinator "$ABLATE_COORDINATOR" \
  --devices "$WORKER_DEVICES" --threads "$THREADS" --name bench --work-dir "$WORK/worker" --data-root "$WORK/data" \
  > "$WORK/worker.log" 2>&1 &
WORKER=$!
"$BIN/ablate" submit "$WORK/grid.toml" > /dev/null
STARTED=$(date +%s)
while :; do
  STATE=$("$BIN/ablate" report seed-scale --format json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["state"])')
  case "$STATE" in finished|failed|cancelled) break;; esac
  sleep 2
done
WALL=$(( $(date +%s) - STARTED ))
"$BIN/ablate" report seed-scale --format json > "$WORK/report.json"
# SIGTERM the processes /usr/bin/time runs (time itself must live to write its report).
pkill -TERM -P "$WORKER" || true; wait "$WORKER" || true
pkill -TERM -P "$COORD" || true; wait "$COORD" || true

# The same training step alone, ours and PyTorch's (2 timed steps after 1 warm-up).
STEP_FLAGS=(--model "$MODEL" --image-size 224 --batch 32 --steps 2 --threads "$THREADS" --device "$DEVICE" --json)
step() {  # NAME COMMAND...: one timed step, its output kept for the error message
  local name=$1; shift
  "$TIME" -v -o "$WORK/$name.time" "$@" > "$WORK/$name.log" 2>&1 || {
    tail -20 "$WORK/$name.log" >&2; echo "seed_scale: $name failed: $*" >&2; exit 1; }
}
step ours-step "$BIN/ablate-worker" bench "${STEP_FLAGS[@]}" --warmup 1
step torch-step env ABLATE_WORKER="$BIN/ablate-worker" "$(command -v python3)" \
  bench/pytorch_train.py "${STEP_FLAGS[@]}" --warmup 1

python3 - "$WORK" "$STATE" "$WALL" "$MODEL" "$EPOCHS" "$IMAGES" "$THREADS" "$DEVICE" "$PROFILE" "$LEASE_TTL" <<'EOF'
import re, sys
work, state, wall, model, epochs, images, threads, device, profile, ttl = sys.argv[1:]
log = open(f"{work}/worker.log").read()
ansi = re.compile(r"\x1b\[[0-9;]*m")
log = ansi.sub("", log)
def rss_gb(name):
    text = open(f"{work}/{name}.time").read()
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return kb / 1024 / 1024
timings = {int(m[0]): m[1:] for m in re.findall(
    r"epoch (\d+) timings: train ([\d.]+) s, eval ([\d.]+) s, checkpoint save ([\d.]+) s, checkpoint (\d+) bytes", log)}
for m in re.findall(r"epoch (\d+) timings: train ([\d.]+) s, eval ([\d.]+) s, no checkpoint \(paced\)", log):
    timings[int(m[0])] = (m[1], m[2], None, None)
uploads = {int(m[0]): (int(m[1]), float(m[2])) for m in re.findall(
    r"uploaded checkpoint of epoch (\d+): (\d+) bytes in ([\d.]+) s", log)}
superseded = {int(m) for m in re.findall(r"checkpoint of epoch (\d+) superseded", log)}
import json
attempt = json.load(open(f"{work}/report.json"))["runs"][0]["attempts"]
print(f"{model} 224x224, batch 32, {images} train + 32 eval images ({int(images)//32} steps an epoch), "
      f"{threads} threads, {device}, {profile} build, lease TTL {ttl}; run {state} on attempt {attempt} in {wall} s")
print()
print("| epoch | train s | eval s | checkpoint save s (training waits) | share of epoch | upload s (background) | checkpoint |")
print("|---:|---:|---:|---:|---:|---:|---:|")
waited = run_total = 0.0
for e in sorted(timings):
    train, ev, save, size = timings[e]
    total = float(train) + float(ev) + float(save or 0)
    waited += float(save or 0)
    run_total += total
    if save is None:
        print(f"| {e} | {float(train):.1f} | {float(ev):.1f} | – (paced: not due) | 0.0 % | – | – |")
        continue
    up = uploads.get(e)
    up_s = (f"{up[1]:.1f}" if up else "– (run done)" if e == int(epochs)
            else "– (superseded)" if e in superseded else "–")
    print(f"| {e} | {float(train):.1f} | {float(ev):.1f} | {float(save):.2f} | {100*float(save)/total:.1f} % | {up_s} | {int(size)/1e9:.2f} GB |")
if run_total:
    print(f"| all | | | {waited:.2f} | {100*waited/run_total:.1f} % | | |")
print()
worker, coord = rss_gb("worker"), rss_gb("coordinator")
ours, torch = rss_gb("ours-step"), rss_gb("torch-step")
print("| peak RSS | GB | vs PyTorch step |")
print("|---|---:|---:|")
print(f"| worker, whole run (train, eval, checkpoints, upload) | {worker:.2f} | {worker/torch:.2f}x |")
print(f"| coordinator (receives and stores the checkpoints) | {coord:.2f} | |")
print(f"| training step alone, ablate-worker bench | {ours:.2f} | {ours/torch:.2f}x |")
print(f"| training step alone, PyTorch | {torch:.2f} | 1.00x |")
EOF
