"""Training throughput of the U-Net on this machine: ms per step and images/s, fp32 vs bf16.

    .venv/bin/python bench/train_speed.py                      # default model, batch 128
    .venv/bin/python bench/train_speed.py --model-size small --steps 20
    .venv/bin/python bench/train_speed.py --device cuda --compile   # on a GPU: + torch.compile

Times ``Trainer.run`` (DDPM Algorithm 1 + fused AdamW + EMA, exactly what ``train`` runs,
reading losses back every ``sync_every`` steps as it does there) on the bundled digits after
a few warm-up steps, and prints a table with each row's speed-up over fp32 eager. The
machine's load average is printed too: on a shared CPU the numbers are only as good as the
machine is idle.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.device import pick_device
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.models.unet import UNet, count_parameters
from diffusion_edu.recipes import MODEL_SIZES
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import DiffusionLoss


def measure(args: argparse.Namespace, data, device: torch.device, precision: str,  # noqa: ANN001
            compiled: bool) -> tuple[float, float, int]:  # fmt: skip
    """(ms per step, seconds of warm-up, parameters) for one precision / compile setting."""
    config = dataclasses.replace(MODEL_SIZES[args.model_size], num_classes=10)
    torch.manual_seed(0)
    model = UNet(config)
    trainer = Trainer(
        model, DiffusionLoss(NoiseSchedule.cosine(), min_snr_gamma=5.0),
        TensorBatches(data.images, data.labels),
        TrainConfig(steps=10**6, batch_size=args.batch_size, precision=precision,
                    compile=compiled),
        device, verbose=False, progress=False,
    )  # fmt: skip

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in trainer.run(steps=steps):
            pass
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warmup = run(args.warmup)
    return run(args.steps) / args.steps * 1000, warmup, count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=tuple(MODEL_SIZES), default="default")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true",
                        help="also time each precision with torch.compile")  # fmt: skip
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    data = load_mnist(verbose=False)
    rows = []
    for precision in args.precisions.split(","):
        for compiled in (False, True) if args.compile else (False,):
            ms, warmup, params = measure(args, data, device, precision, compiled)
            rows.append((precision + (" + compile" if compiled else ""), ms, warmup))

    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    )
    print(f"model: {args.model_size} ({params:,} parameters), batch {args.batch_size}, "
          f"device {device} ({where}), {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} (at the end)")  # fmt: skip
    base = rows[0][1]
    print(f"| setting | ms / step | images / s | speed-up vs {rows[0][0]} | warm-up "
          f"({args.warmup} steps) |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for name, ms, warmup in rows:
        print(f"| {name} | {ms:.1f} | {args.batch_size / ms * 1000:.0f} | {base / ms:.2f}x | "
              f"{warmup:.1f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
