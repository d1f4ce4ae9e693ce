"""A small autoencoder for digits, and latent diffusion: a noise predictor on its latents.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models", the paper behind Stable Diffusion) trains in two stages (Sec. 3):

1. **Perceptual compression** (Sec. 3.1): an autoencoder learns ``x -> z = E(x) -> D(z) ~ x``,
   with the latent grid ``f`` times smaller than the image on each side (here f = 4:
   28 x 28 x 1 pixels -> 7 x 7 x 4 latents, 784 -> 196 numbers).
2. **Diffusion in latent space** (Sec. 3.2): the autoencoder is frozen and a diffusion model
   (their U-Net, or DiT, Peebles & Xie 2023, Sec. 3.1) learns the distribution of the
   latents z instead of the pixels. To draw an image: sample a latent, then decode it, D(z).

Code name -> paper symbol:

===================  ==========================================  ======================
code                 meaning                                     paper
===================  ==========================================  ======================
``encode``           the encoder's mean, deterministic           E(x) (mode of q(z | x))
``decode``           the decoder                                 D(z)
``latent_size``      image_size / 4                              h = H / f, f = 4
``scale_factor``     1 / std of the training latents             rescaling, Sec. 4.3.2
===================  ==========================================  ======================

**A VAE with a small KL weight, not a plain autoencoder.** Stable Diffusion's autoencoder is
"KL-reg" (Sec. 3.1, App. G): a VAE whose posterior q(z | x) = N(mean, exp(logvar)) is pulled
towards N(0, I) by "a slight KL-penalty" (weight 1e-6 in their configs) "to avoid arbitrarily
high-variance latent spaces", while reconstructing almost as well as a plain autoencoder. The
course follows that recipe, so that lesson 11 is Stable Diffusion's in miniature. Measured on
the bundled digits (2,000 steps at lr 2e-3): the posterior's std shrank to about 0.006
against latents of std 2.7, so at this weight the VAE behaves almost like a plain
autoencoder, and the scale factor below does the normalising; ``kl_weight=1e-4`` gave the
same held-out error (MSE 0.0144 against 0.0145) with a posterior std of 0.012.
``kl_weight=0`` builds the plain autoencoder (no logvar, no sampling) to compare. Unlike
Stable Diffusion's, this one is trained with the mean squared error alone: no perceptual
(LPIPS) or adversarial loss.

**The scale factor** (:func:`latent_scale_factor`): with a weak KL the latents' spread is
whatever the encoder chose, while the diffusion model's noise has unit variance. Stable
Diffusion rescales the latents to unit standard deviation (Sec. 4.3.2 and the appendix on
rescaling; ``scale_by_std`` in their code): it multiplies them by ``1 / std`` of the training
latents (SD v1's 0.18215 is that number for its autoencoder) and divides by it again before
decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from diffusion_edu.models.dit import DiTConfig
from diffusion_edu.models.unet import UNetConfig
from diffusion_edu.targets import Target

__all__ = [
    "AutoencoderConfig",
    "Autoencoder",
    "Reconstruction",
    "kl_divergence",
    "latent_scale_factor",
    "LatentDiffusionConfig",
    "LatentDiffusion",
]

DOWNSAMPLING = 4  # two stride-2 convolutions: 28 x 28 -> 14 x 14 -> 7 x 7


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of an :class:`Autoencoder`. The defaults (14,097 parameters, 28 x 28 x 1 ->
    7 x 7 x 4) train to a useful reconstruction of the bundled digits in a few CPU minutes.

    Attributes:
        image_size: height = width of the images; a multiple of 4 (two halvings).
        in_channels: 1 for grey-scale, 3 for colour.
        latent_channels: channels of the latent grid (Stable Diffusion's: 4).
        base_channels: channels at full resolution; the 14 x 14 and 7 x 7 levels have twice
            as many.
        kl_weight: weight of the KL term (:func:`kl_divergence`) against the reconstruction
            error, both summed over an image as in Stable Diffusion's loss (their
            ``kl_weight: 1e-6``). 0 makes a plain autoencoder: no logvar, no sampling.
    """

    image_size: int = 28
    in_channels: int = 1
    latent_channels: int = 4
    base_channels: int = 8
    kl_weight: float = 1e-6

    def __post_init__(self) -> None:
        problems = []
        if self.image_size < DOWNSAMPLING or self.image_size % DOWNSAMPLING:
            problems.append(
                f"image_size must be a positive multiple of {DOWNSAMPLING} (the encoder halves "
                f"it twice), got {self.image_size}"
            )
        for name in ("in_channels", "latent_channels", "base_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.kl_weight, (int, float)) and math.isfinite(self.kl_weight)):
            problems.append(f"kl_weight must be a number >= 0, got {self.kl_weight!r}")
        elif self.kl_weight < 0:
            problems.append(
                f"kl_weight must be >= 0 (0 = plain autoencoder; Stable Diffusion uses 1e-6), "
                f"got {self.kl_weight!r}"
            )
        if problems:
            raise ValueError("invalid AutoencoderConfig: " + "; ".join(problems) + ".")

    @property
    def latent_size(self) -> int:
        """Latent grid side: ``image_size // 4`` (7 for 28 x 28 digits)."""
        return self.image_size // DOWNSAMPLING

    @property
    def variational(self) -> bool:
        """A VAE (the encoder also outputs logvar) when ``kl_weight > 0``."""
        return self.kl_weight > 0


class Reconstruction(NamedTuple):
    """What ``autoencoder(x)`` returns (a tuple, so DistributedDataParallel can pass it on)."""

    images: torch.Tensor  # (B, C, H, W) the decoder's output, not clamped
    mean: torch.Tensor  # (B, latent_channels, h, w) the encoder's mean
    logvar: torch.Tensor | None  # (B, latent_channels, h, w), or None for a plain autoencoder


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) of each image, summed over its latents: ``(B,)``.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", App. B:
    ``-1/2 sum(1 + logvar - mean^2 - exp(logvar))``.
    """
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


class Autoencoder(nn.Module):
    """``encode(x) -> z`` (B, latent_channels, H/4, W/4) and ``decode(z) -> x_hat`` in [-1, 1].

    Encoder: a 3x3 convolution at each of three resolutions, with stride-2 convolutions
    between them (28 -> 14 -> 7), SiLU after each; the last convolution gives the mean (and
    logvar for a VAE). Decoder: the mirror image, with nearest-neighbour upsampling then a
    convolution (which avoids a transposed convolution's checkerboard pattern). Its output
    is linear; :meth:`decode` clamps it to [-1, 1], the data's range, as Stable Diffusion's
    pipelines clamp decoded images. (A ``tanh`` output, tried first, saturated at -1 on the
    black background within a few steps and stopped learning.)

    ``autoencoder(x, noise)`` is the training pass: it returns a :class:`Reconstruction` with
    the decoder's raw output (unclamped, so every pixel gets a gradient) for the latents
    ``z = mean + exp(logvar / 2) * noise`` (the mean when ``noise`` is None, or for a plain
    autoencoder).
    """

    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AutoencoderConfig()
        C, b, L = config.in_channels, config.base_channels, config.latent_channels
        out = 2 * L if config.variational else L  # mean (and logvar)
        act = nn.SiLU
        self.encoder = nn.Sequential(
            _conv(C, b), act(), _conv(b, b), act(),  # (B, b, 28, 28)
            _conv(b, 2 * b, stride=2), act(), _conv(2 * b, 2 * b), act(),  # (B, 2b, 14, 14)
            _conv(2 * b, 2 * b, stride=2), act(), _conv(2 * b, out),  # (B, out, 7, 7)
        )  # fmt: skip
        self.decoder = nn.Sequential(
            _conv(L, 2 * b), act(), _conv(2 * b, 2 * b), act(),  # (B, 2b, 7, 7)
            nn.Upsample(scale_factor=2), _conv(2 * b, 2 * b), act(),  # (B, 2b, 14, 14)
            nn.Upsample(scale_factor=2), _conv(2 * b, b), act(),  # (B, b, 28, 28)
            _conv(b, C),  # (B, C, 28, 28)
        )  # fmt: skip

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(latent_channels, h, w)`` of one image's latents, e.g. ``(4, 7, 7)``."""
        c = self.config
        return (c.latent_channels, c.latent_size, c.latent_size)

    def encode_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mean, logvar)`` of q(z | x), each ``(B, latent_channels, h, w)``; logvar is None
        for a plain autoencoder. logvar is clamped to [-30, 20], as in Stable Diffusion's
        ``DiagonalGaussianDistribution``, so that exp() stays finite."""
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"the autoencoder takes images of shape (B, {', '.join(map(str, want))}), got "
                f"{tuple(x.shape)}. Resize the images, or build it with "
                "AutoencoderConfig(image_size=..., in_channels=...)."
            )
        h = self.encoder(x)  # (B, out, h, w)
        if not c.variational:
            return h, None
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latents of images ``x`` ``(B, C, H, W)`` in [-1, 1]: the mean of q(z | x)
        (deterministic; the mode, as Stable Diffusion's ``mode()``), unscaled."""
        return self.encode_distribution(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [-1, 1] (clamped) from unscaled latents
        ``(B, latent_channels, h, w)``."""
        if z.ndim != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"the decoder takes latents of shape (B, {', '.join(map(str, self.latent_shape))})"
                f", got {tuple(z.shape)}. Make them with autoencoder.encode(images)."
            )
        return self.decoder(z).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> Reconstruction:
        mean, logvar = self.encode_distribution(x)
        z = mean
        if logvar is not None and noise is not None:
            z = mean + (0.5 * logvar).exp() * noise  # reparameterisation (Kingma & Welling, Eq. 10)
        return Reconstruction(self.decoder(z), mean, logvar)  # (B, C, H, W) unclamped


def latent_scale_factor(latents: torch.Tensor) -> float:
    """``1 / std`` of a batch of (unscaled) training latents, over all their numbers.

    Rombach et al. 2022, Sec. 4.3.2 and the appendix on rescaling the latents to unit
    standard deviation; in their code (``LatentDiffusion.on_train_batch_start`` with
    ``scale_by_std=True``, ``ldm/models/diffusion/ddpm.py``):
    ``scale_factor = 1. / z.flatten().std()`` on the first training batch. (SD v1's
    0.18215.) Here the whole training set is used, for a steadier number. Multiplying the
    latents by it gives data with unit standard deviation, the scale of the noise.
    """
    if not isinstance(latents, torch.Tensor) or latents.numel() < 2:
        raise ValueError("latent_scale_factor needs a tensor of at least two latent values.")
    std = float(latents.detach().flatten().double().std())
    if not (math.isfinite(std) and std > 0):
        raise ValueError(
            f"the latents' standard deviation is {std!r}: they are constant or not finite, so "
            "they cannot be rescaled. Train the autoencoder first."
        )
    return 1.0 / std


# ----------------------------------------------------------------------------- latent diffusion
@dataclass(frozen=True)
class LatentDiffusionConfig:
    """Shape of a :class:`LatentDiffusion`: the frozen autoencoder, the denoiser on its
    latents, and the scale factor.

    Attributes:
        autoencoder: the autoencoder's config.
        denoiser: a :class:`~diffusion_edu.models.UNetConfig` or
            :class:`~diffusion_edu.models.DiTConfig` whose images are the latents:
            ``in_channels = latent_channels`` and ``image_size = latent_size`` (4 and 7 by
            default). A DiT with ``patch_size=1`` sees 49 tokens; a U-Net halves 7 x 7 to
            4 x 4 and 2 x 2 (its upsampling matches the skip connections' sizes).
        scale_factor: :func:`latent_scale_factor` of the training latents (Stable Diffusion's
            ``scale_factor``); the denoiser sees ``z * scale_factor``.
    """

    autoencoder: AutoencoderConfig
    denoiser: UNetConfig | DiTConfig
    scale_factor: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.autoencoder, AutoencoderConfig):
            problems.append(f"autoencoder must be an AutoencoderConfig, got {self.autoencoder!r}")
        if not isinstance(self.denoiser, (UNetConfig, DiTConfig)):
            problems.append(
                f"denoiser must be a UNetConfig or a DiTConfig, got {type(self.denoiser).__name__}"
            )
        elif isinstance(self.autoencoder, AutoencoderConfig):
            ae, d = self.autoencoder, self.denoiser
            if (d.in_channels, d.image_size) != (ae.latent_channels, ae.latent_size):
                problems.append(
                    f"the denoiser must work on the latents: in_channels={ae.latent_channels} "
                    f"and image_size={ae.latent_size}, got in_channels={d.in_channels} and "
                    f"image_size={d.image_size} (e.g. DiTConfig(image_size={ae.latent_size}, "
                    f"in_channels={ae.latent_channels}, patch_size=1))"
                )
        scale = self.scale_factor
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            problems.append(f"scale_factor must be a positive number, got {scale!r}")
        elif not math.isfinite(scale):
            problems.append(f"scale_factor must be finite, got {scale!r}")
        if problems:
            raise ValueError("invalid LatentDiffusionConfig: " + "; ".join(problems) + ".")


class LatentDiffusion(nn.Module):
    """A noise predictor on an autoencoder's latents: ``model(z_t, t, cond) -> prediction``.

    * ``model(z_t, t, cond)`` is the denoiser on scaled latents ``(B, latent_channels, h, w)``,
      so :class:`~diffusion_edu.training.DiffusionLoss` trains it in the one loop on
      :meth:`encode_images`' output, exactly as it trains a U-Net on pixels; ``prediction``,
      ``null_label`` and ``null_condition`` are the denoiser's.
    * The autoencoder is frozen (``requires_grad=False``; the optimiser never moves it) and
      saved with the model, so a checkpoint holds everything needed to draw pixels.
    * :meth:`decode_latents` is the hook the samplers look for:
      :func:`~diffusion_edu.samplers.sample` draws latents of shape :attr:`latent_shape`,
      then decodes them, and returns ``(B, C, H, W)`` pixels in [-1, 1].
    * Latents are not clipped while sampling, so train it on a schedule that keeps some
      signal at t = T (the linear one, as LDM and Stable Diffusion do; the loss warns
      otherwise): on the cosine schedule a latent DiT's samples were measured to blow up.
    """

    config_class = LatentDiffusionConfig

    def __init__(self, config: LatentDiffusionConfig) -> None:
        super().__init__()
        # common.py imports this module to register it, so its helper is imported here.
        from diffusion_edu.models.common import model_for_config

        self.config = config
        self.autoencoder = Autoencoder(config.autoencoder).requires_grad_(False)
        self.denoiser = model_for_config(config.denoiser)

    @property
    def scale_factor(self) -> float:
        return self.config.scale_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(latent_channels, h, w)``: the shape the diffusion runs in, e.g. ``(4, 7, 7)``."""
        return self.autoencoder.latent_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the decoded images, e.g. ``(1, 28, 28)``."""
        c = self.config.autoencoder
        return (c.in_channels, c.image_size, c.image_size)

    @property
    def prediction(self) -> Target:
        return self.denoiser.prediction

    @property
    def null_label(self) -> int | None:
        return getattr(self.denoiser, "null_label", None)

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor | None:
        """The denoiser's "no condition" (see :func:`diffusion_edu.models.null_condition`)."""
        from diffusion_edu.models.common import null_condition

        return null_condition(self.denoiser, cond)

    def forward(
        self, z_t: torch.Tensor, t: int | torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.denoiser(z_t, t, cond)

    @torch.no_grad()
    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``E(x) * scale_factor`` ``(B, latent_channels, h, w)`` of images in
        [-1, 1]: the diffusion model's data (``get_first_stage_encoding`` in Rombach et al.'s
        code, with the mean instead of a sample)."""
        return self.autoencoder.encode(x) * self.config.scale_factor

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Pixels ``D(z / scale_factor)`` ``(B, C, H, W)`` in [-1, 1] from scaled latents."""
        return self.autoencoder.decode(z / self.config.scale_factor)

    def extra_repr(self) -> str:
        return f"scale_factor={self.config.scale_factor:.5g}"
