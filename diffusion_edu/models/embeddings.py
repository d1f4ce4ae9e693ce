"""Sinusoidal timestep embedding (Vaswani et al. 2017, used by DDPM for t).

The network must know *how noisy* its input is. We turn the integer t into a vector of sines
and cosines at geometrically spaced frequencies, so nearby t get similar vectors and far-apart
t get different ones, and an MLP can read any t off it.

Also the checks every image model (U-Net, DiT) runs on what it embeds: the timesteps
(:func:`timestep_batch`) and the class labels (:func:`check_class_labels`).
"""

from __future__ import annotations

import math

import torch


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Embed timesteps ``t`` (shape ``(B,)``, int or float) as ``(B, dim)`` sines and cosines.

    ``emb[:, i] = sin(t * w_i)`` for the first half and ``cos(t * w_i)`` for the second, with
    ``w_i = max_period ** (-i / (dim / 2))`` (the Transformer's positional encoding).
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even number >= 2, got {dim}.")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}.")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (half,)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, dim)


def timestep_batch(t: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """``t`` as one timestep per image, shape ``(batch,)``: an int or a 0-d tensor is repeated;
    anything else must already have that shape (a clear error otherwise)."""
    if isinstance(t, int):
        return torch.full((batch,), t, dtype=torch.long, device=device)
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"t must be an int or a tensor of shape ({batch},), got {type(t).__name__}."
        )
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be an int or have shape ({batch},), got {tuple(t.shape)}.")
    return t.to(device)


def check_class_labels(
    labels: torch.Tensor | None,
    batch: int,
    num_classes: int | None,
    device: torch.device,
    model: str = "model",
) -> torch.Tensor | None:
    """Class labels ``(batch,)`` as integer ids in ``0..num_classes`` (``num_classes`` itself is
    the "no label" id of classifier-free guidance), or None; a clear error names what is wrong.

    ``model`` names the model's config class in the message, e.g. ``"UNet"`` -> ``UNetConfig``.
    """
    if labels is None:
        return None
    if num_classes is None:
        raise ValueError(
            f"this {model} is unconditional (num_classes=None) but labels were given; "
            f"build it with {model}Config(num_classes=...) or call it with labels=None."
        )
    labels = torch.as_tensor(labels, device=device)
    if labels.shape != (batch,) or labels.is_floating_point():
        raise ValueError(
            f"labels must be integer class ids of shape ({batch},), got {tuple(labels.shape)}."
        )
    if labels.numel() and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1} (or {num_classes}: 'no label'), got "
            f"values from {labels.min().item()} to {labels.max().item()}."
        )
    return labels
