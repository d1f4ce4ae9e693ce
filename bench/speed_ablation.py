"""Which speed-ups pay on this machine? Each one switched on alone, timed against the baseline.

    .venv/bin/python bench/speed_ablation.py                       # small model, bf16, batch 128
    .venv/bin/python bench/speed_ablation.py --model-size default --precision fp32
    .venv/bin/python bench/speed_ablation.py --compile             # adds torch.compile (slow start)

Variants (all the same ``Trainer.train_step``, same data, same seed):

* ``plain``: for-loop AdamW, one ``lerp_`` per tensor for the EMA (what the loop did before);
* ``fused AdamW``: one fused kernel updates every parameter (``AdamW(fused=True)``);
* ``foreach EMA``: one ``torch._foreach_lerp_`` for the whole EMA;
* ``channels_last``: model weights and data in NHWC memory layout;
* ``library``: what ``Trainer`` does now (fused AdamW + foreach EMA);
* ``compile`` (with ``--compile``): ``torch.compile`` of the model on top of ``library``; its
  one-off compile time is printed separately.

The variants are timed in alternating rounds so that a change in machine load hits all of
them; the table gives the median ms per step and the speed-up against ``plain``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.loop import EMA, TensorBatches, TrainConfig, Trainer
from diffusion_edu.models.unet import UNet
from diffusion_edu.recipes import MODEL_SIZES
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import DiffusionLoss


class LoopEMA(EMA):
    """The EMA as it was: one ``lerp_`` call per parameter tensor."""

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - d)
        self.num_updates += 1


def make_trainer(variant: str, args: argparse.Namespace, data) -> Trainer:  # noqa: ANN001
    torch.manual_seed(0)
    model = UNet(dataclasses.replace(MODEL_SIZES[args.model_size], num_classes=10))
    config = TrainConfig(steps=10**6, batch_size=args.batch_size, precision=args.precision,
                         compile=variant == "compile")  # fmt: skip
    trainer = Trainer(model, DiffusionLoss(NoiseSchedule.cosine(), min_snr_gamma=5.0),
                      TensorBatches(data.images, data.labels), config, "cpu", verbose=False,
                      progress=False)  # fmt: skip
    library = variant in ("library", "compile")
    if variant != "fused AdamW" and not library:
        trainer.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, fused=False,
                                              foreach=False)  # fmt: skip
    if variant != "foreach EMA" and not library:
        trainer.ema.__class__ = LoopEMA  # same state, the old update
    if variant == "channels_last":
        model.to(memory_format=torch.channels_last)
        images, labels = trainer.data.tensors
        trainer.data = TensorBatches(images.contiguous(memory_format=torch.channels_last), labels)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=tuple(MODEL_SIZES), default="small")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()

    data = load_mnist(verbose=False)
    variants = ["plain", "fused AdamW", "foreach EMA", "channels_last", "library"]
    if args.compile:
        variants.append("compile")
    trainers = {v: make_trainer(v, args, data) for v in variants}
    warmup_s: dict[str, float] = {}
    for name, trainer in trainers.items():
        start = time.perf_counter()
        for _ in range(3):
            trainer.train_step()
        warmup_s[name] = time.perf_counter() - start

    def timed(step: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return (time.perf_counter() - start) / args.steps * 1000

    ms: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            ms[name].append(timed(trainer.train_step))
    base = statistics.median(ms["plain"])
    load = os.getloadavg()[0]
    print(f"model {args.model_size}, {args.precision}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, load average {load:.1f} (at the end)")  # fmt: skip
    print("\n| variant | ms / step (median) | speed-up vs plain |\n|---|---:|---:|")
    for name in variants:
        med = statistics.median(ms[name])
        print(f"| {name} | {med:.0f} | {base / med:.2f}x |")
    if args.compile:
        print(
            f"\ntorch.compile: first 3 steps took {warmup_s['compile']:.0f} s "
            f"(eager: {warmup_s['library']:.1f} s)"
        )


if __name__ == "__main__":
    main()
