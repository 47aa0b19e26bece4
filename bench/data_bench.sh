#!/usr/bin/env bash
# Loader benchmark: ablate's data pipeline against torchvision's ImageFolder + DataLoader,
# the same folder, image size, batch size, normalization and number of threads.
#
#   bench/data_bench.sh [THREADS] [IMAGE_SIZE] [BATCH]      (defaults: 2 224 32)
#
# Makes (once) a folder of 2,000 JPEGs, 256x256 RGB, 16 class sub-folders, from the
# Fashion-MNIST training images (Debian's dataset-fashion-mnist) upscaled and tinted per
# class, then runs `ablate-worker data-bench` and bench/torchvision_loader.py on it and
# prints both figures and the ratio ours / torchvision.
#
# Environment: ABLATE_WORKER (the ablate-worker binary; default: built here in release),
# BENCH_DIR (where the JPEG folder goes; default /tmp/ablate-data-bench),
# FASHION_MNIST (the IDX directory; default /usr/share/datasets/fashion-mnist).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads="${1:-2}"
image_size="${2:-224}"
batch="${3:-32}"
bench_dir="${BENCH_DIR:-/tmp/ablate-data-bench}"
fashion="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"

# shellcheck source=/dev/null
[ -f "$here/deploy/env.sh" ] && source "$here/deploy/env.sh"
python="${PYTHON:-python3}"

folder="$bench_dir/jpeg-2000"
if [ ! -f "$folder/.complete" ]; then
    echo "making 2,000 JPEGs (256x256, 16 classes) from $fashion in $folder" >&2
    rm -rf "$folder"
    mkdir -p "$folder"
    "$python" - "$fashion" "$folder" <<'EOF'
import gzip, os, struct, sys
import numpy as np
from PIL import Image

src, out = sys.argv[1], sys.argv[2]

def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)

def pick(name):
    for candidate in (name + ".gz", name):
        if os.path.exists(os.path.join(src, candidate)):
            return os.path.join(src, candidate)
    sys.exit(f"{name}(.gz) not found in {src}: install Debian's dataset-fashion-mnist")

images = read_idx(pick("train-images-idx3-ubyte"))
labels = read_idx(pick("train-labels-idx1-ubyte"))
classes, per_class = 16, 125
# Class k holds Fashion-MNIST label k % 10; classes 10..15 are the inverted images.
# Each class has its own tint, so the JPEGs have real colour (chroma) to decode.
rng = np.random.default_rng(1)
tints = rng.uniform(0.35, 1.0, size=(classes, 3))
for k in range(classes):
    d = os.path.join(out, f"class_{k:02d}")
    os.makedirs(d)
    idx = np.flatnonzero(labels == k % 10)[(k // 10) * per_class :][:per_class]
    for n, i in enumerate(idx):
        gray = images[i] if k < 10 else 255 - images[i]
        big = np.asarray(Image.fromarray(gray).resize((256, 256), Image.BICUBIC), dtype=np.float32)
        rgb = (big[:, :, None] * tints[k][None, None, :]).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(os.path.join(d, f"{n:04d}.jpg"), quality=90)
EOF
    touch "$folder/.complete"
fi

worker="${ABLATE_WORKER:-}"
if [ -z "$worker" ]; then
    (cd "$here" && cargo build --release -q -p ablate-worker --bin ablate-worker)
    worker="${CARGO_TARGET_DIR:-$here/target}/release/ablate-worker"
fi

ours_json="$("$worker" data-bench --format folder --root "$folder" --image-size "$image_size" \
    --batch "$batch" --threads "$threads" --json)"
theirs_json="$("$python" "$here/bench/torchvision_loader.py" --root "$folder" \
    --image-size "$image_size" --batch "$batch" --threads "$threads" --json)"

"$python" - "$ours_json" "$theirs_json" <<'EOF'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratio = ours["images_per_sec"] / theirs["images_per_sec"]
print(f"{'loader':<34} {'threads':>7} {'images/s':>10}")
print(f"{'ablate (image + fast_image_resize)':<34} {ours['threads']:>7} {ours['images_per_sec']:>10.0f}")
print(f"{'torchvision ' + theirs['torchvision'] + ' ImageFolder':<34} {theirs['threads']:>7} {theirs['images_per_sec']:>10.0f}")
print(f"ratio ours/torchvision: {ratio:.2f} ({ours['images']} images, {ours['image_size']}px, batch {ours['batch']})")
EOF
