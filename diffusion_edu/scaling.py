"""Quality against training compute: lesson 10's "scales with compute" measurement.

Peebles & Xie (2023, Sec. 5, Fig. 9) train DiTs of several sizes and plot FID against training
compute (GFLOPs): at the same compute, the bigger models end lower. :class:`ScalingRun` makes
one line of such a figure for our digits: a denoiser (a latent DiT size, or the latent U-Net as
a peer) trained on the latents of a shipped latent model's autoencoder, through the one loop,
with a *constant* learning rate after a short warm-up (the paper's Sec. 4 choice, so that every
milestone of one run is a model "trained for that long"), and scored at each milestone:

* training compute (:func:`training_gflops`): 3 x the denoiser's forward FLOPs per latent x
  batch size x steps (forward + backward, Kaplan et al. 2020, Sec. 2.1);
* the EMA weights draw ``per_class`` samples of every digit (DDIM-50, seed 0) at guidance 1
  (the model alone) and at ``guidance`` (the shipped models' setting), decoded to pixels and
  scored with the course's class agreement and Frechet distance to held-out digits.

``scripts/measure_dit_scaling.py`` runs it for three DiT sizes and the U-Net and writes the
record lesson 10 plots (:func:`diffusion_edu.viz.dit_viz.plot_scaling`); the lesson recomputes
one small point with the same code.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion_edu.latent import encode_dataset, latent_diffusion
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.metrics import class_agreement, frechet_distance
from diffusion_edu.models.autoencoder import LatentDiffusion
from diffusion_edu.models.common import forward_flops, unwrap
from diffusion_edu.models.dit import DiTConfig
from diffusion_edu.models.unet import UNetConfig, count_parameters
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import DiffusionLoss

__all__ = ["ScalingSettings", "ScalingPoint", "ScalingRun", "training_gflops"]


def training_gflops(forward_flops: int, batch_size: int, steps: int) -> float:
    """Training compute in GFLOPs: ``3 * forward_flops * batch_size * steps / 1e9``.

    A backward pass costs about twice a forward pass, so one training example costs about 3x
    the forward FLOPs (Kaplan et al. 2020, Sec. 2.1; Peebles & Xie 2023, Sec. 5 use the same
    "Gflops x batch size x training steps x 3").
    """
    if forward_flops <= 0 or batch_size <= 0 or steps < 0:
        raise ValueError(
            "training_gflops needs forward_flops > 0, batch_size > 0 and steps >= 0, got "
            f"{forward_flops}, {batch_size}, {steps}."
        )
    return 3 * forward_flops * batch_size * steps / 1e9


@dataclass(frozen=True)
class ScalingSettings:
    """The settings every model of one scaling figure shares (the record stores them).

    Attributes:
        batch_size: latents per training step.
        lr: the constant learning rate after the warm-up.
        warmup_steps: linear warm-up (the first milestone, if that is shorter).
        ema_decay: the EMA whose weights are scored.
        min_snr_gamma: Min-SNR loss weighting (lesson 07).
        cond_dropout: label dropout, so that guidance works.
        per_class: samples of each digit scored at each milestone.
        guidance: the second guidance scale scored (besides 1).
        sampler_steps: DDIM steps of the scored samples.
        seed: the model's initialisation, the batches and the samples' noise.
    """

    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    min_snr_gamma: float = 5.0
    cond_dropout: float = 0.1
    per_class: int = 20
    guidance: float = 2.0
    sampler_steps: int = 50
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ScalingPoint:
    """One model after ``steps`` optimiser steps: compute spent and quality reached.

    ``class_agreement`` and ``frechet_distance`` at guidance 1; the ``*_guided`` pair at the
    settings' ``guidance``; ``seconds_per_image`` of the guidance-1 samples on this machine.
    """

    steps: int
    training_gflops: float
    training_seconds: float
    class_agreement: float
    frechet_distance: float
    class_agreement_guided: float
    frechet_distance_guided: float
    seconds_per_image: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ScalingRun:
    """Train one denoiser on a latent model's latents and score it at milestones.

    Args:
        denoiser: the denoiser's config (a :class:`DiTConfig` or :class:`UNetConfig` for the
            latent grid, e.g. :data:`~diffusion_edu.recipes.LATENT_DIT_SIZES` ``["small"]``).
        latent_model: a trained latent model whose autoencoder and scale factor are reused
            (frozen), e.g. ``load_pretrained("mnist-latent")[0]``.
        images, labels: the training digits (encoded once, here).
        heldout: the held-out digits the Frechet distance compares with.
        schedule: the noise schedule (the shipped latent models use the linear one).
        settings: shared settings (:class:`ScalingSettings`).
        desc: the progress bar's label.

    Attributes:
        model: the new :class:`~diffusion_edu.models.LatentDiffusion` (trained in place).
        trainer: its :class:`~diffusion_edu.loop.Trainer` (``trainer.save`` keeps a checkpoint).
        forward_flops: the denoiser's forward FLOPs on one latent.
        parameters: the denoiser's trainable parameters.
    """

    def __init__(
        self,
        denoiser: DiTConfig | UNetConfig,
        latent_model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        heldout: torch.Tensor,
        schedule: NoiseSchedule,
        settings: ScalingSettings | None = None,
        desc: str = "scaling",
    ) -> None:
        shipped = unwrap(latent_model)
        if not isinstance(shipped, LatentDiffusion):
            raise TypeError(
                "ScalingRun reuses a latent model's autoencoder: pass one, e.g. "
                f"load_pretrained('mnist-latent')[0], not a {type(shipped).__name__}."
            )
        if denoiser.num_classes is None:
            raise ValueError(
                "ScalingRun scores samples of each digit: the denoiser needs num_classes=10."
            )
        self.settings = settings or ScalingSettings()
        self.schedule = schedule
        self.heldout = heldout
        self.desc = desc
        s = self.settings
        torch.manual_seed(s.seed)
        self.model = latent_diffusion(
            shipped.autoencoder, denoiser, images, scale_factor=shipped.scale_factor
        )
        self._latents = encode_dataset(self.model, images)  # (N, c, h, w), std ~ 1
        self._labels = labels
        self.forward_flops = forward_flops(self.model.denoiser)
        self.parameters = count_parameters(self.model.denoiser)
        self.trainer: Trainer | None = None

    def measure(self, milestones: Sequence[int], progress: bool = True) -> Iterator[ScalingPoint]:
        """Train to each milestone in turn (optimiser steps, increasing) and score it there.

        Call once per run: the learning-rate warm-up and the run's length are set from the
        milestones.
        """
        steps = sorted(set(int(m) for m in milestones))
        if not steps or steps[0] <= 0:
            raise ValueError(f"milestones must be positive step counts, got {list(milestones)}.")
        if self.trainer is not None:
            raise RuntimeError("this ScalingRun has been measured already: make a new one.")
        s = self.settings
        config = TrainConfig(
            steps=steps[-1], batch_size=s.batch_size, lr=s.lr, min_lr=s.lr,
            warmup_steps=min(s.warmup_steps, steps[0]), ema_decay=s.ema_decay, seed=s.seed,
        )  # fmt: skip
        loss = DiffusionLoss(
            self.schedule, min_snr_gamma=s.min_snr_gamma, cond_dropout=s.cond_dropout
        )
        self.trainer = Trainer(
            self.model, loss, TensorBatches(self._latents, self._labels), config,
            verbose=False, desc=self.desc, progress=progress,
        )  # fmt: skip
        labels = torch.arange(10).repeat_interleave(s.per_class)  # (10 * per_class,)
        seconds = 0.0
        for milestone in steps:
            start = time.perf_counter()
            for _ in self.trainer.run(milestone - self.trainer.step):
                pass
            seconds += time.perf_counter() - start
            ema = self.trainer.ema_model
            start = time.perf_counter()
            images = sample(ema, self.schedule, labels=labels, sampler="ddim",
                            steps=s.sampler_steps, seed=s.seed, progress=False)  # fmt: skip
            per_image = (time.perf_counter() - start) / len(labels)
            guided = sample(ema, self.schedule, labels=labels, sampler="ddim",
                            steps=s.sampler_steps, guidance=s.guidance, seed=s.seed,
                            progress=False)  # fmt: skip
            yield ScalingPoint(
                steps=milestone,
                training_gflops=round(
                    training_gflops(self.forward_flops, s.batch_size, milestone), 2
                ),  # fmt: skip
                training_seconds=round(seconds, 1),
                class_agreement=round(class_agreement(images, labels), 4),
                frechet_distance=round(frechet_distance(images, self.heldout), 3),
                class_agreement_guided=round(class_agreement(guided, labels), 4),
                frechet_distance_guided=round(frechet_distance(guided, self.heldout), 3),
                seconds_per_image=round(per_image, 4),
            )
