"""Turn a training run into the shipped pretrained model, and measure it.

    python scripts/make_pretrained.py --checkpoint runs/small10/checkpoint.pt \\
        --command "python -m diffusion_edu train ..."

Writes ``data/pretrained/mnist_unet.pt`` (the EMA weights, config and schedule only: no
optimiser state, so it stays small) and ``data/pretrained/mnist_unet.json`` (the training
command, and the quality measured here with diffusion_edu.metrics on the 500 held-out digits:
DDIM-50 at guidance 1 and 2, and DDPM-1000 against DDIM-50).

A flow model (trained with ``--prediction flow``; lesson 12's ``mnist-flow``) is scored with
50 Euler steps instead, and without the DDPM comparison::

    python scripts/make_pretrained.py --checkpoint runs/flow/checkpoint.pt \
        --out data/pretrained/mnist_flow.pt --recommended '{"sampler": "heun", ...}' \
        --command "python -m diffusion_edu train ... --prediction flow"

The record's recommended sampling settings ("recommended": keyword arguments for
``sample()``, first chosen with ``scripts/measure_guidance.py``) are measured again here on the
new weights, at ``--recommended-seeds`` ("recommended_scores"); ``--recommended JSON`` sets
other ones. Keys that other scripts added to the old record (e.g. "dpm_solver_vs_ddim50" by
``scripts/measure_sampling_cost.py --solver-goal``) are kept, and the script names each one
and the command that measures it again: they describe the old weights until then.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from diffusion_edu.checkpoints import load_checkpoint, save_checkpoint
from diffusion_edu.data import load_mnist
from diffusion_edu.files import atomic_write
from diffusion_edu.metrics import (
    class_agreement,
    frechet_distance,
    frechet_floor,
    reference_digits,
    stray_pixels,
)
from diffusion_edu.samplers import sample
from diffusion_edu.targets import prediction_of

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, as a module
import measure_guidance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Keys other scripts write into the record, and the command that measures each again.
OTHER_KEYS: dict[str, str] = {
    "dpm_solver_vs_ddim50": "python scripts/measure_sampling_cost.py --solver-goal",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a train checkpoint")
    parser.add_argument("--command", required=True, help="the exact command that trained it")
    parser.add_argument("--out", type=Path, default=ROOT / "data/pretrained/mnist_unet.pt")
    parser.add_argument("--per-class", type=int, default=50, help="samples per digit to score")
    parser.add_argument("--ddpm-per-class", type=int, default=20,
                        help="samples per digit for the DDPM-1000 vs DDIM-50 comparison "
                        "(DDPM is 20x slower; 0 skips it)")  # fmt: skip
    parser.add_argument("--recommended", type=json.loads, default=None, metavar="JSON",
                        help="recommended sample() settings, e.g. '{\"sampler\": \"ddim\", "
                        "\"steps\": 50, \"guidance\": 3, \"guidance_interval\": [200, 800]}' "
                        "(default: the old record's)")  # fmt: skip
    parser.add_argument("--recommended-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds the recommended settings are measured at")  # fmt: skip
    args = parser.parse_args()
    record_path = args.out.with_suffix(".json")
    old = json.loads(record_path.read_text()) if record_path.exists() else {}

    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model(ema=True)
    save_checkpoint(args.out, model, checkpoint.schedule, step=checkpoint.step,
                    train_config=checkpoint.train_config, loss=checkpoint.loss)  # fmt: skip

    heldout = load_mnist("test", verbose=False).images
    labels = torch.arange(10).repeat_interleave(args.per_class)
    record: dict[str, object] = {
        "command": args.command,
        "steps": checkpoint.step,
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_config": str(checkpoint.model_config),
        "evaluated_on": f"{len(labels)} samples ({args.per_class} per digit), seed 0, CPU, "
        f"{torch.get_num_threads()} threads; Frechet distance against the 500 held-out digits",
    }
    n = len(labels)
    record["frechet_floor_same_n"] = round(frechet_floor(n), 3)
    record["real_heldout_stray_pixels_per_image"] = round(float(stray_pixels(heldout).mean()), 3)

    def score(labels: torch.Tensor, sampler: str, steps: int | None, guidance: float) -> dict:
        """Sample one image per label (seed 0) and measure it against the held-out digits."""
        start = time.perf_counter()
        images = sample(model, checkpoint.schedule, labels=labels, sampler=sampler, steps=steps,
                        guidance=guidance, seed=0, progress=sampler == "ddpm")  # fmt: skip
        seconds = time.perf_counter() - start
        return {
            "class_agreement": round(class_agreement(images, labels), 4),
            "frechet_distance": round(frechet_distance(images, heldout), 3),
            "stray_pixels_per_image": round(float(stray_pixels(images).mean()), 3),
            "seconds_per_image": round(seconds / len(labels), 4),
        }

    # 50 deterministic steps: DDIM for a model on the diffusion path, Euler for a flow model
    sampler = "euler" if prediction_of(model) == "flow" else "ddim"
    for guidance in (1.0, 2.0):
        key = f"{sampler}50_guidance{guidance:g}"
        record[key] = score(labels, sampler, 50, guidance)
        print(key, record[key])
    if args.ddpm_per_class > 0 and sampler == "ddim":  # both samplers, same labels and seed
        labels = torch.arange(10).repeat_interleave(args.ddpm_per_class)
        floor = round(frechet_floor(len(labels)), 3)
        comparison: dict[str, object] = {
            "samples": len(labels), "guidance": 2.0, "frechet_floor_same_n": floor,
        }  # fmt: skip
        for name, sampler, steps in (("ddim50", "ddim", 50), ("ddpm1000", "ddpm", None)):
            comparison[name] = score(labels, sampler, steps, 2.0)
            print(name, comparison[name])
        record["ddim50_vs_ddpm1000"] = comparison
    recommended = args.recommended if args.recommended is not None else old.get("recommended")
    if recommended:  # measured again on these weights, seed by seed
        setting = measure_guidance.setting_from_kwargs(recommended)
        n = len(torch.arange(10).repeat_interleave(args.per_class))
        floor = measure_guidance.measure_floor(n)
        heldout_digits, _ = reference_digits("test")
        guide_name = recommended.get("guide_model")  # autoguidance by a shipped model
        guide = None if guide_name is None else measure_guidance.load_model(guide_name)[0]
        runs = [
            measure_guidance.measure(model, checkpoint.schedule, setting, n, seed,
                                     heldout_digits, floor["mean"], guide)
            for seed in args.recommended_seeds
        ]  # fmt: skip
        command = "python scripts/make_pretrained.py (the recommended settings, seeds " + (
            " ".join(map(str, args.recommended_seeds)) + ")"
        )
        record.update(measure_guidance.recommended_keys(setting, runs, floor, command, guide_name))
        print("recommended", record["recommended"], record["recommended_scores"]["seeds"])
    for key, value in old.items():
        if key not in record:
            record[key] = value
            again = OTHER_KEYS.get(key, "the script that wrote it")
            print(f"kept the key {key!r} of the old record: it describes the old weights until "
                  f"you run {again}")  # fmt: skip
    atomic_write(record_path, lambda f: f.write(json.dumps(record, indent=2).encode() + b"\n"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {record_path}")


if __name__ == "__main__":
    main()
