"""Train, measure and write the shipped latent-diffusion model (lesson 11).

    python scripts/make_pretrained_latent.py --ae-steps 2000 --steps 4000 --denoiser unet \\
        --guidance 2

Both stages of Rombach et al. (2022) in the one loop:

1. the autoencoder (:func:`diffusion_edu.latent.train_autoencoder`) on the 4,500 bundled
   training digits; its reconstruction of the 500 held-out digits is measured (MSE, PSNR, and
   the class agreement of the reconstructions: the ceiling for the latent model's samples);
2. the scale factor (1 / std of the training latents), then a class-conditional denoiser (a
   DiT with patch size 1 on the 7 x 7 x 4 latents, or a U-Net) trained with
   :class:`~diffusion_edu.DiffusionLoss` on the scaled latents, on the linear schedule by
   default (as LDM and Stable Diffusion: latents are not clipped while sampling, and the
   cosine schedule's alpha_bar_T = 2.4e-9 made a latent DiT's samples blow up);
3. class agreement and Frechet distance of 500 samples (50 per digit, DDIM-50, seed 0) at
   guidance 1 and at the recommended guidance, and seconds per image, as
   ``scripts/make_pretrained.py`` measures the pixel U-Net.

Writes ``--out`` (default ``data/pretrained/mnist_latent.pt``: the EMA weights, config and
schedule only) and the record next to it (``.json``), and keeps the two training checkpoints
(to resume or inspect) under ``--work``. Register the file in
``diffusion_edu.pretrained.PRETRAINED_MODELS`` once it exists.

The shipped model (the command above; one thread of a 2-core AMD EPYC without bf16, other jobs
running): the autoencoder in 110 s (held-out reconstructions: MSE 0.0088, 26.6 dB, read right
98.4% of the time against 98.6% for the real digits), the U-Net denoiser (496,228 parameters)
4,000 steps in 897 s; 500 samples, DDIM-50, seed 0: 89.8% / Frechet distance 0.63 at guidance
1, 99.6% / 0.75 at guidance 2 (the floor: 0.29). The DiT denoiser (``--denoiser dit``) learns
more slowly (about twice the U-Net's steps; docs/performance.md): the shipped ``mnist-dit`` is

    python scripts/make_pretrained_latent.py --ae-steps 2000 --steps 8000 --denoiser dit \
        --guidance 2 --out data/pretrained/mnist_dit.pt --work runs/dit

(8,000 steps in 2,548 s on two threads; 86.0% / 1.13 at guidance 1, 99.4% / 0.72 at guidance 2;
the same autoencoder weights as ``mnist-latent``, same command and seed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from diffusion_edu.checkpoints import save_checkpoint
from diffusion_edu.data import load_mnist
from diffusion_edu.files import atomic_write
from diffusion_edu.latent import (
    AUTOENCODER_TRAINING,
    encode_dataset,
    latent_diffusion,
    psnr,
    reconstruction_mse,
    train_autoencoder,
)
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.metrics import class_agreement, frechet_distance, frechet_floor
from diffusion_edu.models import AutoencoderConfig, DiTConfig, UNetConfig
from diffusion_edu.recipes import LATENT_DIT_SIZES, LATENT_UNET
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import make_schedule
from diffusion_edu.training import DiffusionLoss

ROOT = Path(__file__).resolve().parents[1]


def parameters(model: torch.nn.Module) -> int:
    """All the weights, frozen ones too (count_parameters counts the trainable ones only)."""
    return sum(p.numel() for p in model.parameters())


#: The denoisers on the 7 x 7 x 4 latents (10 classes): the DiT's shape is the default DiT's
#: (~0.47M parameters), the U-Net has no attention (496,228 parameters).
DENOISERS: dict[str, DiTConfig | UNetConfig] = {
    "dit": LATENT_DIT_SIZES["default"],
    "unet": LATENT_UNET,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ae-steps", type=int, default=AUTOENCODER_TRAINING.steps,
                        help="autoencoder training steps")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3000, help="diffusion training steps")
    parser.add_argument("--minutes", type=float, default=None,
                        help="minutes for the diffusion training (--steps: at most)")  # fmt: skip
    parser.add_argument("--denoiser", choices=sorted(DENOISERS), default="dit")
    parser.add_argument("--schedule", choices=["linear", "cosine", "sigmoid"], default="linear",
                        help="noise schedule (not cosine: its alpha_bar_T = 2.4e-9 makes "
                        "unclipped latent samples blow up)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=2.0,
                        help="the recommended guidance, measured besides 1")  # fmt: skip
    parser.add_argument("--per-class", type=int, default=50, help="samples per digit to score")
    parser.add_argument("--out", type=Path, default=ROOT / "data/pretrained/mnist_latent.pt")
    parser.add_argument("--work", type=Path, default=ROOT / "runs/latent",
                        help="folder for the training checkpoints")  # fmt: skip
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    train, heldout = load_mnist("train", verbose=False), load_mnist("test", verbose=False)

    # 1. the autoencoder
    ae_config = AutoencoderConfig()
    start = time.perf_counter()
    ae_train = TrainConfig(**{**AUTOENCODER_TRAINING.to_dict(), "steps": args.ae_steps,
                              "seed": args.seed})  # fmt: skip
    ae_trainer = train_autoencoder(train.images, ae_config, ae_train)
    ae_seconds = time.perf_counter() - start
    ae_trainer.save(args.work / "autoencoder.pt")
    autoencoder = ae_trainer.ema_model
    mse = reconstruction_mse(autoencoder, heldout.images)
    with torch.no_grad():
        recon = autoencoder.decode(autoencoder.encode(heldout.images))
    autoencoder_record = {
        "config": str(ae_config),
        "parameters": parameters(autoencoder),
        "steps": args.ae_steps,
        "train_config": ae_train.to_dict(),
        "training_seconds": round(ae_seconds, 1),
        "heldout_reconstruction_mse": round(mse, 5),
        "heldout_reconstruction_psnr_db": round(psnr(mse), 2),
        "heldout_reconstruction_class_agreement": round(class_agreement(recon, heldout.labels), 4),
        "heldout_real_class_agreement": round(class_agreement(heldout.images, heldout.labels), 4),
    }
    print("autoencoder", autoencoder_record)

    # 2. the latent model: scale factor, scaled latents, diffusion training in the loop
    torch.manual_seed(args.seed)
    model = latent_diffusion(autoencoder, DENOISERS[args.denoiser], train.images)
    latents = encode_dataset(model, train.images)  # (4500, 4, 7, 7), std ~ 1
    schedule = make_schedule(args.schedule)
    loss = DiffusionLoss(schedule, min_snr_gamma=5.0, cond_dropout=0.1)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         warmup_steps=min(100, args.steps), ema_decay=0.995, seed=args.seed,
                         minutes=args.minutes)  # fmt: skip
    trainer = Trainer(model, loss, TensorBatches(latents, train.labels), config,
                      desc=f"latent {args.denoiser}")  # fmt: skip
    start = time.perf_counter()
    for _ in trainer.run():
        pass
    seconds = time.perf_counter() - start
    trainer.save(args.work / "diffusion.pt", extra={"command": command})
    ema = trainer.ema_model.eval()
    save_checkpoint(args.out, ema, schedule, step=trainer.step, train_config=config.to_dict(),
                    loss=loss.to_dict())  # fmt: skip

    # 3. samples, measured against the 500 held-out digits
    labels = torch.arange(10).repeat_interleave(args.per_class)
    record: dict[str, object] = {
        "command": command,
        "steps": trainer.step,
        "training_seconds": round(seconds, 1),
        "parameters": parameters(ema),
        "denoiser_parameters": parameters(ema.denoiser),
        "model_config": str(model.config),
        "scale_factor": round(model.scale_factor, 6),
        "training_latents_std": round(float(latents.std()), 4),
        "autoencoder": autoencoder_record,
        "evaluated_on": f"{len(labels)} samples ({args.per_class} per digit), seed 0, CPU, "
        f"{torch.get_num_threads()} threads; Frechet distance against the 500 held-out digits",
        "frechet_floor_same_n": round(frechet_floor(len(labels)), 3),
    }
    for guidance in sorted({1.0, args.guidance}):
        start = time.perf_counter()
        images = sample(ema, schedule, labels=labels, sampler="ddim", steps=50,
                        guidance=guidance, seed=0, progress=True)  # fmt: skip
        per_image = (time.perf_counter() - start) / len(labels)
        key = f"ddim50_guidance{guidance:g}"
        record[key] = {
            "class_agreement": round(class_agreement(images, labels), 4),
            "frechet_distance": round(frechet_distance(images, heldout.images), 3),
            "seconds_per_image": round(per_image, 4),
        }
        print(key, record[key])
    record["recommended"] = {"sampler": "ddim", "steps": 50, "guidance": args.guidance}
    record_path = args.out.with_suffix(".json")
    atomic_write(record_path, lambda f: f.write(json.dumps(record, indent=2).encode() + b"\n"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {record_path}")


if __name__ == "__main__":
    main()
