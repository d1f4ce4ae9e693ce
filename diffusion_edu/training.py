"""Training a noise predictor: DDPM's loss, which the one loop (:mod:`~diffusion_edu.loop`) trains.

DDPM, Algorithm 1 (Training), one step::

    x_0 ~ q(x_0)                         a batch of real images
    t   ~ Uniform({1, ..., T})           one random noise level per image
    eps ~ N(0, I)                        the noise the model must find
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (Eq. 4, ``q_sample``)
    take a gradient step on  || eps - eps_theta(x_t, t) ||^2          (Eq. 14, "L_simple")

:class:`DiffusionLoss` is that step's loss, with three options every modern model uses:

* **What the network predicts** (``model.prediction``, :mod:`diffusion_edu.targets`): the noise
  eps (DDPM), the clean image x_0, v (Salimans & Ho 2022) or the flow velocity (Lipman et al.
  2023). The loss compares the output with the matching target.
* **Condition dropout** (Ho & Salimans 2022, "classifier-free guidance", Algorithm 1): a
  fraction of the conditions (labels, or a prompt's tokens) is replaced by the model's "no
  condition", so one model learns both p(x | c) and p(x), which guidance needs.
* **Min-SNR loss weighting** (Hang et al. 2023; opt-in, ``min_snr_gamma``): the timesteps'
  conflicting gradients are balanced by capping each one's weight in x_0 terms at gamma. On
  the bundled digits it took 1,500 steps from 92% to 99% class agreement
  (docs/performance.md); the recipes in ``recipes.py`` use it.

Train with the loop::

    trainer = Trainer(model, DiffusionLoss(schedule, min_snr_gamma=5),
                      TensorBatches(data.images, data.labels), TrainConfig(steps=1500))
    for record in trainer.run():          # one TrainStep per optimiser step
        losses.append(record.loss)
    samples = sample(trainer.ema_model, schedule, labels=range(10))

or in one call, ``train(model, schedule, data.images, data.labels, TrainConfig(steps=1500))``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.data import augment as augment_images
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer, TrainStep
from diffusion_edu.models.common import decodes_latents, null_condition, unwrap
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import (
    Target,
    check_target,
    noisy_sample,
    prediction_of,
    regression_target,
    target_snr,
)

__all__ = ["DiffusionLoss", "diffusion_loss", "min_snr_weight", "drop_condition", "train"]


def drop_condition(
    cond: torch.Tensor, null: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each row of ``cond`` by the same row of ``null`` with probability ``p``.

    Ho & Salimans (2022), Algorithm 1: "c <- empty with probability p_uncond". ``cond`` is a
    batch of labels ``(B,)`` or of token ids ``(B, L)``; ``null`` is the model's "no condition"
    of the same shape (:func:`~diffusion_edu.models.null_condition`).
    """
    if p <= 0:
        return cond
    draw_device = generator.device if generator is not None else cond.device
    drop = torch.rand(cond.shape[0], generator=generator, device=draw_device) < p  # (B,)
    drop = drop.to(cond.device).view(-1, *([1] * (cond.ndim - 1)))
    return torch.where(drop, null, cond)


def min_snr_weight(snr: torch.Tensor, gamma: float, target: Target = "eps") -> torch.Tensor:
    """Min-SNR-gamma weight of each example's error, for a model that predicts ``target``.

    Hang et al. (2023), "Efficient Diffusion Training via Min-SNR Weighting Strategy": the
    timesteps are tasks whose gradients conflict, and training converges slowly; they balance
    them by weighting the error *of the predicted x_0* by ``min(SNR_t, gamma)``. A
    ``target``-model's error is that x_0 error scaled, so its own weight divides by the square
    of the scale. For eps: ``x0 - x0_hat = (eps_hat - eps) / sqrt(SNR_t)``, so the eps loss is
    SNR_t times the x_0 loss: plain DDPM already weights x_0 errors by SNR_t, without a cap,
    and ``min(SNR, gamma) / SNR`` on the eps loss is the x_0 loss weighted by
    ``min(SNR, gamma)``.

    * eps:  ``min(SNR, gamma) / SNR``        (1 where SNR <= gamma: noisy images keep full weight)
    * x0:   ``min(SNR, gamma)``
    * v:    ``min(SNR, gamma) / (SNR + 1)``
    * flow: ``min(SNR, gamma) / (sqrt(SNR) + 1)^2``   (the velocity error is the x_0 error / s)
    """
    target = check_target(target)
    if target == "eps":
        return snr.clamp(max=gamma) / snr
    scale = {"x0": 1.0, "v": snr + 1, "flow": (snr.sqrt() + 1).square()}[target]
    return snr.clamp(max=gamma) / scale


def diffusion_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    min_snr_gamma: float = 0.0,
    target: Target | None = None,
) -> torch.Tensor:
    """DDPM's simplified loss (Algorithm 1 / Eq. 14) for one batch: ``mean ||eps - eps_hat||^2``.

    1. t ~ Uniform({1, ..., T}) per example (or the given ``t``)
    2. eps ~ N(0, I) (or the given ``eps``)
    3. x_t = q_sample(x0, t, eps) = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
    4. loss = mean over pixels and batch of (eps - model(x_t, t, cond))^2

    ``target`` (default: what the model says it predicts, ``model.prediction``, else ``"eps"``)
    replaces eps in step 4 by x_0, v or the flow velocity (:mod:`diffusion_edu.targets`; the
    flow target also builds x_t on its straight path instead of Eq. 4).

    ``min_snr_gamma > 0`` weights each example's error by :func:`min_snr_weight` ("Min-SNR",
    Hang et al. 2023): the eps loss is SNR_t times the x_0 loss, so in x_0 terms plain DDPM
    weights the nearly clean timesteps (large SNR) by SNR_t, without limit; Min-SNR caps that
    weight at gamma, which balances the timesteps' conflicting gradients and makes training
    converge faster. (The noise is not easy to find there: it is hardest at small t, where a
    little noise hides in an almost clean image.) 0 (the default) is plain DDPM.

    The error is computed in float32 even when the model runs under bf16 autocast.
    """
    target = prediction_of(model) if target is None else check_target(target)
    batch = x0.shape[0]
    draw_device = generator.device if generator is not None else x0.device
    drawn_here = t is None  # drawn here, so in range: q_sample needs no check (a GPU -> CPU sync)
    if t is None:  # 1. one random noise level per example
        t = torch.randint(1, schedule.T + 1, (batch,), generator=generator, device=draw_device)
    if eps is None:  # 2. the noise to hide in it
        eps = torch.randn(x0.shape, generator=generator, device=draw_device, dtype=x0.dtype)
    t, eps = t.to(x0.device), eps.to(x0.device)
    x_t = noisy_sample(x0, eps, t, schedule, target, check=not drawn_here)  # 3. Eq. 4
    prediction = model(x_t, t, cond)  # 4. the network's guess, same shape as x0
    wanted = regression_target(x0, eps, t, schedule, target)  # eps, unless told otherwise
    if min_snr_gamma <= 0:
        return F.mse_loss(prediction.float(), wanted.float())
    per_example = (prediction.float() - wanted.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
    weight = min_snr_weight(target_snr(t, schedule, target), min_snr_gamma, target)
    return (weight * per_example).mean()


@dataclass(frozen=True)
class DiffusionLoss:
    """The loss the loop trains a noise predictor with: ``loss(model, batch, generator)``.

    ``batch`` is ``(x0,)`` or ``(x0, cond)`` from :class:`~diffusion_edu.TensorBatches`.
    Each step drops a ``cond_dropout`` fraction of the conditions to the model's "no condition"
    (:func:`drop_condition`), then computes :func:`diffusion_loss`.

    Attributes:
        schedule: the noise schedule (the sampler must use the same one).
        min_snr_gamma: Min-SNR loss weighting (:func:`min_snr_weight`: the x_0 loss weighted
            by min(SNR, gamma), Hang et al. 2023); 0 = plain DDPM loss.
        cond_dropout: fraction of conditions replaced by "no condition" (classifier-free
            guidance); ignored for models without one.
    """

    schedule: NoiseSchedule
    min_snr_gamma: float = 0.0
    cond_dropout: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_snr_gamma) and self.min_snr_gamma >= 0):
            raise ValueError(f"min_snr_gamma must be >= 0 (0 = off), got {self.min_snr_gamma!r}.")
        if not (0.0 <= self.cond_dropout < 1.0):
            raise ValueError(f"cond_dropout must lie in [0, 1), got {self.cond_dropout!r}.")

    def __call__(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> torch.Tensor:
        x0, cond = batch[0], (batch[1] if len(batch) > 1 else None)
        if cond is not None and self.cond_dropout > 0:
            null = null_condition(model, cond)
            if null is not None:  # the "prompt", sometimes hidden
                cond = drop_condition(cond, null, self.cond_dropout, generator)
        return diffusion_loss(
            model, x0, self.schedule, cond, generator, min_snr_gamma=self.min_snr_gamma
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings besides the schedule (checkpoints store the schedule on its own)."""
        return {"min_snr_gamma": self.min_snr_gamma, "cond_dropout": self.cond_dropout}

    def check(self, model: nn.Module, data: TensorBatches) -> None:
        """Refuse data the loss cannot learn from, saying what to do (called by the loop)."""
        x0 = data.tensors[0]
        cond = data.tensors[1] if len(data.tensors) > 1 else None
        if not x0.is_floating_point() or x0.ndim < 2:
            raise ValueError(
                f"the data must be floats of shape (N, ...) in [-1, 1], got dtype {x0.dtype} "
                f"of shape {tuple(x0.shape)}. Use diffusion_edu.data.load_mnist(), or "
                "images.float() / 127.5 - 1."
            )
        if decodes_latents(model):  # a latent model: its data are scaled latents, not pixels
            _check_latents(model, x0, self.schedule)
        elif x0.ndim == 4:  # images: pixels must be on the noise's scale
            lo, hi = float(x0.min()), float(x0.max())
            if hi > 2.0 or lo < -2.0:
                raise ValueError(
                    f"images span {lo:.3g}..{hi:.3g}, but DDPM expects pixels in [-1, 1] (the "
                    "same scale as the noise). For 0..255 pixels use images / 127.5 - 1."
                )
            if lo >= 0.0 and hi > 0.5:
                warnings.warn(
                    f"images span {lo:.3g}..{hi:.3g}: they look like [0, 1] pixels. DDPM "
                    "expects [-1, 1] (images * 2 - 1); training works but samples will be "
                    "off-range.",
                    stacklevel=4,
                )
        probe = cond[:1] if cond is not None else torch.ones(1, 1, dtype=torch.long)
        conditional = null_condition(model, probe) is not None
        if conditional and cond is None:
            raise ValueError(
                "this model is class-conditional (it has a null_label) but no labels were "
                "given: pass labels=data.labels, or build the model with num_classes=None."
            )
        if not conditional and cond is not None:
            raise ValueError(
                "labels were given but the model is unconditional; build it with num_classes=... "
                "in its config (UNetConfig, DiTConfig) to use them, or pass labels=None."
            )
        if cond is not None and cond.is_floating_point():
            raise ValueError(
                f"labels must be integer class ids (or token ids), got dtype {cond.dtype}."
            )


#: Below this alpha_bar_T a latent model's first sampling step blows up (see _check_latents).
MIN_LATENT_ALPHA_BAR_T = 1e-6


def _check_latents(model: nn.Module, x0: torch.Tensor, schedule: NoiseSchedule) -> None:
    """A latent model's data must be its latent grid, scaled to about unit std (Rombach et
    al. 2022, Sec. 4.3.2): latents on another scale would meet noise of the wrong size.

    Its schedule should keep some signal at t = T: latents are not clipped while sampling,
    and DDIM's first step multiplies the model's error in x0_hat by
    sqrt(alpha_bar_prev / alpha_bar_T). On the cosine schedule (alpha_bar_T = 2.4e-9) that is
    ~630 for 50 steps, and a latent DiT's samples were measured to blow up (std 1,588); on
    the linear one (4e-5; LDM's and Stable Diffusion's kind of schedule) they stayed near 1.
    """
    want = tuple(unwrap(model).latent_shape)
    if x0.ndim != 4 or tuple(x0.shape[1:]) != want:
        raise ValueError(
            f"this latent diffusion model trains on latents of shape (N, "
            f"{', '.join(map(str, want))}), got data of shape {tuple(x0.shape)}. Encode the "
            "images first: diffusion_edu.latent.encode_dataset(model, images)."
        )
    std = float(x0.double().std()) if x0.numel() > 1 else 1.0
    if not 1 / 3 <= std <= 3:
        raise ValueError(
            f"the latents' standard deviation is {std:.3g}, but scaled latents have about 1 "
            "(the noise's scale). Encode with diffusion_edu.latent.encode_dataset(model, "
            "images), which multiplies by model.scale_factor, not autoencoder.encode()."
        )
    alpha_bar_T = float(schedule.alpha_bars[-1])
    if alpha_bar_T < MIN_LATENT_ALPHA_BAR_T:
        warnings.warn(
            f"the {schedule.name!r} schedule leaves alpha_bar_T = {alpha_bar_T:.2g} of the "
            "signal at t = T. Latents are not clipped while sampling, so the first steps "
            "amplify the model's errors and samples can blow up: train latent models on "
            "make_schedule('linear'), as Stable Diffusion does.",
            stacklevel=5,
        )


def train(
    model: nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    config: TrainConfig | None = None,
    device: torch.device | str | None = None,
    *,
    min_snr_gamma: float = 0.0,
    cond_dropout: float = 0.1,
    augment: bool = False,
    callback: Callable[[TrainStep], None] | None = None,
    verbose: bool = True,
    progress: bool = True,
) -> Trainer:
    """Train ``model`` to the end of ``config.steps``; call ``callback(record)`` after each step.

    The one loop with :class:`DiffusionLoss` on ``images`` (and their ``labels``);
    ``augment=True`` adds random small shifts and rotations (:func:`diffusion_edu.data.augment`).
    Returns the :class:`~diffusion_edu.Trainer` (``trainer.ema_model`` samples best;
    ``trainer.history`` holds the per-step records). For a loop you can break out of, build the
    Trainer and call ``trainer.run()``.
    """
    data = TensorBatches(
        images, *([] if labels is None else [torch.as_tensor(labels)]),
        augment=augment_images if augment else None,
    )  # fmt: skip
    loss = DiffusionLoss(schedule, min_snr_gamma=min_snr_gamma, cond_dropout=cond_dropout)
    trainer = Trainer(model, loss, data, config, device, verbose=verbose, progress=progress)
    for record in trainer.run():
        if callback is not None:
            callback(record)
    return trainer
