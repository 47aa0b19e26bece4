#!/usr/bin/env python3
"""A list-file dataset in the seed's layout, of random JPEGs, for benchmarks:

    bench/make_listfile.py ROOT --classes 16 --split Train=64 --split Eval=32 [--lists labels]

writes ROOT/Images/class<NN>/<split>-<i>.jpg (256x256 RGB, a class-dependent tint so that a
model can learn something) and ROOT/[LISTS/]<Split>.txt with one `relative/path label` line
an image. Deterministic: the same arguments give the same bytes.
"""
import argparse
import os

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--split", action="append", required=True,
                        help="NAME=COUNT, e.g. Train=64 (repeatable)")
    parser.add_argument("--lists", default="", help="folder of the list files under ROOT")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    os.makedirs(os.path.join(args.root, args.lists), exist_ok=True)
    for split in args.split:
        name, count = split.split("=")
        lines = []
        for i in range(int(count)):
            label = i % args.classes
            rel = f"Images/class{label:02d}/{name.lower()}-{i:04d}.jpg"
            os.makedirs(os.path.join(args.root, os.path.dirname(rel)), exist_ok=True)
            pixels = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
            pixels[..., label % 3] //= 1 + label // 3
            Image.fromarray(pixels).save(os.path.join(args.root, rel), quality=90)
            lines.append(f"{rel} {label}")
        with open(os.path.join(args.root, args.lists, f"{name}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
