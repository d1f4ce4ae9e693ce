"""Sinusoidal timestep embedding (Vaswani et al. 2017, used by DDPM for t).

The network must know *how noisy* its input is. We turn the integer t into a vector of sines
and cosines at geometrically spaced frequencies, so nearby t get similar vectors and far-apart
t get different ones, and an MLP can read any t off it.
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
