"""Compare this checkout with an earlier revision in one run: step time, losses, samples.

    .venv/bin/python bench/compare_revisions.py --base cce49a5            # issue 9's baseline
    .venv/bin/python bench/compare_revisions.py --base HEAD~3 --rounds 5 --steps 15

For a refactor that must change nothing a student sees. The base revision is checked out into
a temporary ``git worktree``; both sides run in fresh processes (``PYTHONPATH`` pointing at
each side's package), alternately, so that a change in the machine's load hits both alike.
Each process trains the five-minute recipe's model (small U-Net, batch 128, Min-SNR, fp32 so
every CPU computes the same thing) for a few steps on the bundled digits, and samples the
shipped model with a fixed seed. Printed: the median ms per step of each side and their ratio,
and whether the first losses, the EMA weights and the samples are bit-identical.

The child process speaks both APIs: the one loop of issue 9 (``Trainer(model, loss, batches)``)
and the earlier ``Trainer(model, schedule, images, labels)``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import dataclasses, hashlib, json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from diffusion_edu.data import load_mnist
from diffusion_edu.models.unet import UNet
from diffusion_edu.pretrained import load_pretrained
from diffusion_edu.recipes import RECIPES
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import make_schedule

steps = int(sys.argv[1])
recipe = RECIPES["five_minutes"]
data = load_mnist("train", verbose=False)
torch.manual_seed(0)
model = UNet(recipe.model_config)
try:  # the one loop (issue 9)
    from diffusion_edu.loop import TensorBatches, Trainer
    config = dataclasses.replace(recipe.train_config, steps=steps, precision="fp32", minutes=None)
    trainer = Trainer(model, recipe.loss(), TensorBatches(data.images, data.labels), config,
                      "cpu", verbose=False, progress=False)
except ImportError:  # before issue 9
    from diffusion_edu.training import Trainer
    config = dataclasses.replace(recipe.train_config, steps=steps, precision="fp32")
    trainer = Trainer(model, make_schedule(recipe.schedule), data.images, data.labels, config,
                      "cpu", verbose=False, progress=False)
times, losses = [], []
start = time.perf_counter()
for record in trainer.run():
    now = time.perf_counter()
    times.append(now - start)
    losses.append(record.loss)
    start = now


def digest(tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


shipped, schedule = load_pretrained("mnist")
images = sample(shipped, schedule, labels=list(range(10)), sampler="ddim", steps=20,
                guidance=2.0, seed=0, progress=False)
print(json.dumps({
    "ms_per_step": [1000 * t for t in times[2:]],  # the first steps warm up
    "losses": losses,
    "ema": digest(trainer.ema_model.state_dict().values()),
    "samples": digest([images]),
}))
"""


def run_side(path: Path, steps: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps), str(threads)],
        cwd=path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the earlier revision, e.g. cce49a5")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--steps", type=int, default=12, help="training steps per run")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both sides")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        try:
            sides: dict[str, list[dict]] = {"base": [], "this": []}
            for round_ in range(args.rounds):
                for name, path in (("base", base), ("this", ROOT)):
                    sides[name].append(run_side(path, args.steps, args.threads))
                print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=True, capture_output=True)  # fmt: skip

    load = os.getloadavg()[0]
    ms = {
        name: statistics.median(t for run in runs for t in run["ms_per_step"])
        for name, runs in sides.items()
    }
    print(f"\nbase {args.base} vs this checkout; {args.rounds} alternating rounds of {args.steps} "
          f"steps, {args.threads} threads, fp32, load average {load:.1f} at the end")  # fmt: skip
    print("| | base | this | this / base |\n|---|---:|---:|---:|")
    print(f"| training step (median ms) | {ms['base']:.1f} | {ms['this']:.1f} | "
          f"{ms['this'] / ms['base']:.3f} |")  # fmt: skip
    per_run = {n: [statistics.median(r["ms_per_step"]) for r in runs] for n, runs in sides.items()}
    ratios = sorted(t / b for b, t in zip(per_run["base"], per_run["this"], strict=True))
    print(f"| ratio this / base, round by round (min / median / max) | | | {ratios[0]:.3f} / "
          f"{statistics.median(ratios):.3f} / {ratios[-1]:.3f} |")  # fmt: skip
    first = {n: runs[0] for n, runs in sides.items()}
    for key, what in (("losses", "losses of the first steps"), ("ema", "EMA weights after them"),
                      ("samples", "shipped model's samples (DDIM-20, seed 0)")):  # fmt: skip
        same = first["base"][key] == first["this"][key]
        print(f"| {what} | | | {'bit-identical' if same else 'DIFFERENT'} |")


if __name__ == "__main__":
    main()
