"""Quality against training compute for three latent DiT sizes, with the latent U-Net as a peer.

    python scripts/measure_dit_scaling.py            # the shipped record (CPU: see its file)
    python scripts/measure_dit_scaling.py --quick    # one tiny point, in seconds

Lesson 10's "scales with compute" figure (Peebles & Xie 2023, Sec. 5 and Fig. 9: FID against
training GFLOPs for DiT-S/B/L/XL). Like the paper's DiTs, which diffuse Stable Diffusion's
latents (their Sec. 3.1), ours diffuse the latents of the shipped autoencoder (the one inside
``mnist-latent`` and ``mnist-dit``: 7 x 7 x 4, patch size 1, 49 tokens); on 28 x 28 pixels a
DiT of this size did not draw digits within CPU budgets (docs/performance.md). The three sizes
are :data:`~diffusion_edu.recipes.LATENT_DIT_SIZES` (``default`` is ``mnist-dit``'s
denoiser); the peer is ``mnist-latent``'s U-Net denoiser
(:data:`~diffusion_edu.recipes.LATENT_UNET`).

Each model is one :class:`diffusion_edu.scaling.ScalingRun`: trained through the one loop
(``Trainer`` and ``DiffusionLoss``, the linear schedule as the shipped latent models) with the
same settings and the paper's choice of a *constant* learning rate after a short warm-up (their
Sec. 4: "constant learning rate of 1e-4"; ours is larger for runs this short), so that every
milestone of one run is a model "trained for that long", as the paper's curves are. At each
milestone the EMA weights draw ``--per-class`` samples of every digit (DDIM-50, seed 0) at
guidance 1 (the model alone: no guidance to hide its errors) and at guidance 2 (the shipped
models' setting), decoded to pixels and scored with the course's metrics against the 500
held-out digits.

Training compute = 3 x forward FLOPs of the denoiser per latent x batch size x steps (forward +
backward, Kaplan et al. 2020, Sec. 2.1; the latents are encoded once, before training), with the
forward FLOPs counted by PyTorch (:func:`diffusion_edu.models.forward_flops`).

Writes ``data/results/dit_scaling.json`` (or ``--out``) and, per model, its final checkpoint
under ``--runs``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.files import atomic_write
from diffusion_edu.metrics import frechet_floor
from diffusion_edu.pretrained import load_pretrained
from diffusion_edu.recipes import LATENT_DIT_SIZES, LATENT_UNET
from diffusion_edu.scaling import ScalingRun, ScalingSettings
from diffusion_edu.schedules import make_schedule

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "dit-tiny": LATENT_DIT_SIZES["tiny"],
    "dit-small": LATENT_DIT_SIZES["small"],
    "dit-default": LATENT_DIT_SIZES["default"],
    "unet": LATENT_UNET,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--milestones",
        type=int,
        nargs="+",
        default=[250, 500, 1000, 2000, 4000],
        help="optimiser steps at which each model is scored (the last ends it)",
    )
    parser.add_argument("--per-class", type=int, default=20, help="samples per digit to score")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="dit-tiny only, milestones 4 and 8, 2 samples per digit",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "data/results/dit_scaling.json")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/dit_scaling")
    args = parser.parse_args()
    if args.quick:
        args.models, args.milestones, args.per_class = ["dit-tiny"], [4, 8], 2
    milestones = sorted(set(args.milestones))
    settings = ScalingSettings(batch_size=args.batch_size, lr=args.lr, per_class=args.per_class,
                               seed=args.seed)  # fmt: skip

    train = load_mnist("train", verbose=False)
    heldout = load_mnist("test", verbose=False).images
    schedule = make_schedule("linear")
    shipped = load_pretrained("mnist-latent")[0]  # its autoencoder and scale factor
    record: dict[str, object] = {
        "command": "python scripts/measure_dit_scaling.py" + (" --quick" if args.quick else ""),
        "machine": f"CPU, {torch.get_num_threads()} threads"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name(),
        "settings": {
            "data": "the 4,500 bundled training digits, encoded once by mnist-latent's "
            "autoencoder (7 x 7 x 4 latents, scaled to std 1)",
            "schedule": "linear",
            **settings.to_dict(),
            "lr_schedule": f"{settings.warmup_steps}-step warm-up, then constant",
            "scored_with": f"{10 * args.per_class} samples ({args.per_class} per digit), "
            f"DDIM-{settings.sampler_steps}, seed {args.seed}, EMA weights, decoded to pixels, "
            f"at guidance 1 (class_agreement, frechet_distance) and {settings.guidance:g} "
            "(*_guided); Frechet distance against the 500 held-out digits",
            "training_flops": "3 x the denoiser's forward FLOPs per latent x batch x steps",
        },
        "frechet_floor_same_n": round(frechet_floor(10 * args.per_class), 3),
        "models": {},
    }
    for name in args.models:
        run = ScalingRun(MODELS[name], shipped, train.images, train.labels, heldout, schedule,
                         settings, desc=name)  # fmt: skip
        points = []
        for point in run.measure(milestones):
            points.append(point.to_dict())
            print(name, points[-1], flush=True)
        run.trainer.save(args.runs / name / "checkpoint.pt")
        record["models"][name] = {  # type: ignore[index]
            "config": repr(MODELS[name]),
            "parameters": run.parameters,
            "forward_mflops_per_image": round(run.forward_flops / 1e6, 2),
            "seconds_per_step": round(points[-1]["training_seconds"] / milestones[-1], 3),
            "points": points,
        }
        write(args.out, record)
    print(f"wrote {args.out}")


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=1).encode() + b"\n"))


if __name__ == "__main__":
    main()
