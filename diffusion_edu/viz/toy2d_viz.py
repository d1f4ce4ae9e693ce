"""Lesson 05: pictures of the 2-D toy: point clouds, score fields (arrows), the reverse flow.

Every function returns a matplotlib Figure (or HTML for animations); the slider widget
:class:`ScoreFieldExplorer` re-renders one figure in place, like lesson 04's schedule widget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation
from matplotlib.figure import Figure
from torch import nn

from diffusion_edu.forward import q_sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import score_field
from diffusion_edu.viz.animation import animate_frames
from diffusion_edu.viz.plots import RED, SLATE, LessonFigure, figure_to_png, square_axes
from diffusion_edu.viz.widgets import WidgetView

__all__ = [
    "DATA_COLOUR",
    "SAMPLE_COLOUR",
    "plot_toy_data",
    "plot_forward_2d",
    "plot_loss_curve",
    "plot_score_fields",
    "ScoreFieldExplorer",
    "plot_reverse_snapshots",
    "animate_reverse_2d",
    "plot_samples_vs_data",
]

DATA_COLOUR = SLATE  # grey-blue: the real data, always in the background
SAMPLE_COLOUR = RED  # red: noisy points / generated samples
ARROW_CMAP = "viridis"
LIM = 1.6


def _square(ax, lim: float = LIM) -> None:  # noqa: ANN001
    square_axes(ax, lim, "x[0]", "x[1]")
    ax.grid(alpha=0.2)


def plot_toy_data(data: torch.Tensor, title: str = "The data: 2-D points") -> Figure:
    """Scatter plot of a 2-D data set."""
    fig = LessonFigure(figsize=(4.2, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.scatter(data[:, 0], data[:, 1], s=3, color=DATA_COLOUR)
    _square(ax)
    ax.set_title(title)
    return fig


def plot_forward_2d(
    data: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int], seed: int = 0
) -> Figure:
    """The forward process on the point cloud: x_t ~ q(x_t | x_0) at several t (DDPM Eq. 4)."""
    noise = torch.randn(data.shape, generator=torch.Generator().manual_seed(seed))
    fig = LessonFigure(figsize=(2.9 * len(ts), 3.2), layout="constrained")
    axes = fig.subplots(1, len(ts), squeeze=False)[0]
    for ax, t in zip(axes, ts, strict=True):
        x_t = q_sample(data, t, schedule, noise)
        ax.scatter(x_t[:, 0], x_t[:, 1], s=2, color=SAMPLE_COLOUR if t else DATA_COLOUR)
        _square(ax, 3.0)
        ab = schedule.alpha_bars[t].item()
        ax.set_title(f"t={t}  " + r"$\bar\alpha_t$" + f"={ab:.2f}")
    fig.suptitle("Forward process: the ink drop spreads (x_0 on the left, x_T on the right)")
    return fig


def plot_loss_curve(losses: Sequence[float], window: int = 50) -> Figure:
    """Training loss per step, with a moving average."""
    fig = LessonFigure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    arr = np.asarray(losses, dtype=float)
    ax.plot(arr, color=DATA_COLOUR, lw=0.6, label="per batch")
    if len(arr) >= window:
        smooth = np.convolve(arr, np.ones(window) / window, mode="valid")
        ax.plot(
            np.arange(window - 1, len(arr)),
            smooth,
            color=SAMPLE_COLOUR,
            lw=2,
            label=f"moving average ({window})",
        )
    ax.axhline(1.0, color="black", ls=":", lw=1, label="predict eps_hat = 0 (loss 1)")
    ax.set(
        xlabel="training step",
        ylabel=r"MSE of $\hat\epsilon$ against $\epsilon$",
        title="Noise estimation: how well the MLP predicts the noise",
    )
    ax.set_ylim(0, max(1.2, float(np.percentile(arr, 99)) if len(arr) else 1.2))
    ax.legend(frameon=False, fontsize=8)
    return fig


def _draw_field(
    ax, model: nn.Module, schedule: NoiseSchedule, data: torch.Tensor, t: int, n: int = 19
):  # noqa: ANN001, ANN202
    points, scores = score_field(model, schedule, t, lim=LIM, n=n)
    norm = scores.norm(dim=1, keepdim=True).clamp(min=1e-8)
    unit = (scores / norm).numpy()  # direction only: lengths vary by 100x across t
    ax.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.5)
    q = ax.quiver(
        points[:, 0],
        points[:, 1],
        unit[:, 0],
        unit[:, 1],
        np.log10(norm[:, 0].numpy()),
        cmap=ARROW_CMAP,
        scale=26,
        width=0.006,
    )
    _square(ax)
    return q


def plot_score_fields(
    model: nn.Module, schedule: NoiseSchedule, data: torch.Tensor, ts: Sequence[int]
) -> Figure:
    """The learned score -eps_hat / sqrt(1 - alpha_bar_t) as arrows, at several t.

    Arrows show direction (unit length); colour shows log10 of the length. Grey: the data.
    """
    fig = LessonFigure(figsize=(3.3 * len(ts), 3.6), layout="constrained")
    axes = fig.subplots(1, len(ts), squeeze=False)[0]
    for ax, t in zip(axes, ts, strict=True):
        q = _draw_field(ax, model, schedule, data, t)
        ax.set_title(f"t={t}  " + r"$\bar\alpha_t$" + f"={schedule.alpha_bars[t].item():.2f}")
    fig.colorbar(q, ax=list(axes), shrink=0.8, label="log10 |score|")
    fig.suptitle(r"Learned score $-\hat\epsilon/\sqrt{1-\bar\alpha_t}$: which way is 'more data'?")
    return fig


class ScoreFieldExplorer(WidgetView):
    """A t slider over the learned score field; the arrows are updated in place.

    Display with ``display(explorer.widget)`` or as a cell's last expression.
    """

    def __init__(
        self, model: nn.Module, schedule: NoiseSchedule, data: torch.Tensor, dpi: int = 72
    ) -> None:
        self.model, self.schedule, self.data, self.dpi = model, schedule, data, dpi
        self.redraw_times: list[float] = []
        self.t = widgets.IntSlider(
            value=max(1, schedule.T // 10),
            min=1,
            max=schedule.T,
            description="t",
            continuous_update=True,
            layout=widgets.Layout(width="480px"),
        )
        self.image_widget = widgets.Image(format="png")
        self.fig = Figure(figsize=(5, 5), dpi=dpi, layout="constrained")
        self.ax = self.fig.subplots()
        self.quiver = _draw_field(self.ax, model, schedule, data, self.t.value)
        self.t.observe(lambda change: self.redraw(), names="value")
        self.widget = widgets.VBox([self.t, self.image_widget])
        self.redraw()

    def redraw(self) -> None:
        start = time.perf_counter()
        t = self.t.value
        _, scores = score_field(self.model, self.schedule, t, lim=LIM, n=19)
        norm = scores.norm(dim=1, keepdim=True).clamp(min=1e-8)
        unit = (scores / norm).numpy()
        self.quiver.set_UVC(unit[:, 0], unit[:, 1], np.log10(norm[:, 0].numpy()))
        self.quiver.autoscale()
        ab = self.schedule.alpha_bars[t].item()
        self.ax.set_title(
            f"score field at t={t} (" + r"$\bar\alpha_t$" + f"={ab:.2f}): arrows point to data"
        )
        self.image_widget.value = figure_to_png(self.fig, dpi=self.dpi)
        self.redraw_times.append(time.perf_counter() - start)


def _snapshot_indices(n_frames: int, k: int) -> list[int]:
    return sorted({round(i * (n_frames - 1) / (k - 1)) for i in range(k)})


def plot_reverse_snapshots(
    xs: torch.Tensor, timesteps: Sequence[int], data: torch.Tensor, k: int = 6
) -> Figure:
    """``k`` snapshots of the reverse process (``xs``: (S+1, B, 2), x_T first, x_0 last)."""
    idx = _snapshot_indices(xs.shape[0], k)
    fig = LessonFigure(figsize=(2.9 * len(idx), 3.2), layout="constrained")
    axes = fig.subplots(1, len(idx), squeeze=False)[0]
    for ax, i in zip(axes, idx, strict=True):
        ax.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.35)
        ax.scatter(xs[i, :, 0], xs[i, :, 1], s=3, color=SAMPLE_COLOUR)
        _square(ax, 3.0)
        ax.set_title(f"t={timesteps[i]}")
    fig.suptitle("Reverse process: iterative denoising from x_T (left) to x_0 (right)")
    return fig


def animate_reverse_2d(
    xs: torch.Tensor,
    timesteps: Sequence[int],
    data: torch.Tensor,
    max_frames: int = 40,
    interval_ms: int = 80,
) -> str:
    """Animate particles flowing from noise back onto the data: the ink drop un-spreading.

    ``xs``: (S+1, B, 2) from ``sample(..., return_trajectory=True).xs`` (x_T first).
    Returns HTML (jshtml player; no ffmpeg needed).
    """
    idx = _snapshot_indices(xs.shape[0], min(max_frames, xs.shape[0]))
    idx += [idx[-1]] * 8  # hold the final frame a moment
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=60)
    ax.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.35, label="data")
    dots = ax.scatter(xs[0, :, 0], xs[0, :, 1], s=4, color=SAMPLE_COLOUR, label="particles")
    _square(ax, 3.0)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    title = ax.set_title("")

    def update(frame: int) -> list:
        i = idx[frame]
        dots.set_offsets(xs[i].numpy())
        title.set_text(f"reverse process, t = {timesteps[i]}")
        return [dots, title]

    anim = animation.FuncAnimation(fig, update, frames=len(idx), interval=interval_ms)
    return animate_frames(anim)


def plot_samples_vs_data(
    samples: torch.Tensor,
    data: torch.Tensor,
    noise: torch.Tensor | None = None,
    distances: tuple[float, float] | None = None,
) -> Figure:
    """Generated samples next to the data (and, optionally, plain N(0, I) noise for contrast).

    ``distances``: (samples, noise) mean nearest-data distances to print in the titles.
    """
    panels = [("generated x_0", samples)] + (
        [("N(0, I) noise", noise)] if noise is not None else []
    )
    fig = LessonFigure(figsize=(4 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for i, (ax, (name, pts)) in enumerate(zip(axes, panels, strict=True)):
        ax.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.4, label="data")
        ax.scatter(pts[:, 0], pts[:, 1], s=3, color=SAMPLE_COLOUR, label=name)
        _square(ax, 2.5)
        extra = f"\nmean distance to data: {distances[i]:.3f}" if distances else ""
        ax.set_title(name + extra)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.suptitle("Do the samples land on the data?")
    return fig
