"""Sampling time per image: DDPM with all T=1000 steps vs DDIM with 50, with guidance.

    .venv/bin/python bench/sample_speed.py                         # default model, 10 images
    .venv/bin/python bench/sample_speed.py --checkpoint runs/mnist_cpu/checkpoint.pt

Times ``diffusion_edu.sample`` end to end (float32, no autocast, as the command line samples).
The weights do not change the speed, so without --checkpoint an untrained default U-Net is
used. Guidance != 1 runs the model on twice the batch (conditional + unconditional).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--n", type=int, default=10, help="images per run")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--runs", default="ddim:50,ddpm:1000", help="sampler:steps,...")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, schedule = ckpt.build_model(), ckpt.schedule
    else:
        torch.manual_seed(0)
        model, schedule = UNet(UNetConfig(num_classes=10)).eval(), NoiseSchedule.linear()
    labels = [i % 10 for i in range(args.n)]
    rows = []
    for run in args.runs.split(","):
        sampler, steps = run.split(":")
        start = time.perf_counter()
        sample(model, schedule, labels=labels, sampler=sampler,
               steps=int(steps) if sampler == "ddim" else None, guidance=args.guidance,
               seed=0, progress=False)  # fmt: skip
        seconds = time.perf_counter() - start
        rows.append((f"{sampler.upper()}-{steps}", seconds, seconds / args.n))

    print(f"model: {count_parameters(model):,} parameters, {args.n} images, guidance "
          f"{args.guidance:g}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (at the end)")  # fmt: skip
    print("| sampler | seconds for the batch | seconds per image |\n|---|---:|---:|")
    for name, seconds, per_image in rows:
        print(f"| {name} | {seconds:.1f} | {per_image:.2f} |")


if __name__ == "__main__":
    main()
