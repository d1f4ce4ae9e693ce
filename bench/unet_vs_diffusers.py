"""Our U-Net against diffusers' UNet2DModel of (nearly) the same size, in one run.

Both models predict eps for class-conditional 28x28 digits and are trained with the same
step (``diffusion_loss``: DDPM Algorithm 1, fused AdamW, same batch, same device, same
precision) and sampled with the same DDIM sampler; fp32 and bf16 autocast are both measured.
The two are timed alternately, round after round, so that a change in machine load hits both;
the table reports medians and the ratio ours / theirs (above 1 = ours is faster).

    pip install -e '.[bench]'          # diffusers is a benchmark-only dependency
    python bench/unet_vs_diffusers.py  # --device cuda on a GPU; --rounds 10: steadier numbers
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from diffusion_edu.device import pick_device
from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import diffusion_loss


def diffusers_unet(num_classes: int = 10) -> torch.nn.Module:
    """diffusers' UNet2DModel with the same depth as ours and +-10% of its parameters.

    Three levels (channels 32, 56, 56), two ResNet blocks per level, attention at the lowest
    level only, GroupNorm with 8 groups, a class embedding with one extra "no label" class.
    """
    try:
        from diffusers import UNet2DModel
    except ImportError:
        sys.exit("diffusers is not installed: run `pip install -e '.[bench]'` first.")
    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 56, 56),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_classes + 1,
        norm_num_groups=8,
    )


class DiffusersAdapter(torch.nn.Module):
    """Gives UNet2DModel our calling convention: ``model(x_t, t, labels) -> eps_hat``."""

    def __init__(self, inner: torch.nn.Module, null_label: int) -> None:
        super().__init__()
        self.inner, self.null_label = inner, null_label

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None):
        if labels is None:
            labels = torch.full((x_t.shape[0],), self.null_label, device=x_t.device)
        return self.inner(x_t, t, class_labels=labels).sample


def make_train_step(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor,
    dtype: torch.dtype | None,
) -> Callable[[], None]:
    """One training step, the same for both models: loss, backward, fused AdamW."""
    fused = x0.device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    gen = torch.Generator(x0.device).manual_seed(0)
    device_type = x0.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = diffusion_loss(model, x0, schedule, labels, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_sampler(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    labels: torch.Tensor,
    dtype: torch.dtype | None,
    steps: int,
) -> Callable[[], None]:
    """The course's DDIM sampler (``steps`` model calls) drawing one image per label."""
    device_type = labels.device.type

    def run() -> None:
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            sample(model, schedule, labels=labels, sampler="ddim", steps=steps, seed=0,
                   shape=(1, 28, 28), progress=False)  # fmt: skip

    return run


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Seconds per call, averaged over ``repeats`` calls (synchronising a GPU at both ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--steps", type=int, default=3, help="train steps per model per round")
    parser.add_argument("--sample-steps", type=int, default=20, help="DDIM steps when sampling")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated: fp32 and/or bf16 (autocast)")  # fmt: skip
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    ours = UNet(UNetConfig(num_classes=10)).to(device)
    theirs = DiffusersAdapter(diffusers_unet(10), null_label=10).to(device)
    n_ours, n_theirs = count_parameters(ours), count_parameters(theirs)
    schedule = NoiseSchedule.cosine()
    x0 = torch.rand(args.batch, 1, 28, 28, device=device) * 2 - 1
    labels = torch.randint(0, 10, (args.batch,), device=device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({where or platform.machine()}), batch {args.batch}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the start; "
        f"parameters: ours {n_ours:,}, diffusers {n_theirs:,} "
        f"({100 * (n_theirs / n_ours - 1):+.1f}%)"
    )
    models = {"ours": ours, "diffusers": theirs}
    rows = []
    for precision in args.precisions.split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        for kind in ("train", "sample"):
            fns = {
                name: make_train_step(model, schedule, x0, labels, dtype)
                if kind == "train"
                else make_sampler(model, schedule, labels, dtype, args.sample_steps)
                for name, model in models.items()
            }
            for fn in fns.values():  # warm-up (allocator, autotuning, first-call overheads)
                fn()
            seconds: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(args.rounds):  # alternate, so that a change in load hits both
                for name, fn in fns.items():
                    seconds[name].append(timed(fn, args.steps if kind == "train" else 1, device))
            ours_s, theirs_s = (statistics.median(seconds[n]) for n in ("ours", "diffusers"))
            rows.append((precision, kind, args.batch / ours_s, args.batch / theirs_s,
                         theirs_s / ours_s))  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| precision | what | ours: images/s | diffusers: images/s | ours / diffusers |")
    print("|---|---|---:|---:|---:|")
    for precision, kind, ours_ips, theirs_ips, ratio in rows:
        what = "training step" if kind == "train" else f"sampling, DDIM-{args.sample_steps}"
        print(f"| {precision} | {what} | {ours_ips:.0f} | {theirs_ips:.1f} | **{ratio:.2f}x** |")


if __name__ == "__main__":
    main()
