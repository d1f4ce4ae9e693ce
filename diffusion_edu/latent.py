"""Latent diffusion in four calls: train the autoencoder, build the latent model, encode, train.

Rombach et al. 2022 (Sec. 3) train in two stages, and so does the course, in the one loop
(:class:`~diffusion_edu.Trainer`) both times::

    digits = load_mnist("train")
    autoencoder = train_autoencoder(digits.images).ema_model            # 1. compression
    model = latent_diffusion(autoencoder, DiTConfig(image_size=7, in_channels=4, patch_size=1,
                                                    num_classes=10), digits.images)
    latents = encode_dataset(model, digits.images)                      # scaled, std ~ 1
    schedule = make_schedule("linear")    # not cosine: latents are not clipped while sampling
    trainer = Trainer(model, DiffusionLoss(schedule), TensorBatches(latents, digits.labels))
    for record in trainer.run(): ...                                    # 2. diffusion on z
    images = sample(trainer.ema_model, schedule, labels=range(10))       # (10, 1, 28, 28)

The autoencoder's loss, :class:`AutoencoderLoss`, is the ``loss(model, batch, generator)``
the loop expects: reconstruction error plus ``kl_weight`` times the KL term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    LatentDiffusion,
    LatentDiffusionConfig,
    kl_divergence,
    latent_scale_factor,
)
from diffusion_edu.models.common import unwrap
from diffusion_edu.models.dit import DiTConfig
from diffusion_edu.models.unet import UNetConfig
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "AutoencoderLoss",
    "AUTOENCODER_TRAINING",
    "train_autoencoder",
    "encode_latents",
    "latent_diffusion",
    "encode_dataset",
    "reconstruction_mse",
    "psnr",
    "signal_share",
]

#: How :func:`train_autoencoder` trains by default: about 2 minutes on one CPU core for the
#: 4,500 bundled digits, after which the 500 held-out digits come back with MSE 0.0088
#: (PSNR 26.6 dB) and 98.4% of the reconstructions are read as their digit (the real
#: digits: 98.6%); measured with ``scripts/make_pretrained_latent.py``'s first stage.
AUTOENCODER_TRAINING = TrainConfig(steps=2000, batch_size=64, lr=5e-3, warmup_steps=100)


@dataclass(frozen=True)
class AutoencoderLoss:
    """The loss the loop trains an :class:`~diffusion_edu.models.Autoencoder` with.

    Per image, as in Stable Diffusion's ``LPIPSWithDiscriminator`` without its perceptual
    and adversarial terms (Rombach et al. 2022, App. G)::

        z    = mean + exp(logvar / 2) * eps,   eps ~ N(0, I)      (a VAE; z = mean otherwise)
        loss = ( sum_pixels (x - D(z))^2  +  kl_weight * KL(q(z | x) || N(0, I)) ) / pixels

    Dividing by the number of pixels makes the first term the mean squared error (about
    0.01 for a good reconstruction of [-1, 1] digits) without changing the balance that
    ``kl_weight`` sets. ``kl_weight`` is the model's (``config.kl_weight``): it also decides
    whether the encoder outputs a logvar at all.
    """

    def __call__(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> torch.Tensor:
        x = batch[0]
        inner = unwrap(model)
        noise = None
        if inner.config.variational:  # the reparameterisation's eps, drawn by the seeded generator
            shape = (x.shape[0], *inner.latent_shape)
            noise = torch.randn(shape, generator=generator, device=generator.device).to(x)
        out = model(x, noise)
        mse = F.mse_loss(out.images.float(), x.float())
        if out.logvar is None:
            return mse
        kl = kl_divergence(out.mean.float(), out.logvar.float()).mean()  # per image, (B,) mean
        return mse + inner.config.kl_weight * kl / x[0].numel()

    def to_dict(self) -> dict[str, Any]:
        """Nothing to save: the KL weight is the model's, saved with its config."""
        return {}

    def check(self, model: nn.Module, data: TensorBatches) -> None:
        """Refuse a model or data the loss cannot train, saying what to do (called by the loop)."""
        inner = unwrap(model)
        if not isinstance(inner, Autoencoder):
            raise TypeError(
                f"AutoencoderLoss trains an Autoencoder, got {type(inner).__name__}. A noise "
                "predictor trains with DiffusionLoss."
            )
        x = data.tensors[0]
        c = inner.config
        want = (c.in_channels, c.image_size, c.image_size)
        if not x.is_floating_point() or x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"the autoencoder trains on float images (N, {', '.join(map(str, want))}) in "
                f"[-1, 1], got dtype {x.dtype} of shape {tuple(x.shape)}. Use "
                "diffusion_edu.load_mnist(...).images."
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(
                f"images span {lo:.3g}..{hi:.3g}, but the decoder learns pixels in [-1, 1]: give "
                "pixels in [-1, 1] (images / 127.5 - 1 for 0..255)."
            )


def train_autoencoder(
    images: torch.Tensor,
    config: AutoencoderConfig | None = None,
    train: TrainConfig = AUTOENCODER_TRAINING,
    device: torch.device | str | None = None,
    *,
    verbose: bool = True,
    progress: bool = True,
) -> Trainer:
    """Train a fresh :class:`~diffusion_edu.models.Autoencoder` on ``images`` in the one loop.

    ``images``: (N, C, H, W) in [-1, 1], e.g. ``load_mnist("train").images``. Returns the
    :class:`~diffusion_edu.Trainer`: ``trainer.ema_model`` is the autoencoder to use (the
    moving average reconstructs slightly better than the last step's weights), and
    ``trainer.save(path)`` writes a checkpoint.
    """
    torch.manual_seed(train.seed)  # the initial weights, like the loop's batches, follow the seed
    model = Autoencoder(config or AutoencoderConfig())
    trainer = Trainer(
        model, AutoencoderLoss(), TensorBatches(images), train, device,
        verbose=verbose, progress=progress, desc="autoencoder",
    )  # fmt: skip
    for _ in trainer.run():
        pass
    return trainer


@torch.no_grad()
def encode_latents(
    autoencoder: Autoencoder, images: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """The autoencoder's (unscaled) latents of ``images``, ``(N, latent_channels, h, w)``, on
    the CPU, computed ``batch_size`` images at a time in eval mode."""
    autoencoder = unwrap(autoencoder)
    if not isinstance(autoencoder, Autoencoder):
        raise TypeError(f"expected an Autoencoder, got {type(autoencoder).__name__}.")
    device = next(autoencoder.parameters()).device
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        chunks = [autoencoder.encode(x.to(device)).cpu() for x in images.split(batch_size)]
    finally:
        autoencoder.train(was_training)
    return torch.cat(chunks)


def latent_diffusion(
    autoencoder: Autoencoder,
    denoiser: UNetConfig | DiTConfig,
    images: torch.Tensor,
    scale_factor: float | None = None,
) -> LatentDiffusion:
    """A fresh :class:`~diffusion_edu.models.LatentDiffusion` around a trained autoencoder.

    The scale factor is :func:`~diffusion_edu.models.latent_scale_factor` of the latents of
    ``images`` (the training images), unless given. The autoencoder's weights are copied in
    and frozen; the denoiser starts from its usual initialisation.
    """
    autoencoder = unwrap(autoencoder)
    if scale_factor is None:
        scale_factor = latent_scale_factor(encode_latents(autoencoder, images))
    config = LatentDiffusionConfig(autoencoder.config, denoiser, scale_factor)
    model = LatentDiffusion(config)
    model.autoencoder.load_state_dict(autoencoder.state_dict())
    return model.to(next(autoencoder.parameters()).device)


@torch.no_grad()
def encode_dataset(
    model: LatentDiffusion, images: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """The scaled latents ``E(x) * scale_factor`` of ``images``: the data a latent model
    trains on (``TensorBatches(encode_dataset(model, images), labels)``), on the CPU."""
    model = unwrap(model)
    if not isinstance(model, LatentDiffusion):
        raise TypeError(f"expected a LatentDiffusion model, got {type(model).__name__}.")
    return encode_latents(model.autoencoder, images, batch_size) * model.scale_factor


@torch.no_grad()
def reconstruction_mse(
    autoencoder: Autoencoder, images: torch.Tensor, batch_size: int = 500
) -> float:
    """Mean squared error of ``decode(encode(images))`` against ``images``, per pixel."""
    autoencoder = unwrap(autoencoder)
    device = next(autoencoder.parameters()).device
    latents = encode_latents(autoencoder, images, batch_size)
    total = 0.0
    for z, x in zip(latents.split(batch_size), images.split(batch_size), strict=True):
        recon = autoencoder.decode(z.to(device)).cpu()
        total += float((recon.double() - x.double()).square().sum())
    return total / images.numel()


def psnr(mse: float, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / mse)``; the range of
    [-1, 1] pixels is 2."""
    if not mse > 0:
        raise ValueError(f"mse must be > 0, got {mse!r}.")
    return 10.0 * math.log10(data_range**2 / mse)


def signal_share(schedule: NoiseSchedule, t: int, data_std: float = 1.0) -> float:
    """The share of x_t's variance that is still data, for data of standard deviation
    ``data_std`` noised to step t (DDPM Eq. 4, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t)
    eps): ``alpha_bar_t s^2 / (alpha_bar_t s^2 + 1 - alpha_bar_t)``; ``alpha_bar_t`` itself for
    unit-spread data. Why latents are rescaled to std 1 (Rombach et al. 2022, Sec. 4.3.2 and
    appendix D.1): with s > 1 the data stays visible further into the schedule."""
    if not 0 <= t <= schedule.T:
        raise ValueError(f"t must be in 0..{schedule.T}, got {t}.")
    if not data_std > 0:
        raise ValueError(f"data_std must be > 0, got {data_std!r}.")
    signal = float(schedule.alpha_bars[t]) * data_std**2
    return signal / (signal + 1.0 - float(schedule.alpha_bars[t]))
