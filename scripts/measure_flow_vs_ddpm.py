"""Quality against sampling steps: the flow-matching model against the DDPM model (lesson 12).

    python scripts/measure_flow_vs_ddpm.py                       # the shipped mnist and mnist-flow
    python scripts/measure_flow_vs_ddpm.py --flow runs/flow/checkpoint.pt   # a fresh run

Both models share the architecture (the small U-Net, 200,433 parameters) and the training budget
(3,000 steps of batch 128, the same recipe): one predicts the noise on the diffusion path, the
other the velocity on the straight path (``--prediction flow``). Each is sampled with its
deterministic ODE samplers at several step counts, from the same labels and seed: the DDPM model
with DDIM (Euler on the probability-flow ODE), Heun and DPM-Solver++(2M); the flow model with
Euler and Heun. Scores: class agreement and Frechet distance (the course's metric) on
``--n`` balanced digits, against the 500 held-out digits. Writes
``data/results/flow_vs_ddpm.json``; lesson 12 draws it, and the fewest steps at which each line
reaches 97% class agreement is recorded with it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffusion_edu import load_pretrained
from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.data import repo_data_dir
from diffusion_edu.device import cpu_model_name
from diffusion_edu.files import atomic_write
from diffusion_edu.metrics import class_agreement, frechet_distance, frechet_floor, reference_digits
from diffusion_edu.samplers import model_calls, sample

RESULTS_FILE = "results/flow_vs_ddpm.json"
GOAL = 0.97
# (model, sampler) lines of the figure
LINES = (("mnist", "ddim"), ("mnist", "heun"), ("mnist", "dpm-solver++"),
         ("mnist-flow", "euler"), ("mnist-flow", "heun"))  # fmt: skip


def fewest_steps(curve: dict[str, dict], goal: float = GOAL) -> int | None:
    """The smallest step count (keys are strings in JSON) whose class agreement >= goal."""
    good = [int(k) for k, v in curve.items() if v["class_agreement"] >= goal]
    return min(good) if good else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="mnist-flow",
                        help="the flow model: a shipped name or a training checkpoint")  # fmt: skip
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--n", type=int, default=500, help="digits per run (a multiple of 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=repo_data_dir() / RESULTS_FILE)
    args = parser.parse_args()

    models = {"mnist": load_pretrained("mnist")}
    if Path(args.flow).suffix == ".pt" and Path(args.flow).exists():
        checkpoint = load_checkpoint(Path(args.flow))
        models["mnist-flow"] = (checkpoint.build_model(ema=True), checkpoint.schedule)
    else:
        models["mnist-flow"] = load_pretrained(args.flow)
    labels = torch.arange(10).repeat_interleave(args.n // 10)
    heldout, _ = reference_digits("test")
    floor = round(frechet_floor(len(labels)), 4)
    threads = torch.get_num_threads()
    omp = [f"OMP_NUM_THREADS={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ]
    record: dict[str, object] = {
        "command": " ".join([*omp, "python scripts/measure_flow_vs_ddpm.py", *sys.argv[1:]]),
        "machine": f"{cpu_model_name()}, {os.cpu_count()} CPUs, {threads} torch threads, "
        f"torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "evaluated_on": f"{len(labels)} samples ({args.n // 10} per digit), seed {args.seed} "
        f"(the same starting noise for every run), guidance {args.guidance:g}; Frechet distance "
        "against the 500 held-out digits",
        "frechet_floor_same_n": floor,
        "guidance": args.guidance,
        "goal": GOAL,
        "lines": {},
    }
    start = time.perf_counter()
    for name, sampler in tqdm(LINES, desc="lines"):
        model, schedule = models[name]
        curve: dict[str, dict] = {}
        for steps in args.steps:
            t0 = time.perf_counter()
            images = sample(model, schedule, labels=labels, sampler=sampler, steps=steps,
                            guidance=args.guidance, seed=args.seed, progress=False)  # fmt: skip
            seconds = time.perf_counter() - t0
            curve[str(steps)] = {
                "class_agreement": round(class_agreement(images, labels), 4),
                "frechet_distance": round(frechet_distance(images, heldout), 4),
                "model_calls_per_image": model_calls(sampler, schedule.T, steps, args.guidance),
                "seconds_per_image": round(seconds / len(labels), 5),
            }
            print(f"{name:>10} {sampler:>12} {steps:>3} steps: {curve[str(steps)]}", flush=True)
        record["lines"][f"{name} {sampler}"] = {  # type: ignore[index]
            "model": name, "sampler": sampler, "steps": curve,
            "fewest_steps_to_goal": fewest_steps(curve),
        }  # fmt: skip
        text = json.dumps(record, indent=2) + "\n"  # written after every line
        atomic_write(args.out, lambda f, text=text: f.write(text.encode()))
    print(f"wrote {args.out} ({(time.perf_counter() - start) / 60:.1f} minutes)")


if __name__ == "__main__":
    main()
