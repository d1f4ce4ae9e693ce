"""Animations that play inline in Jupyter without ffmpeg (matplotlib's JavaScript HTML writer).

The player works offline: matplotlib's version loads its button icons (Font Awesome) from a
CDN, so :func:`offline_player` drops that stylesheet and labels the buttons with plain Unicode
symbols instead. The HTML then holds no URL at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib import animation

from diffusion_edu.viz.plots import make_grid

__all__ = ["animate_frames", "animate_images", "offline_player"]


# Font Awesome icon (matplotlib's player) -> a plain Unicode label. U+FE0E asks for the text
# form of a symbol, so that no browser draws the triangles as coloured emoji.
_BUTTON_LABELS = {
    "fa-minus": "\u2212",  # slower
    "fa-fast-backward": "|\u25c0\ufe0e\u25c0\ufe0e",  # first frame
    "fa-step-backward": "|\u25c0\ufe0e",  # previous frame
    "fa-play fa-flip-horizontal": "\u25c0\ufe0e",  # play backwards
    "fa-pause": "\u275a\u275a",  # pause
    "fa-play": "\u25b6\ufe0e",  # play
    "fa-step-forward": "\u25b6\ufe0e|",  # next frame
    "fa-fast-forward": "\u25b6\ufe0e\u25b6\ufe0e|",  # last frame
    "fa-plus": "+",  # faster
}
_ICON = re.compile(r'<i class="fa ([a-z -]+)"></i>')
_STYLESHEET_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^>]*>\s*", re.IGNORECASE)


def offline_player(html: str) -> str:
    """matplotlib's ``to_jshtml`` player, made to work without the internet.

    Removes the ``<link>`` to Font Awesome's stylesheet on a CDN (offline, the browser logs an
    error for it) and replaces each ``<i class="fa ...">`` icon with a Unicode label; the
    buttons keep their ``title`` (tooltip) and ``aria-label``.
    """
    html = _STYLESHEET_LINK.sub("", html)
    return _ICON.sub(lambda m: _BUTTON_LABELS.get(m.group(1), m.group(1).replace("fa-", "")), html)


def animate_frames(anim: animation.Animation) -> str:
    """Render a matplotlib animation as self-contained HTML (JS player; no ffmpeg, no network)."""
    html = offline_player(anim.to_jshtml())
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
