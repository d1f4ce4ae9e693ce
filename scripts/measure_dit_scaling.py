"""Quality against training compute for three DiT sizes, with the small U-Net as a peer.

    python scripts/measure_dit_scaling.py            # the shipped record (CPU: see its file)
    python scripts/measure_dit_scaling.py --quick    # one tiny point, in seconds

Lesson 10's "scales with compute" figure (Peebles & Xie 2023, Sec. 5 and Fig. 9: FID against
training GFLOPs for DiT-S/B/L/XL). Each model trains through the one loop (``Trainer`` and
``DiffusionLoss``) with the same settings, the paper's choice of a *constant* learning rate
after a short warm-up (their Sec. 4: "constant learning rate of 1e-4"; ours is larger for
runs this short), so that every milestone of one run is a model "trained for that long",
as the paper's curves are. At each milestone the EMA weights draw ``--per-class`` samples of
every digit (DDIM-50, guidance 1: the model alone, no guidance to hide its errors) and are
scored with the course's metrics against the 500 held-out digits.

Training compute = 3 x forward FLOPs per image x batch size x steps (forward + backward,
Kaplan et al. 2020, Sec. 2.1), with the forward FLOPs counted by PyTorch
(:func:`diffusion_edu.models.forward_flops`).

Writes ``data/results/dit_scaling.json`` (or ``--out``) and, per model, its final checkpoint
under ``--runs`` (the shipped ``mnist-dit`` is made from one with scripts/make_pretrained.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.files import atomic_write
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.metrics import class_agreement, frechet_distance, frechet_floor
from diffusion_edu.models import count_parameters, forward_flops, model_for_config
from diffusion_edu.recipes import DIT_SIZES, MODEL_SIZES
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import make_schedule
from diffusion_edu.training import DiffusionLoss

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "dit-tiny": DIT_SIZES["tiny"],
    "dit-small": DIT_SIZES["small"],
    "dit-default": DIT_SIZES["default"],
    "unet-small": MODEL_SIZES["small"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--milestones",
        type=int,
        nargs="+",
        default=[250, 500, 1000, 2000],
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

    data = load_mnist("train", verbose=False)
    heldout = load_mnist("test", verbose=False).images
    labels = torch.arange(10).repeat_interleave(args.per_class)
    schedule = make_schedule("cosine")
    record: dict[str, object] = {
        "command": "python scripts/measure_dit_scaling.py" + (" --quick" if args.quick else ""),
        "machine": f"CPU, {torch.get_num_threads()} threads"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name(),
        "settings": {
            "data": "the 4,500 bundled training digits",
            "schedule": "cosine",
            "batch_size": args.batch_size,
            "lr": args.lr,
            "lr_schedule": "100-step warm-up, then constant",
            "ema_decay": 0.995,
            "min_snr_gamma": 5,
            "label_dropout": 0.1,
            "scored_with": f"{len(labels)} samples ({args.per_class} per digit), DDIM-50, "
            "guidance 1, seed 0, EMA weights; Frechet distance against the 500 held-out digits",
            "training_flops": "3 x forward FLOPs per image x batch x steps",
        },  # fmt: skip
        "frechet_floor_same_n": round(frechet_floor(len(labels)), 3),
        "models": {},
    }
    for name in args.models:
        config = dataclasses.replace(MODELS[name], num_classes=10)
        torch.manual_seed(args.seed)
        model = model_for_config(config)
        flops = forward_flops(model)
        train_config = TrainConfig(
            steps=milestones[-1], batch_size=args.batch_size, lr=args.lr, min_lr=args.lr,
            warmup_steps=min(100, milestones[0]), ema_decay=0.995, seed=args.seed,
        )  # fmt: skip
        trainer = Trainer(
            model, DiffusionLoss(schedule, min_snr_gamma=5.0, cond_dropout=0.1),
            TensorBatches(data.images, data.labels), train_config, verbose=False, desc=name,
        )  # fmt: skip
        points, seconds = [], 0.0
        for milestone in milestones:
            start = time.perf_counter()
            for _ in trainer.run(milestone - trainer.step):
                pass
            seconds += time.perf_counter() - start
            start = time.perf_counter()
            images = sample(trainer.ema_model, schedule, labels=labels, sampler="ddim",
                            steps=50, seed=0, progress=False)  # fmt: skip
            sample_seconds = time.perf_counter() - start
            point = {
                "steps": milestone,
                "training_gflops": round(3 * flops * args.batch_size * milestone / 1e9, 2),
                "training_seconds": round(seconds, 1),
                "class_agreement": round(class_agreement(images, labels), 4),
                "frechet_distance": round(frechet_distance(images, heldout), 3),
                "seconds_per_image": round(sample_seconds / len(labels), 4),
            }
            points.append(point)
            print(name, point, flush=True)
        trainer.save(args.runs / name / "checkpoint.pt")
        record["models"][name] = {  # type: ignore[index]
            "config": repr(config),
            "parameters": count_parameters(model),
            "forward_mflops_per_image": round(flops / 1e6, 2),
            "seconds_per_step": round(seconds / milestones[-1], 3),
            "points": points,
        }
        write(args.out, record)
    print(f"wrote {args.out}")


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=1).encode() + b"\n"))


if __name__ == "__main__":
    main()
