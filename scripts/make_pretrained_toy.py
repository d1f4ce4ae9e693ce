"""Train lesson 05's 2-D toy model once, measure it, and ship it (run ONCE; a few seconds).

    .venv/bin/python scripts/make_pretrained_toy.py

Writes ``data/pretrained/toy_spiral.pt`` and ``data/pretrained/toy_spiral.json``. Lesson 05 trains
a tiny noise predictor on 2,000 points of a spiral; in quick mode (the test run, CI and the
course website) it loads this file instead, so that the pictures it shows are those of the full
run, not of a model trained too briefly to draw the spiral. The recipe is the lesson's own, through
the library's toy training (:func:`diffusion_edu.toy2d.train_toy`, which runs the one loop)::

    data = make_toy_data("spiral", n=2000, seed=0)
    schedule = NoiseSchedule.cosine(T=100)
    torch.manual_seed(0)
    model = ToyNoisePredictor()
    losses = train_toy(model, data, schedule, toy_train_config(steps=2000, seed=0))

The weights file (:func:`~diffusion_edu.checkpoints.save_checkpoint`: written atomically, read
with ``torch.load(weights_only=True)``) holds the weights, the model config, the schedule and the
loss of every step. The JSON record holds the recipe and the score measured here on 1,000
samples (DDPM, seed 0): the fraction that lands more than 0.1 from the spiral, as lesson 05
measures it, and the mean distance from a sample to its nearest data point.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusion_edu.checkpoints import save_checkpoint
from diffusion_edu.files import atomic_write
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import (
    ToyNoisePredictor,
    fraction_within,
    make_toy_data,
    nearest_data_distance,
    sample_points,
    toy_train_config,
    train_toy,
)

ROOT = Path(__file__).resolve().parents[1]
N_POINTS, DATA_SEED, SEED, T, STEPS = 2000, 0, 0, 100, 2000  # lesson 05's full-mode run
N_SAMPLES, OFF_RADIUS = 1000, 0.1  # how lesson 05 measures "off the spiral"
RECIPE = (
    f'data = make_toy_data("spiral", n={N_POINTS}, seed={DATA_SEED}); '
    f"schedule = NoiseSchedule.cosine(T={T}); torch.manual_seed({SEED}); "
    f"model = ToyNoisePredictor(); "
    f"train_toy(model, data, schedule, toy_train_config(steps={STEPS}, seed={SEED}))"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data/pretrained/toy_spiral.pt")
    args = parser.parse_args()

    data = make_toy_data("spiral", n=N_POINTS, seed=DATA_SEED)  # (2000, 2)
    schedule = NoiseSchedule.cosine(T=T)
    torch.manual_seed(SEED)
    model = ToyNoisePredictor()
    config = toy_train_config(steps=STEPS, seed=SEED)
    start = time.perf_counter()
    losses = train_toy(model, data, schedule, config, progress=False)
    seconds = time.perf_counter() - start

    samples = sample_points(model, schedule, n=N_SAMPLES, seed=0)  # (1000, 2), DDPM-100
    off = 1.0 - fraction_within(samples, data, OFF_RADIUS)
    distance = nearest_data_distance(samples, data)
    save_checkpoint(args.out, model, schedule, step=len(losses), train_config=config.to_dict(),
                    history=[{"loss": loss} for loss in losses])  # fmt: skip
    record = {
        "command": "python scripts/make_pretrained_toy.py",
        "recipe": RECIPE,
        "steps": len(losses),
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_config": str(model.config),
        "train_seconds": round(seconds, 1),
        "trained_on": f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "final_loss_mean_last_100": round(sum(losses[-100:]) / 100, 4),
        "evaluated_on": f"{N_SAMPLES} samples (DDPM, {T} steps, seed 0) against the "
        f"{N_POINTS} training points",
        "off_spiral_radius": OFF_RADIUS,
        "off_spiral_fraction": round(off, 4),
        "mean_distance_to_data": round(distance, 4),
    }
    record_path = args.out.with_suffix(".json")
    atomic_write(record_path, lambda f: f.write(json.dumps(record, indent=2).encode() + b"\n"))
    print(f"trained {len(losses)} steps in {seconds:.1f} s; off the spiral (> {OFF_RADIUS}): "
          f"{off:.1%}; mean distance to data {distance:.4f}")  # fmt: skip
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} KB) and {record_path}")


if __name__ == "__main__":
    main()
