#!/usr/bin/env python3
"""The reference for `ablate-worker data-bench`: torchvision's ImageFolder + DataLoader.

Decode-to-normalized-batch throughput, images/s, with the same work as ours: decode
(PIL), resize the short side to IMAGE_SIZE (PIL bilinear with antialiasing, torchvision's
default), centre crop to a square, convert to RGB float, normalize with the ImageNet
mean/std, collate into [B, 3, S, S] float32 batches, with `num_workers = T`.

    python bench/torchvision_loader.py --root DIR --image-size 224 --batch 32 --threads 2 [--json]

Needs torch 2.11.0 and torchvision 0.26.0 (deploy/setup.sh installs them).
"""

import argparse
import json
import time

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

# ImageNet statistics, as in torchvision's reference scripts (references/classification).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder of class sub-folders")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="DataLoader num_workers")
    parser.add_argument("--epochs", type=int, default=2, help="passes; the first warms the page cache")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    # One intra-op thread per process: the workers are the parallelism, as in ours.
    torch.set_num_threads(1)
    transform = transforms.Compose(
        [
            transforms.Resize(args.image_size),
            transforms.CenterCrop(args.image_size),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    dataset = datasets.ImageFolder(args.root, transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.threads,
        persistent_workers=args.threads > 0,
        generator=torch.Generator().manual_seed(1),
    )

    best = 0.0
    images = 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        images = 0
        for batch, labels in loader:
            assert batch.shape[1:] == (3, args.image_size, args.image_size)
            images += batch.shape[0]
        elapsed = time.perf_counter() - start
        best = max(best, images / elapsed)

    if args.json:
        print(
            json.dumps(
                {
                    "loader": "torchvision",
                    "torchvision": torchvision.__version__,
                    "images": images,
                    "threads": args.threads,
                    "image_size": args.image_size,
                    "batch": args.batch,
                    "images_per_sec": best,
                }
            )
        )
    else:
        print(f"torchvision {torchvision.__version__}: {images} images, {args.threads} workers, {best:.0f} images/s")


if __name__ == "__main__":
    main()
