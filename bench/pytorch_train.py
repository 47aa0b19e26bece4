#!/usr/bin/env python3
"""PyTorch side of the training benchmark: the same architecture as `ablate-worker bench`.

The network is built from the layer tree `ablate-worker arch` prints (the catalogue's one
description), so both sides train exactly the same model. Same flags as `ablate-worker bench`:
    pytorch_train.py --model M --image-size S --batch B --steps N --threads T [--device cpu|cuda:0] [--json]
"""
import argparse
import json
import os
import subprocess
import time

import torch
from torch import nn


class PaddleDropout(nn.Module):
    """Paddle 1.x `downgrade_in_infer`: no scaling at train time, x·(1−p) at eval."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.training:
            return x * torch.bernoulli(torch.full_like(x, 1.0 - self.p))
        return x * (1.0 - self.p)


class Concat(nn.Module):
    def __init__(self, branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


class Residual(nn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def activation(spec):
    if isinstance(spec, str):
        return {"sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "relu": nn.ReLU()}[spec]
    return nn.LeakyReLU(spec["leaky_relu"]["slope"])


def build(layers, shape):
    """Returns (nn.Sequential, output shape); shape is (C, H, W) or (F,)."""
    modules = []
    for layer in layers:
        if layer == "batch_norm":
            modules.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif layer == "global_avg_pool":
            modules.append(nn.AdaptiveAvgPool2d(1))
            shape = (shape[0], 1, 1)
        elif layer == "flatten":
            modules.append(nn.Flatten())
            shape = (shape[0] * shape[1] * shape[2],)
        elif "conv" in layer:
            c = layer["conv"]
            modules.append(nn.Conv2d(shape[0], c["out"], c["kernel"], c["stride"], c["padding"], bias=c["bias"]))
            size = lambda s: (s + 2 * c["padding"] - c["kernel"]) // c["stride"] + 1
            shape = (c["out"], size(shape[1]), size(shape[2]))
        elif "act" in layer:
            modules.append(activation(layer["act"]))
        elif "pool" in layer:
            p = layer["pool"]
            cls = nn.MaxPool2d if p["kind"] == "max" else nn.AvgPool2d
            kwargs = {} if p["kind"] == "max" else {"count_include_pad": False}
            modules.append(cls(p["kernel"], p["stride"], p["padding"], **kwargs))
            size = lambda s: (s + 2 * p["padding"] - p["kernel"]) // p["stride"] + 1
            shape = (shape[0], size(shape[1]), size(shape[2]))
        elif "linear" in layer:
            modules.append(nn.Linear(shape[0], layer["linear"]["out"]))
            shape = (layer["linear"]["out"],)
        elif "dropout" in layer:
            d = layer["dropout"]
            modules.append(PaddleDropout(d["p"]) if d["implementation"] == "paddle" else nn.Dropout(d["p"]))
        elif "concat" in layer:
            branches, channels = [], 0
            for branch in layer["concat"]:
                module, out = build(branch, shape)
                branches.append(module)
                channels += out[0]
            modules.append(Concat(branches))
            shape = (channels, out[1], out[2])
        elif "residual" in layer:
            body, out = build(layer["residual"]["body"], shape)
            shortcut, _ = build(layer["residual"]["shortcut"], shape)
            modules.append(Residual(body, shortcut))
            shape = out
        else:
            raise ValueError(f"unknown layer {layer!r}")
    return nn.Sequential(*modules), shape


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="bfloat16 autocast on CUDA, as ablate's mixed_precision")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=os.environ.get("ABLATE_WORKER", "ablate-worker"),
                        help="the ablate-worker binary that prints the layer tree")
    args = parser.parse_args()

    arch = json.loads(subprocess.check_output([
        args.worker, "arch", "--model", args.model, "--image-size", str(args.image_size),
        "--channels", str(args.channels), "--classes", str(args.classes)]))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model, _ = build(arch["layers"], (arch["channels"], arch["image_size"], arch["image_size"]))
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    images = torch.randn(args.batch, arch["channels"], arch["image_size"], arch["image_size"], device=device)
    labels = torch.randint(arch["classes"], (args.batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    autocast = args.mixed_precision and device.type == "cuda"
    compute_dtype = "fp32"

    def step():
        nonlocal compute_dtype
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(images)
        compute_dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(logits.dtype, "fp32")
        loss = loss_fn(logits.float(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"model": args.model, "image_size": args.image_size, "batch": args.batch,
              "steps": args.steps, "threads": args.threads, "device": args.device,
              "images_per_sec": args.steps * args.batch / seconds, "compute_dtype": compute_dtype}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model} at {args.image_size}: {result['images_per_sec']:.1f} images/s (PyTorch)")


if __name__ == "__main__":
    main()
