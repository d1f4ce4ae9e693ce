"""Pictures, widgets and animations for lesson 01 (ink in water).

Everything here draws what :mod:`diffusion_edu.physics` computes; nothing is simulated here
except rescaling a walk to another diffusion coefficient (:meth:`RandomWalk.with_D`).
The widgets return a :class:`~diffusion_edu.viz.widgets.LivePlot`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from diffusion_edu.physics import (
    NoiseWalk,
    RandomWalk,
    heat_kernel,
    noise_walk,
    noise_walk_moments,
)
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.animation import animate_frames
from diffusion_edu.viz.plots import FIGURE_WIDTH, INK_BLUE, square_axes
from diffusion_edu.viz.widgets import LivePlot, log_slider, play_button

__all__ = [
    "plot_ink_drop",
    "plot_concentration",
    "plot_heat_profiles",
    "plot_variance_growth",
    "ink_widget",
    "animate_ink",
    "plot_noise_walks",
    "noise_walk_widget",
]

INK = INK_BLUE  # the colour of our ink


def _square_limits(walk: RandomWalk) -> float:
    """A half-width that holds nearly every particle at the last step."""
    spread = walk.positions[-1].abs().quantile(0.995).item()
    return max(1.0, 1.1 * spread)


def _panel_grid(n: int, panel: tuple[float, float], max_cols: int = 4) -> tuple[Figure, list[Axes]]:
    """``n`` panels of ``panel`` (width, height) inches, at most ``max_cols`` to a row.

    Four panels of at most 2.35 inches keep a row within :data:`FIGURE_WIDTH`; more panels
    wrap onto further rows (the unused cells of the last row are removed).
    """
    cols = max(1, min(n, max_cols))
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(
        rows, cols, figsize=(panel[0] * cols, panel[1] * rows + 0.4), squeeze=False
    )
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


# ----------------------------------------------------------------------------- particles
def plot_ink_drop(
    walk: RandomWalk, steps: Sequence[int], half_width: float | None = None
) -> Figure:
    """The drop at a few times: one scatter panel per step (2-D walks), four to a row."""
    if walk.positions.shape[-1] != 2:
        raise ValueError("plot_ink_drop draws 2-D walks (random_walk(..., dim=2)).")
    lim = half_width or _square_limits(walk)
    fig, axes = _panel_grid(len(steps), panel=(2.35, 2.75))
    for ax, step in zip(axes, steps, strict=True):
        _draw_particles(ax, walk, step, lim)
        t = step * walk.dt
        ax.set_title(f"t = {t:g}\nstd = {math.sqrt(float(walk.variance()[step])):.2g}")
    fig.suptitle(f"A drop of {walk.positions.shape[1]:,} ink particles spreading (D = {walk.D:g})")
    fig.tight_layout()
    return fig


def _draw_particles(ax: plt.Axes, walk: RandomWalk, step: int, lim: float) -> PathCollection:
    """The particles at ``step`` as dots, on square axes of half-width ``lim``."""
    xy = walk.positions[step].numpy()
    dots = ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.35, color=INK, linewidths=0)
    square_axes(ax, lim, "x position", "y position")
    return dots


def ink_widget(walk: RandomWalk, max_D: float = 4.0) -> LivePlot:
    """Sliders for time and diffusion coefficient D (with a play button for time).

    Left: the particles at that time. Right: their measured variance so far against
    Einstein's ``2 D t``. Changing D rescales the same random kicks (no new simulation).
    """
    lim = _square_limits(walk.with_D(max_D))
    step = widgets.IntSlider(
        value=walk.n_steps // 4, min=0, max=walk.n_steps, step=1, description="time step"
    )
    D = log_slider("D", walk.D, -1, math.log10(max_D))
    play = play_button(step, step=max(1, walk.n_steps // 40))
    times = walk.times.numpy()

    def draw(step: int, D: float) -> Figure:
        w = walk.with_D(D)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 4))
        _draw_particles(left, w, step, lim)
        left.set_title(f"particles at t = {step * w.dt:g}")
        var = w.variance().numpy()
        right.plot(times, 2 * D * times + var[0], color="0.5", ls="--", label="2 D t (Einstein)")
        right.plot(times[: step + 1], var[: step + 1], color=INK, label="measured variance")
        right.plot(times[step], var[step], "o", color=INK)
        right.set_xlim(0, times[-1])
        right.set_ylim(0, 1.05 * 2 * max_D * times[-1] + var[0])
        right.set_xlabel("time t")
        right.set_ylabel("variance of x position")
        right.set_title("spread grows linearly with time")
        right.legend(loc="upper left")
        fig.suptitle(f"Ink drop, D = {D:.2g}")
        fig.tight_layout()
        return fig

    def update(fig: Figure, step: int, D: float) -> None:  # the same picture, new data
        w = walk.with_D(D)
        left, right = fig.axes
        left.collections[0].set_offsets(w.positions[step].numpy())
        left.set_title(f"particles at t = {step * w.dt:g}")
        var = w.variance().numpy()
        einstein, measured, now = right.lines[:3]
        einstein.set_ydata(2 * D * times + var[0])
        measured.set_data(times[: step + 1], var[: step + 1])
        now.set_data([times[step]], [var[step]])
        fig._suptitle.set_text(f"Ink drop, D = {D:.2g}")

    return LivePlot(draw, {"step": step, "D": D}, extra=[play], update=update)


def animate_ink(walk: RandomWalk, n_frames: int = 40, interval_ms: int = 100) -> str:
    """An HTML animation of the drop spreading (particles left, variance vs time right)."""
    lim = _square_limits(walk)
    frames = np.unique(np.linspace(0, walk.n_steps, n_frames).round().astype(int))
    times, var = walk.times.numpy(), walk.variance().numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.4), dpi=72)
    dots = _draw_particles(left, walk, 0, lim)
    title = left.set_title("t = 0")
    right.plot(times, 2 * walk.D * times + var[0], color="0.5", ls="--", label="2 D t")
    (line,) = right.plot([], [], color=INK, label="measured")
    right.set_xlim(0, times[-1])
    right.set_ylim(0, 1.1 * max(var.max(), 2 * walk.D * times[-1]))
    right.set_xlabel("time t")
    right.set_ylabel("variance of x position")
    right.set_title("variance vs time")
    right.legend(loc="upper left")
    fig.tight_layout()

    def update(i: int) -> list:
        step = frames[i]
        dots.set_offsets(walk.positions[step].numpy())
        line.set_data(times[: step + 1], var[: step + 1])
        title.set_text(f"t = {times[step]:g}")
        return [dots, line, title]

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval_ms)
    return animate_frames(anim)


def plot_variance_growth(walk: RandomWalk, Ds: Sequence[float] = (0.5, 1.0, 2.0)) -> Figure:
    """Measured variance vs time for several D (left) and vs ``2 D t`` (right: one line)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 4))
    times = walk.times.numpy()
    top = 0.0
    for D, colour in zip(Ds, plt.cm.viridis(np.linspace(0.1, 0.8, len(Ds))), strict=True):
        w = walk.with_D(D)
        growth = (w.variance() - w.variance()[0]).numpy()  # subtract the drop's own size
        every = max(1, len(times) // 25)
        left.plot(times[::every], growth[::every], "o", ms=4, color=colour, label=f"D = {D:g}")
        left.plot(times, 2 * D * times, color=colour, lw=1)
        right.plot(2 * D * times[::every], growth[::every], "o", ms=4, color=colour)
        top = max(top, float(growth.max()), 2 * D * times[-1])
    right.plot([0, top], [0, top], color="0.3", ls="--", label="measured = 2 D t")
    left.set_xlabel("time t")
    left.set_ylabel("growth of variance  Var(t) - Var(0)")
    left.set_title("dots: measured, lines: 2 D t")
    left.legend()
    right.set_xlabel("Einstein's prediction 2 D t")
    right.set_ylabel("measured growth of variance")
    right.set_title("every D falls on one line")
    right.legend()
    fig.suptitle(f"Variance grows linearly with time ({walk.positions.shape[1]:,} particles)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- concentration
def plot_concentration(fields: torch.Tensor, times: Sequence[float], dx: float = 1.0) -> Figure:
    """The heat equation's 2-D concentration ``(K, H, W)`` at ``K`` times, four panels a row."""
    k, h, w = fields.shape
    extent = (-w / 2 * dx, w / 2 * dx, -h / 2 * dx, h / 2 * dx)
    fig, axes = _panel_grid(k, panel=(2.35, 2.75))
    for ax, field, t in zip(axes, fields, times, strict=True):
        ax.imshow(
            field.numpy(), cmap="Blues", extent=extent, origin="lower",
            vmin=0, vmax=float(field.max()),
        )  # fmt: skip
        ax.set_title(f"t = {t:g}\npeak = {float(field.max()):.2g}")
        ax.set_xlabel("x position")
        ax.set_ylabel("y position")
    fig.suptitle("Concentration of ink: the heat equation dc/dt = D laplacian(c)")
    fig.tight_layout()
    return fig


def plot_heat_profiles(
    x: torch.Tensor, fields: torch.Tensor, times: Sequence[float], D: float
) -> Figure:
    """1-D concentrations from the solver (solid) against the heat kernel (dashed)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(times)))
    for field, t, colour in zip(fields, times, colours, strict=True):
        ax.plot(x.numpy(), field.numpy(), color=colour, lw=2, label=f"solver, t = {t:g}")
        if t > 0:
            ax.plot(x.numpy(), heat_kernel(x, t, D).numpy(), color="k", ls="--", lw=1)
    ax.plot([], [], color="k", ls="--", lw=1, label="Gaussian, variance 2 D t")
    later = [f for f, t in zip(fields, times, strict=True) if t > 0]
    if later:  # a point drop at t = 0 is a spike; scale the axes to the spread-out curves
        ax.set_ylim(0, 1.15 * max(float(f.max()) for f in later))
        half = 4.5 * math.sqrt(2 * D * max(times))
        ax.set_xlim(max(float(x.min()), -half), min(float(x.max()), half))
    ax.set_xlabel("position x")
    ax.set_ylabel("concentration c(x, t)")
    ax.set_title("Concentration flows from high to low: a Gaussian that widens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the bridge
def plot_noise_walks(
    plain: NoiseWalk,
    shrinking: NoiseWalk,
    schedule: NoiseSchedule,
    n_paths: int = 12,
) -> Figure:
    """One pixel, noised step after step: plain random walk vs DDPM's shrinking walk.

    ``plain`` and ``shrinking`` hold many copies of the same start value, shape
    ``(K, N, ...)``. Top row: ``n_paths`` paths of each, on the same y-axis, with limits that
    hold every drawn path. Bottom: the variance over copies vs t, measured (dots) and exact
    (lines, :func:`~diffusion_edu.physics.noise_walk_moments`). Two rows keep the figure 9.5
    inches wide, so JupyterLab shows it at full size (about 950 pixels).
    """
    fig = plt.figure(figsize=(9.5, 7.0))
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 0.9))
    top_left = fig.add_subplot(grid[0, 0])
    axes = [top_left, fig.add_subplot(grid[0, 1], sharey=top_left), fig.add_subplot(grid[1, :])]
    ts = plain.ts.numpy()
    start = plain.states[0].flatten()
    mean0, var0 = float(start.mean()), float(start.var()) if start.numel() > 1 else 0.0
    highest = 3.0  # at least N(0, 1)'s +-3 standard deviations
    for ax, walk, colour, label in (
        (axes[0], plain, "#c0392b", "plain: x + sqrt(beta) eps"),
        (axes[1], shrinking, INK, "shrinking: sqrt(1 - beta) x + sqrt(beta) eps"),
    ):
        paths = walk.states.flatten(1)[:, :n_paths].numpy()  # (K, n_paths)
        ax.plot(walk.ts.numpy(), paths, color=colour, lw=0.7, alpha=0.7)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("step t")
        ax.set_ylabel("pixel value x_t")
        ax.set_title(label, fontsize=10)
        ax.set_xlim(0, ts[-1])
        highest = max(highest, float(np.abs(paths).max()))
    axes[0].set_ylim(-1.08 * highest, 1.08 * highest)  # shared: every path of both walks fits
    axes[1].tick_params(labelleft=True)
    ax = axes[2]
    all_t = np.arange(schedule.T + 1)
    for walk, colour, label, shrink in (
        (plain, "#c0392b", "plain", False),
        (shrinking, INK, "shrinking", True),
    ):
        measured = walk.states.flatten(1).var(dim=1).numpy()
        every = max(1, len(walk.ts) // 30)
        ax.plot(walk.ts.numpy()[::every], measured[::every], "o", ms=4, color=colour)
        _, exact = noise_walk_moments(schedule, mean0, var0, shrink=shrink)
        ax.plot(all_t, exact.numpy(), color=colour, label=f"{label} (exact)")
    ax.axhline(1.0, color="0.3", ls=":", label="variance 1 = N(0, 1)")
    ax.set_xlabel("step t")
    ax.set_ylabel("variance of x_t over many copies")
    ax.set_title("plain grows forever; shrinking settles at 1")
    ax.legend(fontsize=8)
    ax.set_xlim(0, ts[-1])
    fig.suptitle(f"Noising one pixel (start x_0 = {mean0:.2g}) step after step")
    fig.tight_layout()
    return fig


def noise_walk_widget(n_copies: int = 2000, T: int = 300, seed: int = 0) -> LivePlot:
    """Sliders: the start value x_0 and a constant beta. Plain vs shrinking walk, side by side.

    Whatever x_0 and beta you pick, the shrinking walk heads for N(0, 1); beta only changes how
    fast (with the smallest beta it is still on its way at step T). The plain walk's variance is
    ``t * beta``: it never stops growing.
    """
    x0_slider = widgets.FloatSlider(value=1.0, min=-3.0, max=3.0, step=0.1, description="x_0")
    beta_slider = log_slider("beta", 0.02, -3, -0.5)

    def walks(x0: float, beta: float) -> tuple[NoiseWalk, NoiseWalk, NoiseSchedule]:
        schedule = NoiseSchedule.from_betas(torch.full((T,), beta, dtype=torch.float64))
        start = torch.full((n_copies, 1), x0)
        g = torch.Generator().manual_seed(seed)
        plain = noise_walk(start, schedule, shrink=False, generator=g)
        g = torch.Generator().manual_seed(seed)
        shrinking = noise_walk(start, schedule, shrink=True, generator=g)
        return plain, shrinking, schedule

    def draw(x0: float, beta: float) -> Figure:
        return plot_noise_walks(*walks(x0, beta))

    def update(fig: Figure, x0: float, beta: float) -> None:
        # The same picture as plot_noise_walks draws, with new data (a test checks they agree).
        plain, shrinking, schedule = walks(x0, beta)
        top_left, top_right, bottom = fig.axes[:3]
        highest = 3.0
        for ax, walk in ((top_left, plain), (top_right, shrinking)):
            paths = walk.states.flatten(1)[:, : len(ax.lines) - 1].numpy()
            for line, path in zip(ax.lines, paths.T, strict=False):
                line.set_ydata(path)
            highest = max(highest, float(np.abs(paths).max()))
        top_left.set_ylim(-1.08 * highest, 1.08 * highest)
        start = plain.states[0].flatten()
        mean0, var0 = float(start.mean()), float(start.var()) if start.numel() > 1 else 0.0
        lines = iter(bottom.lines)
        for walk, shrink in ((plain, False), (shrinking, True)):
            measured = walk.states.flatten(1).var(dim=1).numpy()
            every = max(1, len(walk.ts) // 30)
            next(lines).set_ydata(measured[::every])
            next(lines).set_ydata(noise_walk_moments(schedule, mean0, var0, shrink=shrink)[1])
        bottom.relim()
        bottom.autoscale_view()
        fig._suptitle.set_text(f"Noising one pixel (start x_0 = {mean0:.2g}) step after step")

    return LivePlot(draw, {"x0": x0_slider, "beta": beta_slider}, update=update)
