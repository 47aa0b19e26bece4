#!/usr/bin/env bash
# The seed study through `ablate run`, cut to a few steps an epoch, on the CPU:
#   bench/seed_study_cut.sh [--epochs 2] [--images 64] [--keep DIR] [--bin-dir DIR]
# Makes a list-file dataset in the seed's layout (16 classes, `Train.txt`/`Eval.txt`/
# `Test.txt` with `Images/<class>/…jpg` lines, random 256×256 JPEGs), points
# grids/seed-study.toml at it with the epochs cut and `gpus = 0`, runs every model at
# 224×224 with default settings (lease TTL, stall timeout, attempts), and prints one row a
# run: parameters, state, attempts, wall time. It fails unless every run finished on
# its first attempt.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=2; IMAGES=64; KEEP=""; BIN_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) EPOCHS=$2; shift 2;;
    --images) IMAGES=$2; shift 2;;
    --keep) KEEP=$2; shift 2;;
    --bin-dir) BIN_DIR=$2; shift 2;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
if [ -z "$BIN_DIR" ]; then
  [ -f deploy/env.sh ] || bash deploy/setup.sh
  source deploy/env.sh
  cargo build --release -q -p ablate-coordinator -p ablate-worker --features ablate-worker/cuda
  BIN_DIR="$CARGO_TARGET_DIR/release"
else
  [ -f deploy/env.sh ] && source deploy/env.sh
fi
WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
[ -n "$KEEP" ] || trap 'rm -rf "$WORK"' EXIT

python3 bench/make_listfile.py "$WORK/data" --classes 16 --split "Train=$IMAGES" --split Eval=32 \
  --split Test=32

# The study as shipped, with three keys changed: where the data is, how many epochs, and
# no GPU. Everything else (models, 224×224, batch 32, optimizer, lr schedule, defaults)
# stays as the grid file says.
python3 - grids/seed-study.toml "$WORK/seed-study-cut.toml" "$WORK/data" "$EPOCHS" <<'PY'
import re, sys
src, dst, root, epochs = sys.argv[1:]
text = open(src).read()
for pattern, value in ((r'(?m)^root = .*$', f'root = "{root}"'),
                       (r'(?m)^epochs = .*$', f'epochs = {epochs}'),
                       (r'(?m)^gpus = .*$', 'gpus = 0'),
                       (r'(?m)^name = "seed-study"$', 'name = "seed-study-cut"')):
    text, n = re.subn(pattern, value, text, count=1)
    assert n == 1, f"grids/seed-study.toml has no line matching {pattern}"
# The lr decay boundaries are epochs of the 60-epoch study: scale them to the cut length.
def scale(m):
    bounds = []
    for b in m.group(1).split(","):
        bounds.append(max(int(b) * int(epochs) // 60, bounds[-1] + 1 if bounds else 1))
    return "boundaries = [" + ", ".join(str(b) for b in bounds) + "]"
text = re.sub(r'boundaries = \[([0-9, ]+)\]', scale, text)
open(dst, "w").write(text)
PY

cd "$WORK"
STARTED=$(date +%s)
"$BIN_DIR/ablate" run seed-study-cut.toml --data-dir "$WORK/ablate-data" > run.log 2>&1 || {
  tail -30 run.log >&2; echo "seed_study_cut: ablate run failed" >&2; exit 1; }
WALL=$(( $(date +%s) - STARTED ))
REPORT=$(ls "$WORK"/ablate-data/reports/*/report.json | head -1)
python3 - "$REPORT" "$WALL" "$EPOCHS" "$IMAGES" <<'PY'
import json, sys
report, wall, epochs, images = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
runs = json.load(open(report))["runs"]
print(f"grids/seed-study.toml cut to {epochs} epochs of {images} images ({images // 32} steps), "
      f"224x224 RGB, batch 32, on the CPU with default settings: {len(runs)} runs in {wall} s")
print()
print("| run | model | params | state | attempts | wall s |")
print("|---|---|---:|---|---:|---:|")
bad = []
for r in runs:
    params = r.get("params") or 0
    print(f"| {r['name']} | {r['model']} | {params / 1e6:.1f} M | {r['state']} | "
          f"{r['attempts']} | {r.get('wall_s') or 0:.0f} |")
    if r["state"] != "finished" or r["attempts"] != 1:
        bad.append(r["name"])
print()
if bad:
    print(f"NOT on the first attempt: {', '.join(bad)}")
    sys.exit(1)
print("every run finished on its first attempt")
PY
