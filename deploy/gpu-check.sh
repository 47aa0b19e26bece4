#!/usr/bin/env bash
# The GPU check: one command on a machine with a GPU, using binaries built elsewhere.
#
#   deploy/gpu-check.sh --prepare   # here (no GPU needed): build ablate-worker with the
#                                   # `cuda` feature into .gpu-bin/ (gitignored), with a
#                                   # small Fashion-MNIST subset; then carry .gpu-bin over
#   deploy/gpu-check.sh             # on the GPU machine (no cargo, no network)
#   deploy/gpu-check.sh --dry-run   # every stage that needs no GPU, then says so
#
# On the GPU machine it checks, in order, failing loudly at the first missing prerequisite:
# glibc (the binary's newest GLIBC_ symbol against the machine's), torch 2.11 in
# $TORCH_VENV (default /opt/torch/.venv), library resolution (`ldd`, no "not found"), the
# GPU; then trains a small run on cuda:0 in fp32 and in bf16 (asserting the dtype the
# engine reports and a finite, better-than-chance result), runs NCCL with a world of one
# (init, all-reduce, forced abort, destroy), and times our training step against
# PyTorch's on the same GPU; last, bench/seed_scale.sh runs VGG-16 at 224x224 through a
# coordinator and worker on loopback (GPU_CHECK_SEED_SCALE=0 skips it). It ends with tables.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BIN_DIR="$REPO/.gpu-bin"
MODE=check
case "${1:-}" in
  "") ;;
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry-run ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

# --- prepare (on the build machine) ---------------------------------------------------
if [ "$MODE" = prepare ]; then
  [ -f deploy/env.sh ] || { echo "gpu-check: run deploy/setup.sh first" >&2; exit 1; }
  # shellcheck source=/dev/null
  source deploy/env.sh
  PROFILE="${GPU_CHECK_PROFILE:-release}"
  # The same build as deploy/setup.sh's, so that a set-up machine rebuilds nothing.
  echo "== cargo build --profile $PROFILE -p ablate-coordinator -p ablate-worker --features ablate-worker/cuda"
  cargo build -q --profile "$PROFILE" -p ablate-coordinator -p ablate-worker --features ablate-worker/cuda
  case "$PROFILE" in dev|test) sub=debug ;; *) sub="$PROFILE" ;; esac
  rm -rf "$BIN_DIR" && mkdir -p "$BIN_DIR/fashion-mnist"
  for b in ablate-worker ablate; do
    strip --strip-debug -o "$BIN_DIR/$b" "$CARGO_TARGET_DIR/$sub/$b"
  done
  # bench/seed_scale.sh measures peak RSS with GNU time, which a GPU image may lack.
  [ -x /usr/bin/time ] && cp /usr/bin/time "$BIN_DIR/time"
  # A subset of Fashion-MNIST (the GPU machine may not have Debian's package).
  python3 - "$BIN_DIR/fashion-mnist" <<'PY'
import gzip, struct, sys
src, dst = "/usr/share/datasets/fashion-mnist", sys.argv[1]
for name, n in [("train-images-idx3-ubyte", 8192), ("train-labels-idx1-ubyte", 8192),
                ("t10k-images-idx3-ubyte", 2048), ("t10k-labels-idx1-ubyte", 2048)]:
    data = gzip.open(f"{src}/{name}.gz").read()
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    item = 1
    for d in shape[1:]:
        item *= d
    head = data[:4] + struct.pack(f">{dims}I", n, *shape[1:])
    body = data[4 + 4 * dims:4 + 4 * dims + n * item]
    with gzip.open(f"{dst}/{name}.gz", "wb") as f:
        f.write(head + body)
PY
  {
    echo "revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +changes)"
    echo "built $(date -u +%FT%TZ) on $(ldd --version | head -1)"
    echo "features cuda; profile $PROFILE"
  } > "$BIN_DIR/BUILD"
  du -sh "$BIN_DIR"
  echo "gpu-check: ready; carry .gpu-bin to the GPU machine and run deploy/gpu-check.sh there"
  exit 0
fi

# --- the check ------------------------------------------------------------------------
RESULTS=()          # "stage|result|detail", printed as the table at the end
row() { RESULTS+=("$1|$2|$3"); printf '  %-22s %-5s %s\n' "$1" "$2" "$3"; }
table() {
  echo
  echo "== gpu-check summary ($(cat "$BIN_DIR/BUILD" 2>/dev/null | head -1))"
  printf '%-22s %-5s %s\n' stage result detail
  printf '%-22s %-5s %s\n' ---------------------- ----- ------
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r s res d <<<"$r"
    printf '%-22s %-5s %s\n' "$s" "$res" "$d"
  done
}
die() { row "$1" FAIL "$2"; table; echo "gpu-check: FAILED at $1" >&2; exit 1; }
# Past the prerequisites, a failing stage is recorded and the next one still runs: a GPU
# machine is lent for minutes, so one call should say everything it can.
FAILED=()
fail() { row "$1" FAIL "$2"; FAILED+=("$1"); }

WORKER="$BIN_DIR/ablate-worker"
[ -x "$WORKER" ] || die binaries "$WORKER missing: run deploy/gpu-check.sh --prepare on the build machine and carry .gpu-bin"
row binaries ok "$(head -1 "$BIN_DIR/BUILD")"

# glibc: the newest symbol version the binary needs against the machine's.
need=$(objdump -T "$WORKER" 2>/dev/null | grep -oE 'GLIBC_[0-9.]+' | sed 's/GLIBC_//' | sort -V | tail -1)
have=$(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+$' || true)
[ -n "$need" ] && [ -n "$have" ] || die glibc "cannot read the needed ($need) or installed ($have) glibc version"
[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -1)" = "$have" ] ||
  die glibc "the binary needs glibc $need, this machine has $have"
row glibc ok "needs $need, has $have"

# torch 2.11 (the libtorch tch 0.24 binds to) and its libraries.
TORCH_VENV="${TORCH_VENV:-/opt/torch/.venv}"
if [ ! -d "$TORCH_VENV" ] && [ "$MODE" = dry-run ] && [ -d "$HOME/.cache/ablate/torch-2.11.0" ]; then
  TORCH_VENV="$HOME/.cache/ablate/torch-2.11.0"   # deploy/setup.sh's, on the build machine
fi
[ -x "$TORCH_VENV/bin/python3" ] || die torch "no python3 in $TORCH_VENV (set TORCH_VENV)"
PY="$TORCH_VENV/bin/python3"
SITE=$(ls -d "$TORCH_VENV"/lib/python3*/site-packages | head -1)
torch_version=$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1) ||
  die torch "import torch failed: $torch_version"
case "$torch_version" in 2.11.0*) ;; *) die torch "torch $torch_version; ablate binds libtorch 2.11.0" ;; esac
row torch ok "$torch_version in $TORCH_VENV"

# cudarc opens libnccl.so; the wheel ships libnccl.so.2 (its directory may be read-only).
NCCL_LIB="$SITE/nvidia/nccl/lib/libnccl.so.2"
[ -f "$NCCL_LIB" ] || die nccl-library "$NCCL_LIB missing"
# GPU_CHECK_WORK=DIR keeps every log (and the seed-scale run) there for a look afterwards.
if [ -n "${GPU_CHECK_WORK:-}" ]; then
  WORK=$GPU_CHECK_WORK; mkdir -p "$WORK"
else
  WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/lib" && ln -s "$NCCL_LIB" "$WORK/lib/libnccl.so"
export LD_LIBRARY_PATH="$SITE/torch/lib:$SITE/nvidia/nccl/lib:$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
row nccl-library ok "$(grep -aoE 'NCCL version [0-9.]+' "$NCCL_LIB" | head -1)"

# Library resolution.
deps=$(ldd "$WORKER" 2>&1) || die ldd "ldd failed: $deps"
if grep -q 'not found' <<<"$deps"; then
  die ldd "unresolved: $(grep 'not found' <<<"$deps" | awk '{print $1}' | tr '\n' ' ')"
fi
torch_cuda=$(awk '$1 == "libtorch_cuda.so" {print $3}' <<<"$deps")
[ -n "$torch_cuda" ] || die ldd "the binary does not load libtorch_cuda.so (CUDA would look absent)"
row ldd ok "$(grep -c '=>' <<<"$deps") libraries, libtorch_cuda from ${torch_cuda%/lib/*}"

# The dataset subset carried with the binary.
DATA="$BIN_DIR/fashion-mnist"
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || die dataset "$DATA missing: rerun --prepare"
row dataset ok "$DATA (8192 train, 2048 eval)"

# The GPU.
gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [ "$gpus" = 0 ]; then
  if [ "$MODE" = dry-run ]; then
    row gpu skip "NO GPU on this machine: dry run stops before training, NCCL and timing"
    table
    echo "gpu-check: dry run passed; there is no GPU here, so nothing ran on one"
    exit 0
  fi
  die gpu "torch sees no CUDA device (nvidia-smi: $(nvidia-smi -L 2>&1 | head -1))"
fi
gpu_name=$("$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}, sm_{p.major}{p.minor}, {p.total_memory >> 30} GiB")')
row gpu ok "$gpus device(s); cuda:0 = $gpu_name"
[ "$MODE" = dry-run ] && { table; echo "gpu-check: dry run passed (a GPU is here: run without --dry-run)"; exit 0; }

# Training on cuda:0, fp32 then bf16 autocast.
for amp in false true; do
  want=fp32; [ "$amp" = true ] && want=bf16
  cat > "$WORK/run-$want.toml" <<TOML
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
root = "$DATA"
train = { images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz" }
eval = { images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz" }
fit = "pad"
TOML
  log="$WORK/train-$want.log"
  if ! timeout 300 "$WORKER" train --spec "$WORK/run-$want.toml" --run-dir "$WORK/run-$want" >"$log" 2>&1; then
    tail -20 "$log" >&2; fail "train $want" "ablate-worker train failed (log above)"; continue
  fi
  got=$(grep -oE 'training computes in [a-z0-9]+' "$log" | head -1 | awk '{print $4}')
  [ "$got" = "$want" ] || { tail -20 "$log" >&2; fail "train $want" "the engine computed in '${got:-?}', expected $want"; continue; }
  summary=$("$PY" - "$WORK/run-$want/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
last = rows[-1]
ok = all(math.isfinite(r["train_loss"]) and math.isfinite(r["eval_loss"]) for r in rows)
ok = ok and last["eval_acc"] > 0.5
print(("ok" if ok else "BAD"),
      f'{len(rows)} epochs, eval acc {last["eval_acc"]:.3f}, loss {last["train_loss"]:.3f}, '
      f'{last["images_per_sec"]:.0f} img/s')
PY
)
  case "$summary" in ok*) row "train $want" ok "${summary#ok }" ;; *) fail "train $want" "${summary#BAD }" ;; esac
done

# NCCL with a world of one.
if ! out=$(timeout 120 "$WORKER" nccl-check --device cuda:0 2>&1); then
  echo "$out" >&2; fail nccl "ablate-worker nccl-check failed (output above)"
else
  while IFS= read -r line; do
    stage=${line%%:*}; row "$stage" ok "${line#*: }"
  done < <(grep '^nccl ' <<<"$out")
  for stage in init all-reduce abort destroy; do
    grep -q "^nccl $stage:" <<<"$out" || fail "nccl $stage" "stage missing from: $out"
  done
fi

# Throughput: our training step against PyTorch's, same GPU, same model, same batch.
for spec in cnn_alltricks:32:fp32 cnn_alltricks:32:bf16 resnet18:64:fp32 resnet18:64:bf16 alexnet:224:bf16; do
  IFS=: read -r model size dtype <<<"$spec"
  flags=(--model "$model" --image-size "$size" --batch 128 --steps 30 --warmup 5 --device cuda:0 --json)
  [ "$dtype" = bf16 ] && flags+=(--mixed-precision)
  ours=$(timeout 180 "$WORKER" bench "${flags[@]}" 2>"$WORK/bench.err") ||
    { tail -20 "$WORK/bench.err" >&2; fail "bench $model@$size $dtype" "ablate-worker bench failed"; continue; }
  theirs=$(ABLATE_WORKER="$WORKER" timeout 180 "$PY" bench/pytorch_train.py "${flags[@]}" 2>"$WORK/bench.err") ||
    { tail -20 "$WORK/bench.err" >&2; fail "bench $model@$size $dtype" "bench/pytorch_train.py failed"; continue; }
  line=$("$PY" - "$dtype" "$ours" "$theirs" <<'PY'
import json, sys
want, ours, theirs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
dtypes = (ours["compute_dtype"], theirs["compute_dtype"])
status = "ok" if dtypes == (want, want) else "BAD"
o, t = ours["images_per_sec"], theirs["images_per_sec"]
print(status, f"ours {o:.0f} img/s, PyTorch {t:.0f} img/s, ratio {o / t:.2f} (dtypes {dtypes[0]}/{dtypes[1]})")
PY
)
  case "$line" in ok*) row "bench $model@$size $dtype" ok "${line#ok }" ;; *) fail "bench $model@$size $dtype" "${line#BAD }" ;; esac
done

# The seed's biggest model through the cluster path on cuda:0 (issue: seed scale): a real
# coordinator and worker on loopback, VGG-16 at 224x224; its own table follows.
if [ "${GPU_CHECK_SEED_SCALE:-1}" = 1 ]; then
  if PATH="$TORCH_VENV/bin:$PATH" timeout 400 bash bench/seed_scale.sh --bin-dir "$BIN_DIR" \
      --device cuda:0 --model vgg16 --epochs 10 --images 2048 --threads 4 --loader-threads 8 --keep "$WORK/seed-scale" >"$WORK/seed-scale.md" 2>"$WORK/seed-scale.err"; then
    row "seed scale vgg16" ok "$(head -1 "$WORK/seed-scale.md" | sed 's/.*; run /run /')"
  else
    tail -20 "$WORK/seed-scale.err" >&2; fail "seed scale vgg16" "bench/seed_scale.sh failed (log above)"
  fi
fi

table
if [ -s "$WORK/seed-scale.md" ]; then
  echo
  echo "== seed scale on cuda:0 (bench/seed_scale.sh)"
  cat "$WORK/seed-scale.md"
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "gpu-check: FAILED: ${FAILED[*]}" >&2
  exit 1
fi
echo "gpu-check: all stages passed"
