"""Animations that play inline in Jupyter without ffmpeg (matplotlib's JavaScript HTML writer)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib import animation

from diffusion_edu.viz.plots import make_grid

__all__ = ["animate_frames", "animate_images"]


def animate_frames(anim: animation.Animation) -> str:
    """Render a matplotlib animation as self-contained HTML (JS player; no ffmpeg needed)."""
    html = anim.to_jshtml()
    plt.close(anim._fig)  # type: ignore[attr-defined]  # don't also show the last frame statically
    return html


def animate_images(
    frames: Sequence[torch.Tensor] | torch.Tensor,
    titles: Sequence[str] | None = None,
    nrow: int = 8,
    interval_ms: int = 120,
    scale: float = 1.0,
) -> str:
    """Animate a sequence of image batches (each ``(B, 1, H, W)`` in [-1, 1]) as a grid.

    Returns HTML; show it with ``IPython.display.HTML(animate_images(...))``.
    """
    if len(frames) == 0:
        raise ValueError("need at least one frame to animate.")
    grids = [make_grid(f, nrow=nrow) for f in frames]
    h, w = grids[0].shape
    fig, ax = plt.subplots(figsize=(scale * max(w / 30, 2.5), scale * max(h / 30, 2.5)))
    im = ax.imshow(grids[0], cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    title = ax.set_title(titles[0] if titles else "")

    def update(i: int) -> list:
        im.set_data(grids[i])
        if titles:
            title.set_text(titles[i])
        return [im, title]

    anim = animation.FuncAnimation(fig, update, frames=len(grids), interval=interval_ms, blit=False)
    return animate_frames(anim)
