"""Measure classifier-free guidance on the shipped MNIST model: the guidance curve, guidance in
a limited interval of noise levels, and the recommended setting (lesson 09, issue 12).

Every run: ``--n`` class-balanced digits (``balanced_labels``: n / 10 per digit), one seed,
scored with the course's metric: class agreement (the shipped classifier) and the Frechet
distance against the 500 held-out digits, next to the class-balanced real-vs-real floor at
the same n (``frechet_floor_draws``: mean and range of 10 draws).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_guidance.py --curve       # w = 0 ... 6
    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_guidance.py --grid        # w x intervals
    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_guidance.py \\
        --points ddim:50:3:200-800 ddpm:1000:2:300-900 --seeds 0 1 2            # single settings

A point is ``SAMPLER:STEPS:W[:LO-HI][:eta=ETA][:auto=WA]``: sampler ``ddim``, ``ddpm`` or
``dpm-solver++``, the number of steps, the guidance scale w, optionally the guidance interval
(guide only the steps with LO < t <= HI), DDIM's eta, and autoguidance WA by the ``--guide``
model (Karras et al. 2024; ``sample(..., guide_model=..., autoguidance=WA)``).

``--model`` measures another model than the shipped ``mnist``: a pretrained name or a training
checkpoint (its EMA weights), e.g. a bigger network guided by the shipped one::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_guidance.py \\
        --model runs/patched/checkpoint.pt --guide mnist --out /tmp/patched.json \\
        --points ddim:50:1.25:600-900:eta=1:auto=2 --seeds 0 1 2

Every run is merged into the results file (``--out``, default data/results/guidance.json): a
run with the same settings and seed replaces the old one, the others are kept, so the
measurements can be made in chunks.

``--recommend POINT`` measures one point at ``--seeds`` and writes it into the model's record
(data/pretrained/mnist_unet.json) as the keys "recommended" (keyword arguments for
``sample()``) and "recommended_scores" (per seed, and the goal: class agreement >= 0.99 and
Frechet distance <= 1.25x the floor), keeping every other key.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffusion_edu import load_pretrained
from diffusion_edu.checkpoints import CheckpointError, load_checkpoint
from diffusion_edu.data import repo_data_dir
from diffusion_edu.device import cpu_model_name
from diffusion_edu.files import atomic_write
from diffusion_edu.metrics import (
    balanced_labels,
    class_agreement,
    frechet_distance,
    frechet_floor_draws,
    reference_digits,
)
from diffusion_edu.pretrained import PRETRAINED_MODELS
from diffusion_edu.samplers import (
    SAMPLERS,
    check_guidance_interval,
    model_calls,
    sample,
)

RESULTS_FILE = "results/guidance.json"
PRETRAINED_RECORD = "pretrained/mnist_unet.json"
CURVE = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)
GRID_GUIDANCE = (2.0, 3.0, 4.0)
# Timestep intervals (t_lo, t_hi] on the shipped cosine schedule (T = 1000). sigma =
# sqrt((1 - alpha_bar) / alpha_bar) is 0.17, 0.34, 0.52, 1.01, 1.98, 3.10, 6.36 at t = 100,
# 200, 300, 500, 700, 800, 900 (Kynkaanniemi et al. 2024 guide at sigma in (0.28, 5.42] for
# SD-XL, (0.34, 1.02] for DiT-XL/2: t in (167, 882] and (202, 502] here).
GRID_INTERVALS = (
    (200, 800), (100, 700), (300, 900), (0, 600), (200, 500), (500, 1000), (0, 400),
)  # fmt: skip
SCORE_KEYS = ("class_agreement", "frechet_distance", "fd_over_floor", "meets_goal")
AGREEMENT_GOAL = 0.99
FD_GOAL_RATIO = 1.25


@dataclass(frozen=True)
class Setting:
    """One way of sampling: what ``sample()`` is given (besides labels and seed)."""

    sampler: str
    steps: int
    guidance: float
    guidance_interval: tuple[int, int] | None = None
    eta: float = 0.0
    autoguidance: float = 1.0

    @property
    def name(self) -> str:
        interval = (
            "" if self.guidance_interval is None else ":{}-{}".format(*self.guidance_interval)
        )
        eta = f":eta={self.eta:g}" if self.sampler == "ddim" and self.eta else ""
        auto = f":auto={self.autoguidance:g}" if self.autoguidance != 1.0 else ""
        return f"{self.sampler}:{self.steps}:{self.guidance:g}{interval}{eta}{auto}"

    def sample_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``sample()``: DDPM takes all T steps (no ``steps``)."""
        kwargs: dict[str, Any] = {"sampler": self.sampler, "guidance": self.guidance}
        if self.sampler != "ddpm":
            kwargs["steps"] = self.steps
        if self.sampler == "ddim":
            kwargs["eta"] = self.eta
        if self.guidance_interval is not None:
            kwargs["guidance_interval"] = self.guidance_interval
        if self.autoguidance != 1.0:
            kwargs["autoguidance"] = self.autoguidance  # with guide_model=... (not JSON)
        return kwargs

    def model_calls(self, T: int) -> int:
        """Network evaluations per image: two at a guided step, one elsewhere (and Heun's
        second call per step: :func:`diffusion_edu.samplers.model_calls`)."""
        steps = None if self.sampler == "ddpm" else self.steps
        return model_calls(self.sampler, T, steps, self.guidance, self.guidance_interval)


def parse_point(text: str, T: int = 1000) -> Setting:
    """``"ddim:50:3:200-800"`` -> Setting("ddim", 50, 3.0, (200, 800)), with a clear error."""
    parts = text.split(":")
    try:
        sampler, steps, guidance = parts[0], int(parts[1]), float(parts[2])
        interval, eta, auto = None, 0.0, 1.0
        for extra in parts[3:]:
            if extra.startswith("eta="):
                eta = float(extra[4:])
            elif extra.startswith("auto="):
                auto = float(extra[5:])
            else:
                lo, hi = extra.split("-")
                interval = check_guidance_interval((int(lo), int(hi)), T)
    except (IndexError, ValueError) as error:
        raise SystemExit(
            f"a point is SAMPLER:STEPS:W[:LO-HI][:eta=ETA][:auto=WA], e.g. ddim:50:3:200-800; "
            f"got {text!r} "
            f"({error})"
        ) from None
    if sampler not in SAMPLERS:
        raise SystemExit(
            f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r} in {text!r}"
        )
    if sampler == "ddpm" and steps != T:
        raise SystemExit(f"ddpm takes all T={T} steps: write ddpm:{T}:..., got {text!r}")
    return Setting(sampler, steps, guidance, interval, eta, auto)


def measure(
    model: torch.nn.Module,
    schedule: Any,
    setting: Setting,
    n: int,
    seed: int,
    heldout: torch.Tensor,
    floor: float,
    guide: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Sample n balanced digits with ``setting`` and ``seed`` (autoguided by ``guide``); score
    them."""
    if setting.autoguidance != 1.0 and guide is None:
        raise SystemExit(f"{setting.name} asks for autoguidance: give --guide MODEL")
    labels = balanced_labels(n)
    start = time.perf_counter()
    images = sample(model, schedule, labels=labels, seed=seed, progress=False,
                    guide_model=guide if setting.autoguidance != 1.0 else None,
                    **setting.sample_kwargs())  # fmt: skip
    seconds = time.perf_counter() - start
    agreement = class_agreement(images, labels)
    fd = frechet_distance(images, heldout)
    return {
        "setting": setting.name,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(setting).items()},
        "seed": seed,
        "n": n,
        "class_agreement": round(agreement, 4),
        "frechet_distance": round(fd, 4),
        "fd_over_floor": round(fd / floor, 3),
        "meets_goal": bool(agreement >= AGREEMENT_GOAL and fd <= FD_GOAL_RATIO * floor),
        "model_calls_per_image": setting.model_calls(schedule.T),
        "guide_calls_per_image": setting.model_calls(schedule.T)
        if setting.autoguidance != 1
        else 0,
        "seconds_per_image": round(seconds / n, 4),
    }


def _key(run: dict[str, Any]) -> tuple[str, int, int]:
    return run["setting"], run["seed"], run["n"]


def merge(path: Path, runs: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any]:
    """The results file with ``runs`` added (replacing runs with the same setting, seed, n)."""
    record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    new_keys = {_key(r) for r in runs}
    kept = [r for r in record.get("runs", []) if _key(r) not in new_keys]
    commands = record.get("commands", [])
    if header["command"] not in commands:
        commands.append(header["command"])
    record.update({k: v for k, v in header.items() if k != "command"})
    record["commands"] = commands
    record["runs"] = sorted(kept + runs, key=lambda r: (r["sampler"], r["steps"], r["eta"],
                                                         r["guidance_interval"] or [-1, -1],
                                                         r["guidance"], r.get("autoguidance", 1.0),
                                                         r["seed"]))  # fmt: skip
    return record


def setting_from_kwargs(kwargs: dict[str, Any]) -> Setting:
    """The Setting a record's "recommended" keyword arguments describe."""
    sampler = kwargs.get("sampler", "ddim")
    interval = kwargs.get("guidance_interval")
    return Setting(
        sampler=sampler,
        steps=1000 if sampler == "ddpm" else int(kwargs.get("steps", 50)),
        guidance=float(kwargs.get("guidance", 1.0)),
        guidance_interval=None if interval is None else (int(interval[0]), int(interval[1])),
        eta=float(kwargs.get("eta", 0.0)),
        autoguidance=float(kwargs.get("autoguidance", 1.0)),
    )


def recommended_keys(
    setting: Setting,
    runs: list[dict[str, Any]],
    floor: dict[str, Any],
    command: str,
    guide: str | None = None,
) -> dict[str, Any]:
    """The model record's "recommended" (``sample()`` keyword arguments) and
    "recommended_scores" (what they gave, seed by seed) for ``setting``; with autoguidance,
    ``guide`` is the shipped guide model's name (the record's ``guide_model``)."""
    kwargs = setting.sample_kwargs()
    if setting.autoguidance != 1.0:
        if guide not in PRETRAINED_MODELS:
            raise SystemExit(
                f"a recommended setting with autoguidance names its guide as a shipped model "
                f"({', '.join(PRETRAINED_MODELS)}), got {guide!r}"
            )
        kwargs["guide_model"] = guide
    if "guidance_interval" in kwargs:
        kwargs["guidance_interval"] = list(kwargs["guidance_interval"])  # JSON has no tuples
    agreements = [r["class_agreement"] for r in runs]
    distances = [r["frechet_distance"] for r in runs]
    n = runs[0]["n"]
    scores = {
        "evaluated_on": f"{n} samples ({n // 10} per digit) per seed, CPU; Frechet distance "
        "against the 500 held-out digits; floor: class-balanced real training digits vs the "
        "held-out digits at the same n (mean of 10 draws)",
        "command": command,
        "goal": f"class agreement >= {AGREEMENT_GOAL} and Frechet distance <= "
        f"{FD_GOAL_RATIO}x the floor",
        "frechet_floor_same_n": floor["mean"],
        "frechet_floor_range": [floor["low"], floor["high"]],
        "model_calls_per_image": runs[0]["model_calls_per_image"],
        "seeds": {str(r["seed"]): {k: r[k] for k in SCORE_KEYS} for r in runs},
        "class_agreement_range": [min(agreements), max(agreements)],
        "frechet_distance_range": [min(distances), max(distances)],
        "meets_goal_every_seed": all(r["meets_goal"] for r in runs),
    }
    return {"recommended": kwargs, "recommended_scores": scores}


def measure_floor(n: int) -> dict[str, Any]:
    """The class-balanced real-vs-real floor at n: mean, lowest and highest of 10 draws."""
    draws = frechet_floor_draws(n)
    return {"n": n, "mean": round(float(np.mean(draws)), 4), "low": round(min(draws), 4),
            "high": round(max(draws), 4), "draws": len(draws)}  # fmt: skip


def load_model(spec: str) -> tuple[torch.nn.Module, Any]:
    """``(model, schedule)`` of a pretrained name (``load_pretrained``) or of a training
    checkpoint's EMA weights (a path ending in .pt)."""
    if spec.endswith(".pt"):
        try:
            checkpoint = load_checkpoint(spec)
        except (CheckpointError, FileNotFoundError) as error:
            raise SystemExit(f"cannot load the model {spec}: {error}") from None
        if checkpoint.schedule is None:
            raise SystemExit(f"{spec} has no noise schedule: it is not a diffusion model")
        return checkpoint.build_model(ema=True).eval(), checkpoint.schedule
    return load_pretrained(spec)


def model_description(model: str, guide: str | None) -> str:
    """The model of a results file, in words."""
    name = f"load_pretrained({model!r})" if not model.endswith(".pt") else f"the checkpoint {model}"
    return name if guide is None else f"{name}, autoguided by {guide} at points with auto=WA"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="digits per run (a multiple of 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--curve", action="store_true", help="DDIM-50, full guidance, w = 0..6")
    parser.add_argument("--grid", action="store_true",
                        help="DDIM-50, w in 2, 3, 4 x the intervals in GRID_INTERVALS")  # fmt: skip
    parser.add_argument(
        "--points",
        nargs="*",
        default=[],
        metavar="POINT",
        help="SAMPLER:STEPS:W[:LO-HI][:eta=ETA], e.g. ddim:50:3:200-800",
    )
    parser.add_argument(
        "--recommend",
        default=None,
        metavar="POINT",
        help="measure POINT at --seeds and write it into the model record",
    )
    parser.add_argument(
        "--model",
        default="mnist",
        help="a pretrained name or a training checkpoint (default: mnist)",
    )
    parser.add_argument("--guide", default=None, metavar="MODEL",
                        help="the weaker model for points with auto=WA: a pretrained name or a "
                        "training checkpoint")  # fmt: skip
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results file (default, for --model mnist: data/{RESULTS_FILE})",
    )
    parser.add_argument("--record", type=Path, default=None,
                        help=f"model record for --recommend (default, for --model mnist: "
                        f"data/{PRETRAINED_RECORD})")  # fmt: skip
    args = parser.parse_args()
    if args.model != "mnist" and (args.out is None or (args.recommend and args.record is None)):
        parser.error(
            "--model other than mnist: give --out (and --record with --recommend), so "
            "the shipped model's files are not mixed with another model's runs"
        )
    args.out = args.out or repo_data_dir() / RESULTS_FILE
    args.record = args.record or repo_data_dir() / PRETRAINED_RECORD

    model, schedule = load_model(args.model)
    guide = None if args.guide is None else load_model(args.guide)[0]
    settings = [parse_point(p, schedule.T) for p in args.points]
    if args.curve:
        settings += [Setting("ddim", 50, w) for w in CURVE]
    if args.grid:
        settings += [Setting("ddim", 50, w, i) for w in GRID_GUIDANCE for i in GRID_INTERVALS]
    if args.recommend is not None:
        settings.append(parse_point(args.recommend, schedule.T))
    if not settings:
        parser.error("nothing to measure: give --curve, --grid, --points or --recommend")

    heldout, _ = reference_digits("test")
    floor = measure_floor(args.n)
    threads = torch.get_num_threads()
    print(f"{len(settings)} settings x seeds {args.seeds}, n={args.n}, {threads} threads; "
          f"floor {floor['mean']:.3f} ({floor['low']:.3f}-{floor['high']:.3f})",
          flush=True)  # fmt: skip
    omp = [f"OMP_NUM_THREADS={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ]
    header = {
        "command": " ".join([*omp, "python scripts/measure_guidance.py", *sys.argv[1:]]),
        "machine": f"{cpu_model_name()}, {os.cpu_count()} CPUs, {threads} torch threads, "
        f"torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "frechet_floor": floor,
        "goal": f"class agreement >= {AGREEMENT_GOAL} and Frechet distance <= {FD_GOAL_RATIO}x "
        "the floor (issue 12)",
        "notes": [
            f"Model: {model_description(args.model, args.guide)} (EMA weights). Labels: "
            "balanced_labels(n), n / 10 per digit. Frechet distance against the 500 held-out "
            "digits in the course's classifier features; the floor: class-balanced subsets of "
            "the real training digits vs the held-out digits at the same n (mean, lowest and "
            "highest of 10 draws).",
            "guidance_interval [t_lo, t_hi]: guidance w at the steps whose timestep t has "
            "t_lo < t <= t_hi, the plain conditional prediction (w = 1, one model call) at "
            "the others (Kynkaanniemi et al. 2024). None: every step.",
            "seconds_per_image: wall time of the scored run (one batch of n), on a shared "
            "machine: a rough figure; model_calls_per_image is exact.",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs, start = [], time.perf_counter()
    for setting in settings:
        for seed in args.seeds:
            run = measure(model, schedule, setting, args.n, seed, heldout, floor["mean"], guide)
            runs.append(run)
            print(f"  {setting.name:>24} seed {seed}: agreement {run['class_agreement']:.3f}, "
                  f"FD {run['frechet_distance']:.3f} ({run['fd_over_floor']:.2f}x floor), "
                  f"{run['model_calls_per_image']} calls, {run['seconds_per_image']:.3f} s/image"
                  f"{'  GOAL' if run['meets_goal'] else ''}", flush=True)  # fmt: skip
            # Merged after every run: an interrupted job keeps what it measured.
            text = json.dumps(merge(args.out, [run], header), indent=2) + "\n"
            atomic_write(args.out, lambda f, text=text: f.write(text.encode()))
    minutes = (time.perf_counter() - start) / 60
    print(f"merged {len(runs)} runs into {args.out} ({minutes:.1f} minutes)")
    if args.recommend is not None:
        chosen = parse_point(args.recommend, schedule.T)
        chosen_runs = [r for r in runs if r["setting"] == chosen.name]
        command = f"python scripts/measure_guidance.py --recommend {args.recommend} --seeds " + (
            " ".join(map(str, args.seeds))
        )
        if args.guide is not None:
            command += f" --guide {args.guide}"
        model_record = json.loads(args.record.read_text())
        model_record.update(recommended_keys(chosen, chosen_runs, floor, command, args.guide))
        text = json.dumps(model_record, indent=2) + "\n"
        atomic_write(args.record, lambda f: f.write(text.encode()))
        print(f"wrote the keys recommended and recommended_scores into {args.record}")


if __name__ == "__main__":
    main()
