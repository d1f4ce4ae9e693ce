"""Shared plotting helpers: image grids in the course's house look."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["to_display", "make_grid", "show_images"]


def to_display(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images in [-1, 1] (``(B, 1, H, W)``, ``(B, H, W)`` or ``(H, W)``) -> numpy in [0, 1].

    Values outside [-1, 1] (e.g. noisy images) are clipped for display only.
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else images
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"expected grey-scale images (B, 1, H, W), got {arr.shape}.")
        arr = arr[:, 0]  # (B, H, W)
    return np.clip((arr + 1.0) / 2.0, 0.0, 1.0)


def make_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile ``(B, 1, H, W)`` or ``(B, H, W)`` images in [-1, 1] into one 2-D array."""
    arr = to_display(images)
    if arr.ndim == 2:
        arr = arr[None]
    b, h, w = arr.shape
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i in range(b):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = arr[i]
    return grid


def show_images(
    images: torch.Tensor | np.ndarray,
    nrow: int = 8,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    scale: float = 1.0,
) -> Figure:
    """Show a batch of images in [-1, 1] as a grid (white digits on black).

    With ``labels`` (one string per image) each image gets its own small panel and caption.
    """
    arr = to_display(images)
    if arr.ndim == 2:
        arr = arr[None]
    if labels is not None:
        if len(labels) != len(arr):
            raise ValueError(f"got {len(labels)} labels for {len(arr)} images.")
        ncol = min(nrow, len(arr))
        nrows = -(-len(arr) // ncol)
        fig, axes = plt.subplots(
            nrows, ncol, figsize=(scale * 1.3 * ncol, scale * 1.5 * nrows), squeeze=False
        )
        for i, a in enumerate(axes.flat):
            a.axis("off")
            if i < len(arr):
                a.imshow(arr[i], cmap="gray", vmin=0, vmax=1)
                a.set_title(labels[i], fontsize=9)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
    grid = make_grid(arr, nrow=nrow)
    if ax is None:
        fig, ax = plt.subplots(figsize=(scale * grid.shape[1] / 30, scale * grid.shape[0] / 30))
    else:
        fig = ax.figure
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig
