"""Turn a training run into the shipped pretrained model, and measure it.

    python scripts/make_pretrained.py --checkpoint runs/small10/checkpoint.pt \\
        --command "python -m diffusion_edu train ..."

Writes ``data/pretrained/mnist_unet.pt`` (the EMA weights, config and schedule only: no
optimiser state, so it stays small) and ``data/pretrained/mnist_unet.json`` (the training
command, and the quality measured here with diffusion_edu.metrics on the 500 held-out digits).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusion_edu.checkpoints import load_checkpoint, save_checkpoint
from diffusion_edu.data import load_mnist
from diffusion_edu.files import atomic_write
from diffusion_edu.metrics import class_agreement, frechet_distance, frechet_floor, stray_pixels
from diffusion_edu.samplers import sample

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a train checkpoint")
    parser.add_argument("--command", required=True, help="the exact command that trained it")
    parser.add_argument("--out", type=Path, default=ROOT / "data/pretrained/mnist_unet.pt")
    parser.add_argument("--per-class", type=int, default=50, help="samples per digit to score")
    parser.add_argument("--ddpm-per-class", type=int, default=20,
                        help="samples per digit for the DDPM-1000 vs DDIM-50 comparison "
                        "(DDPM is 20x slower; 0 skips it)")  # fmt: skip
    args = parser.parse_args()

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

    for guidance in (1.0, 2.0):
        key = f"ddim50_guidance{guidance:g}"
        record[key] = score(labels, "ddim", 50, guidance)
        print(key, record[key])
    if args.ddpm_per_class > 0:  # both samplers on the same labels and seed
        labels = torch.arange(10).repeat_interleave(args.ddpm_per_class)
        floor = round(frechet_floor(len(labels)), 3)
        comparison: dict[str, object] = {
            "samples": len(labels), "guidance": 2.0, "frechet_floor_same_n": floor,
        }  # fmt: skip
        for name, sampler, steps in (("ddim50", "ddim", 50), ("ddpm1000", "ddpm", None)):
            comparison[name] = score(labels, sampler, steps, 2.0)
            print(name, comparison[name])
        record["ddim50_vs_ddpm1000"] = comparison
    record_path = args.out.with_suffix(".json")
    atomic_write(record_path, lambda f: f.write(json.dumps(record, indent=2).encode() + b"\n"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {record_path}")


if __name__ == "__main__":
    main()
