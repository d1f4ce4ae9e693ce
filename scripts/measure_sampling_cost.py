"""Measure what sampling the shipped MNIST model costs and buys, sampler by sampler and step count
by step count, and write data/results/sampling_cost.json (lesson 08's figure).

Two passes, so that other work on a shared machine disturbs the clock as little as possible:

1. quality: for each (sampler, steps), ``--n`` class-balanced digits (seed 0), scored with
   ``evaluate_samples`` (class agreement, Frechet distance to the 500 held-out digits, the
   real-vs-real floor at the same n);
2. time: for each (sampler, steps), a separate run of a fixed batch of ``--timing-n`` digits,
   the fastest of ``--timing-repeats`` (``time_sampling``), with the load average recorded.

"ddpm" with fewer than T = 1000 steps is DDPM's ancestral step (posterior variance) over an
evenly spaced subsequence of timesteps, which is DDIM with eta = 1 (Song et al. 2021, Eq. 16).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_sampling_cost.py   # about 30 min on 2 cores

``--points ddim:1000 ...`` measures only those (sampler, steps); with ``--merge`` they replace or
join the entries of the existing results file (same n and guidance required), and a note says so.

``--solver-goal`` measures instead whether DPM-Solver++(2M) at 10-20 steps matches DDIM-50 on
the course's record settings (500 digits, seed 0, guidance 1 and 2), and writes the key
"dpm_solver_vs_ddim50" into data/pretrained/mnist_unet.json (other keys unchanged). It also
measures how far each run's digits are, pixel for pixel, from the probability-flow ODE's own
solution for the same starting noise (approximated by DPM-Solver++ with 100 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

from diffusion_edu import load_pretrained
from diffusion_edu.data import repo_data_dir
from diffusion_edu.device import cpu_model_name
from diffusion_edu.files import atomic_write
from diffusion_edu.metrics import (
    SAMPLING_COST_FILE,
    SamplingCostSweep,
    balanced_labels,
    class_agreement,
    frechet_distance,
    frechet_floor,
    load_sampling_cost,
    measure_sampling_cost,
    reference_digits,
    time_sampling,
)
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule

PRETRAINED_RECORD = "pretrained/mnist_unet.json"
SWEEP: dict[str, tuple[int, ...]] = {
    "ddpm": (5, 10, 20, 50, 100, 1000),
    "ddim": (5, 10, 15, 20, 50, 100, 1000),
    "dpm-solver++": (5, 10, 15, 20, 50, 100, 1000),
}


MATCH_RULE = (
    "matches_ddim50: class agreement at most 1 point below DDIM-50's and Frechet distance at most "
    "10% above it (the floor's own draws at n=500 span 0.29-0.69, so 10% is well inside the "
    "noise of one Frechet measurement)"
)


def solver_goal(model: torch.nn.Module, schedule: NoiseSchedule, out: Path) -> None:
    """DPM-Solver++(2M) at 10, 15, 20 steps against DDIM-50, 500 digits, guidance 1 and 2."""
    heldout, _ = reference_digits("test")
    labels = balanced_labels(500)
    record: dict[str, object] = {
        "evaluated_on": "500 samples (50 per digit), seed 0 (the same starting noise for every "
        "run), CPU; Frechet distance against the 500 held-out digits; rms_to_ode_solution: "
        "root-mean-square pixel distance (images in [-1, 1]) to the probability-flow ODE's "
        "solution from the same noise (approximated by DPM-Solver++(2M) with 100 steps, "
        "itself 0.007 from 200 steps); cost in model calls per image (the time per call is "
        "the same for every sampler: data/results/sampling_cost.json)",
        "command": "python scripts/measure_sampling_cost.py --solver-goal",
        "frechet_floor_same_n": round(frechet_floor(500), 3),
        "match_rule": MATCH_RULE,
    }
    runs = (("ddim50", "ddim", 50), ("dpm_solver10", "dpm-solver++", 10),
            ("dpm_solver15", "dpm-solver++", 15), ("dpm_solver20", "dpm-solver++", 20))  # fmt: skip
    for guidance in (1.0, 2.0):
        kwargs = dict(labels=labels, guidance=guidance, seed=0, progress=False)
        ode = sample(model, schedule, sampler="dpm-solver++", steps=100, **kwargs)
        results: dict[str, dict[str, object]] = {}
        for name, sampler, steps in runs:
            images = sample(model, schedule, sampler=sampler, steps=steps, **kwargs)
            results[name] = {
                "class_agreement": round(class_agreement(images, labels), 4),
                "frechet_distance": round(frechet_distance(images, heldout), 3),
                "rms_to_ode_solution": round(float((images - ode).pow(2).mean().sqrt()), 4),
                "model_calls_per_image": steps * (1 if guidance == 1.0 else 2),
            }
            print(f"guidance {guidance:g} {name}: {results[name]}", flush=True)
        base = results["ddim50"]
        for name in ("dpm_solver10", "dpm_solver15", "dpm_solver20"):
            run = results[name]
            run["matches_ddim50"] = bool(
                run["class_agreement"] >= base["class_agreement"] - 0.01  # type: ignore[operator]
                and run["frechet_distance"] <= 1.1 * base["frechet_distance"]  # type: ignore[operator]
            )
        results["ode_solution_dpm_solver100"] = {
            "class_agreement": round(class_agreement(ode, labels), 4),
            "frechet_distance": round(frechet_distance(ode, heldout), 3),
        }
        print(f"guidance {guidance:g} ODE solution: {results['ode_solution_dpm_solver100']}")
        record[f"guidance{guidance:g}"] = results
    full = json.loads(out.read_text())
    full["dpm_solver_vs_ddim50"] = record
    text = json.dumps(full, indent=2) + "\n"
    atomic_write(out, lambda f: f.write(text.encode()))
    print(f"wrote the key dpm_solver_vs_ddim50 into {out}")


def _point(text: str) -> tuple[str, int]:
    """``"ddim:1000"`` -> ``("ddim", 1000)``, with a clear error."""
    sampler, _, steps = text.partition(":")
    if sampler not in SWEEP or not steps.isdigit():
        raise SystemExit(
            f"--points takes SAMPLER:STEPS with SAMPLER in {list(SWEEP)}, got {text!r}"
        )
    return sampler, int(steps)


def _merged(old: SamplingCostSweep, new: SamplingCostSweep) -> SamplingCostSweep:
    """``old`` with ``new``'s points added (replacing the same (sampler, steps)) and noted."""
    if (old.n, old.guidance) != (new.n, new.guidance):
        raise SystemExit(
            f"cannot merge: the file has n={old.n}, guidance {old.guidance:g}; this run "
            f"n={new.n}, guidance {new.guidance:g}."
        )
    added = {(c.sampler, c.steps) for c in new.costs}
    order = {name: i for i, name in enumerate(SWEEP)}
    costs = sorted([c for c in old.costs if (c.sampler, c.steps) not in added] + list(new.costs),
                   key=lambda c: (order.get(c.sampler, len(order)), c.steps))  # fmt: skip
    note = (f"Points {', '.join(f'{s} {k}' for s, k in sorted(added))} added on {new.date} by "
            f"'{new.command}' on {new.machine}; their timing: {new.timing}. "
            f"{new.notes[-1].replace('of the whole sweep', 'of this run')}")  # fmt: skip
    return dataclasses.replace(old, costs=tuple(costs), notes=(*old.notes, note))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="digits scored per run (x10)")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--timing-n", type=int, default=20, help="digits per timing run")
    parser.add_argument("--timing-repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=repo_data_dir() / SAMPLING_COST_FILE)
    parser.add_argument("--samplers", nargs="*", default=list(SWEEP), choices=list(SWEEP))
    parser.add_argument("--max-steps", type=int, default=1000, help="skip longer runs (tests)")
    parser.add_argument("--points", nargs="*", default=None, metavar="SAMPLER:STEPS",
                        help="measure only these, e.g. ddim:1000 (default: all)")  # fmt: skip
    parser.add_argument("--merge", action="store_true",
                        help="merge the measured points into the existing --out file")  # fmt: skip
    parser.add_argument(
        "--solver-goal",
        action="store_true",
        help="measure DPM-Solver++ 10-20 steps vs DDIM-50 instead (see above)",
    )
    parser.add_argument("--record", type=Path, default=repo_data_dir() / PRETRAINED_RECORD,
                        help="the model record --solver-goal adds its key to")  # fmt: skip
    args = parser.parse_args()

    model, schedule = load_pretrained("mnist")
    if args.solver_goal:
        solver_goal(model, schedule, args.record)
        return
    runs = [(s, k) for s in args.samplers for k in SWEEP[s] if k <= args.max_steps]
    if args.points is not None:
        runs = [_point(text) for text in args.points]
    threads = torch.get_num_threads()
    print(
        f"{len(runs)} runs, n={args.n}, guidance {args.guidance:g}, {threads} threads", flush=True
    )

    costs = []
    start = time.perf_counter()
    for sampler, steps in runs:  # 1. quality
        cost = measure_sampling_cost(model, schedule, sampler, steps, n=args.n,
                                     guidance=args.guidance, seed=0)  # fmt: skip
        costs.append(cost)
        print(f"  {sampler:>13} {steps:>4}: agreement {cost.class_agreement:.3f}, FD "
              f"{cost.frechet_distance:.3f} (floor {cost.frechet_floor:.3f}), "
              f"{cost.seconds_per_image:.4f} s/image in the quality pass", flush=True)  # fmt: skip
    quality_minutes = (time.perf_counter() - start) / 60

    loads = [os.getloadavg()[0]]
    for i, (sampler, steps) in enumerate(runs):  # 2. time, separately
        seconds = time_sampling(model, schedule, sampler, steps, n=args.timing_n,
                                guidance=args.guidance, repeats=args.timing_repeats)  # fmt: skip
        costs[i] = dataclasses.replace(costs[i], seconds_per_image=round(seconds, 5))
        loads.append(os.getloadavg()[0])
        print(f"  {sampler:>13} {steps:>4}: {seconds:.4f} s/image (timing pass)", flush=True)
    total_minutes = (time.perf_counter() - start) / 60

    omp = (
        [f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"]
        if "OMP_NUM_THREADS" in os.environ
        else []
    )
    sweep = SamplingCostSweep(
        costs=tuple(
            dataclasses.replace(
                c,
                class_agreement=round(c.class_agreement, 4),
                frechet_distance=round(c.frechet_distance, 4),
                frechet_floor=round(c.frechet_floor, 4),
                frechet_floor_low=round(c.frechet_floor_low, 4),
                frechet_floor_high=round(c.frechet_floor_high, 4),
            )  # fmt: skip
            for c in costs
        ),
        command=" ".join([*omp, "python scripts/measure_sampling_cost.py", *sys.argv[1:]]),
        machine=f"{cpu_model_name()}, {os.cpu_count()} CPUs, {threads} torch threads, "
        f"torch {torch.__version__}",
        date=datetime.date.today().isoformat(),
        timing=(
            f"a separate pass after the quality pass: the fastest of {args.timing_repeats} runs "
            f"of a fixed batch of {args.timing_n} digits per (sampler, steps); 1-minute load "
            f"average {min(loads):.1f}-{max(loads):.1f} during it (this job alone: {threads}; "
            "more: other work was running too)"
        ),
        n=args.n,
        guidance=args.guidance,
        notes=(
            "ddpm with fewer than T = 1000 steps is DDPM's ancestral step with the posterior "
            "variance over an evenly spaced subsequence of timesteps, i.e. DDIM with eta = 1 "
            "(Song et al. 2021, Eq. 16); ddpm 1000 is DDPM's Algorithm 2.",
            "ddim: eta = 0. dpm-solver++: DPM-Solver++(2M), Lu et al. 2022, Algorithm 2. Both "
            "on the same evenly spaced timesteps.",
            f"Quality: {args.n} class-balanced digits ({args.n // 10} per digit), seed 0, Frechet "
            "distance against the 500 held-out digits, in the course's classifier features; "
            "the floor is real training digits vs the held-out digits at the same n (mean and "
            "range of 10 draws).",
            f"Wall time of the whole sweep: {total_minutes:.1f} minutes ({quality_minutes:.1f} "
            "for the quality pass).",
        ),
    )
    if args.merge:
        sweep = _merged(load_sampling_cost(args.out), sweep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(sweep.to_json(), indent=2) + "\n"
    atomic_write(args.out, lambda f: f.write(text.encode()))
    print(f"wrote {args.out} ({total_minutes:.1f} minutes)")


if __name__ == "__main__":
    main()
