"""When do the digits become recognisable? Sample every saved snapshot of a training run.

    .venv/bin/python bench/digits_over_time.py runs/mnist_cpu/snap_step*.pt \\
        --out docs/digits_over_time_cpu.png

For each checkpoint: one image per class (0..9), DDIM-50, guidance 2, the same seed, EMA
weights. Each row is labelled with the optimiser step and the training minutes up to it,
from the checkpoint's own per-step timings (``history["seconds"]``: summed step times), so
checkpoint writes and sampling are not counted. Prints a table of the same.
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffusion_edu.checkpoints import load_checkpoint  # noqa: E402
from diffusion_edu.samplers import sample  # noqa: E402
from diffusion_edu.viz.plots import make_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--out", default="digits_over_time.png")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()

    rows = []
    for path in sorted(args.checkpoints):
        ckpt = load_checkpoint(path)
        minutes = ckpt.history["seconds"][-1] / 60
        start = time.perf_counter()
        images = sample(ckpt.build_model(), ckpt.schedule, labels=list(range(10)),
                        sampler="ddim", steps=args.steps, guidance=args.guidance, seed=0,
                        progress=False)  # fmt: skip
        rows.append((ckpt.step, minutes, ckpt.history["loss"][-1], images,
                     time.perf_counter() - start))  # fmt: skip

    fig, axes = plt.subplots(len(rows), 1, figsize=(6, 0.75 * len(rows) + 0.6), squeeze=False)
    for ax, (step, minutes, _, images, _) in zip(axes[:, 0], rows, strict=True):
        ax.imshow(make_grid(images, nrow=10), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"step {step}\n{minutes:.1f} min", rotation=0, ha="right", va="center",
                      fontsize=8)  # fmt: skip
    axes[0, 0].set_title(f"Digits 0-9 during training (DDIM-{args.steps}, guidance "
                         f"{args.guidance:g}, EMA weights)", fontsize=9)  # fmt: skip
    axes[-1, 0].set_xlabel("class label 0 ... 9")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print("| step | training minutes (this run) | last loss | sampling s |\n|---:|---:|---:|---:|")
    for step, minutes, loss, _, seconds in rows:
        print(f"| {step} | {minutes:.1f} | {loss:.4f} | {seconds:.1f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
