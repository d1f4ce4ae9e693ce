"""Training throughput of the U-Net on this machine: ms per step and images/s, fp32 vs bf16.

    .venv/bin/python bench/train_speed.py                      # default model, batch 128
    .venv/bin/python bench/train_speed.py --model-size small --steps 20

Times ``Trainer.train_step`` (DDPM Algorithm 1 + AdamW + EMA, exactly what ``train`` runs) on
the bundled digits after a few warm-up steps, and prints a table. The machine's load average
is printed too: on a shared CPU the numbers are only as good as the machine is idle.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from diffusion_edu.cli import MODEL_SIZES
from diffusion_edu.data import load_mnist
from diffusion_edu.models.unet import UNet, count_parameters
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=tuple(MODEL_SIZES), default="default")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_mnist(verbose=False)
    config = dataclasses.replace(MODEL_SIZES[args.model_size], num_classes=10)
    rows = []
    for precision in args.precisions.split(","):
        torch.manual_seed(0)
        model = UNet(config)
        trainer = Trainer(
            model, NoiseSchedule.cosine(), data.images, data.labels,
            TrainConfig(steps=10**6, batch_size=args.batch_size, precision=precision),
            "cpu", verbose=False, progress=False,
        )  # fmt: skip
        for _ in range(args.warmup):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        ms = (time.perf_counter() - start) / args.steps * 1000
        rows.append((precision, ms, args.batch_size / ms * 1000))

    print(f"model: {args.model_size} ({count_parameters(model):,} parameters), batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (at the end)")  # fmt: skip
    print("| precision | ms / step | images / s |\n|---|---:|---:|")
    for precision, ms, ips in rows:
        print(f"| {precision} | {ms:.0f} | {ips:.0f} |")


if __name__ == "__main__":
    main()
