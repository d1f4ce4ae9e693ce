"""Lesson 12: pictures of the continuous-time view and of flow matching.

* :func:`plot_forward_sde`: Euler-Maruyama paths of the forward VP-SDE in one dimension, over
  the closed form's mean and +-2 standard deviations.
* :func:`plot_langevin`: 2-D points after Langevin dynamics at one noise level and after
  annealed Langevin dynamics.
* :func:`plot_paths_2d` and :func:`animate_paths_2d`: particles carried from the same noise by
  several samplers, their paths drawn (and each panel's mean straightness), or animated.
* :func:`sampler_paths_widget`: pick a sampler (SDE or ODE; Euler or Heun; the DDPM model or
  the flow model) and a number of steps, and see the paths and where they end.
* :func:`plot_steps_vs_quality`: class agreement against sampling steps on MNIST, the flow
  model against the DDPM model (the record of ``scripts/measure_flow_vs_ddpm.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib import animation
from matplotlib.figure import Figure
from torch import nn

from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.sde import VPSDE, path_straightness, solve_reverse
from diffusion_edu.toy2d import nearest_data_distance
from diffusion_edu.viz.animation import animate_frames
from diffusion_edu.viz.plots import AMBER, INK_BLUE, RED, SLATE, TEAL, LessonFigure
from diffusion_edu.viz.widgets import LivePlot

__all__ = [
    "plot_forward_sde",
    "plot_langevin",
    "plot_paths_2d",
    "animate_paths_2d",
    "SAMPLER_CHOICES",
    "toy_paths",
    "sampler_paths_widget",
    "plot_steps_vs_quality",
]

LIM = 3.0  # the 2-D panels show [-LIM, LIM]^2: noise starts out to about 3


def plot_forward_sde(paths: torch.Tensor, sde: VPSDE, x0s: torch.Tensor) -> Figure:
    """Euler-Maruyama paths ``(S + 1, B)`` (or ``(S + 1, B, 1)``) of the forward SDE over tau in
    [0, 1], started at the values ``x0s`` (one colour each, paths started at the same value share
    it), with the closed form's mean ``m(tau) x_0`` and ``+-2`` standard deviations shaded."""
    paths = paths.reshape(paths.shape[0], -1).double()
    steps = paths.shape[0] - 1
    taus = torch.linspace(0, 1, steps + 1)
    starts = sorted({round(float(v), 6) for v in paths[0]})
    colours = [INK_BLUE, TEAL, AMBER, RED, SLATE]
    fig = LessonFigure(figsize=(9.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    grid = torch.linspace(0, 1, 101)
    laws = [sde.marginal(float(tau)) for tau in grid]
    m = torch.tensor([law[0] for law in laws])
    s = torch.tensor([law[1] for law in laws])
    for i, x0 in enumerate(float(v) for v in x0s):
        colour = colours[i % len(colours)]
        ax.fill_between(grid, m * x0 - 2 * s, m * x0 + 2 * s, color=colour, alpha=0.12)
        ax.plot(grid, m * x0, color=colour, lw=1.5, ls="--")
    for b in range(paths.shape[1]):
        colour = colours[starts.index(round(float(paths[0, b]), 6)) % len(colours)]
        ax.plot(taus, paths[:, b], color=colour, lw=0.7, alpha=0.7)
    ax.set_xlabel("time tau (0 = data, 1 = noise)")
    ax.set_ylabel("x")
    ax.set_xlim(0, 1)
    ax.set_title("The forward SDE, Euler-Maruyama paths; dashed: the closed form's mean, "
                 "shaded: +-2 standard deviations")  # fmt: skip
    return fig


def _cloud(ax, points: torch.Tensor, data: torch.Tensor | None, title: str) -> None:  # noqa: ANN001
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=2, color=SLATE, alpha=0.35)
    ax.scatter(points[:, 0], points[:, 1], s=3, color=RED)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def plot_langevin(panels: Mapping[str, torch.Tensor], data: torch.Tensor) -> Figure:
    """One panel per entry ``title -> points (B, 2)`` over the data (grey): e.g. the start,
    Langevin dynamics at one noise level, and annealed Langevin dynamics."""
    fig = LessonFigure(figsize=(3.1 * len(panels), 3.4), layout="constrained")
    for ax, (title, points) in zip(fig.subplots(1, len(panels), squeeze=False)[0],
                                   panels.items(), strict=True):  # fmt: skip
        _cloud(ax, points, data, title)
    return fig


def _draw_paths(ax, path: torch.Tensor, data: torch.Tensor, title: str, n_lines: int) -> None:  # noqa: ANN001
    lines = path[:, :n_lines]
    for b in range(lines.shape[1]):
        ax.plot(lines[:, b, 0], lines[:, b, 1], color=TEAL, lw=0.6, alpha=0.6)
    ax.scatter(data[:, 0], data[:, 1], s=2, color=SLATE, alpha=0.4, zorder=2)
    ax.scatter(path[0, :n_lines, 0], path[0, :n_lines, 1], s=8, color=AMBER, zorder=3)
    ax.scatter(path[-1, :, 0], path[-1, :, 1], s=3, color=RED, zorder=3)
    ax.set_xlim(-LIM, LIM)
    ax.set_ylim(-LIM, LIM)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def plot_paths_2d(
    paths: Mapping[str, torch.Tensor], data: torch.Tensor, n_lines: int = 30
) -> Figure:
    """One panel per sampler ``name -> path (S + 1, B, 2)`` (noise first): the first ``n_lines``
    particles' paths (teal; start in amber), every particle's end point (red), the data (grey);
    each title gives the mean straightness of all B paths (:func:`path_straightness`)."""
    if not paths:
        raise ValueError("give at least one path: {name: tensor (S + 1, B, 2)}.")
    cols = 2 if len(paths) in (2, 4) else min(3, len(paths))
    rows = -(-len(paths) // cols)
    fig = LessonFigure(figsize=(3.2 * cols, 3.3 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, path) in zip(axes, paths.items(), strict=False):
        straight = path_straightness(path).mean().item()
        _draw_paths(ax, path, data, f"{name}\nstraightness {straight:.2f}", n_lines)
    for ax in axes[len(paths) :]:
        ax.axis("off")
    fig.suptitle("From the same noise (amber) to samples (red): each line is one particle's path")
    return fig


def animate_paths_2d(
    paths: Mapping[str, torch.Tensor],
    data: torch.Tensor,
    frames: int = 30,
    interval_ms: int = 100,
) -> str:
    """Animate several samplers side by side from the same starting points (HTML player).

    Paths may have different numbers of steps: frame k shows each at the same *fraction* of
    its run (k / (frames - 1)), and the particles leave a faint trail.
    """
    if not paths:
        raise ValueError("give at least one path: {name: tensor (S + 1, B, 2)}.")
    names = list(paths)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.2), dpi=60,
                             squeeze=False)  # fmt: skip
    dots, trails = [], []
    for ax, name in zip(axes[0], names, strict=True):
        ax.scatter(data[:, 0], data[:, 1], s=2, color=SLATE, alpha=0.35)
        trails.append(ax.scatter([], [], s=1, color=TEAL, alpha=0.25))
        dots.append(ax.scatter(paths[name][0, :, 0], paths[name][0, :, 1], s=4, color=RED))
        ax.set_xlim(-LIM, LIM)
        ax.set_ylim(-LIM, LIM)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
    hold = 6  # frames that hold the end

    def update(frame: int) -> list:
        fraction = min(frame, frames - 1) / (frames - 1)
        for dot, trail, name in zip(dots, trails, names, strict=True):
            path = paths[name]
            i = round(fraction * (path.shape[0] - 1))
            dot.set_offsets(path[i].numpy())
            trail.set_offsets(path[: i + 1, :60].reshape(-1, 2).numpy())
        return [*dots, *trails]

    anim = animation.FuncAnimation(fig, update, frames=frames + hold, interval=interval_ms)
    return animate_frames(anim)


#: The samplers :func:`toy_paths` and the widget offer: label -> (model key, how it samples).
SAMPLER_CHOICES: dict[str, tuple[str, str]] = {
    "SDE: Euler-Maruyama (DDPM model)": ("eps", "sde"),
    "ODE: Euler = DDIM (DDPM model)": ("eps", "ddim"),
    "ODE: Heun (DDPM model)": ("eps", "heun"),
    "ODE: Euler (flow model)": ("flow", "euler"),
    "ODE: Heun (flow model)": ("flow", "heun"),
}


def toy_paths(
    choice: str,
    models: Mapping[str, nn.Module],
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    steps: int,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """``(path (steps + 1, B, 2), model calls per particle)`` of one of :data:`SAMPLER_CHOICES`
    on a 2-D toy: ``models`` holds ``"eps"`` (a DDPM noise predictor) and ``"flow"`` (a flow
    model), both on ``schedule``; every choice starts from the same ``x_T``."""
    if choice not in SAMPLER_CHOICES:
        raise ValueError(f"choice must be one of {list(SAMPLER_CHOICES)}, got {choice!r}.")
    key, how = SAMPLER_CHOICES[choice]
    if key not in models:
        raise ValueError(f"{choice!r} needs models[{key!r}]; models has {sorted(models)}.")
    model = models[key]
    if how == "sde":
        with torch.no_grad():
            path = solve_reverse(model, schedule, x_T, steps, ode=False,
                                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return path, steps
    run = sample(model, schedule, x_T=x_T, sampler=how, steps=steps, clip_x0=False,
                 progress=False, return_trajectory=True, seed=seed)  # fmt: skip
    return run.xs, (2 * steps - 1 if how == "heun" else steps)


def sampler_paths_widget(
    models: Mapping[str, nn.Module],
    schedule: NoiseSchedule,
    data: torch.Tensor,
    x_T: torch.Tensor,
    max_steps: int = 100,
    n_lines: int = 40,
) -> LivePlot:
    """A sampler menu and a steps slider over the 2-D toy: the paths from the same noise
    ``x_T`` (B, 2), where they end, and three numbers: model calls per particle, the mean
    straightness of the paths, and the mean distance from each end point to the nearest data
    point (:func:`~diffusion_edu.toy2d.nearest_data_distance`)."""

    def draw(sampler: str, steps: int) -> Figure:
        path, calls = toy_paths(sampler, models, schedule, x_T, steps)
        straight = path_straightness(path).mean().item()
        dist = nearest_data_distance(path[-1], data)
        fig = LessonFigure(figsize=(8.0, 4.0), layout="constrained")
        left, right = fig.subplots(1, 2)
        _draw_paths(left, path, data, "paths (amber: start)", n_lines)
        _cloud(right, path[-1], data, "where they end (zoomed in)")
        fig.suptitle(f"{sampler}, {steps} steps: {calls} model calls per particle, "
                     f"straightness {straight:.2f}, distance to the data {dist:.3f}",
                     fontsize=10)  # fmt: skip
        return fig

    menu = widgets.Dropdown(options=list(SAMPLER_CHOICES), value=list(SAMPLER_CHOICES)[3],
                            description="sampler", layout=widgets.Layout(width="380px"),
                            style={"description_width": "60px"})  # fmt: skip
    steps = widgets.IntSlider(
        value=10, min=1, max=max_steps, description="steps", continuous_update=False,
        layout=widgets.Layout(width="360px"),
    )  # fmt: skip
    return LivePlot(draw, {"sampler": menu, "steps": steps})


def plot_steps_vs_quality(
    curves: Mapping[str, Mapping[int, float]],
    goal: float = 0.97,
    ylabel: str = "class agreement",
    title: str = "",
    fmt: Callable[[float], str] = lambda v: f"{v:.0%}",
    higher_is_better: bool = True,
) -> Figure:
    """Quality against sampling steps, one line per ``name -> {steps: value}``, with the goal
    as a dashed line and, for each line, the fewest steps that reach it marked (at or above the
    goal; at or below it with ``higher_is_better=False``, e.g. for a Frechet distance)."""
    fig = LessonFigure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    colours = [TEAL, INK_BLUE, AMBER, RED, SLATE]
    for i, (name, curve) in enumerate(curves.items()):
        xs = sorted(curve)
        ys = [curve[x] for x in xs]
        colour = colours[i % len(colours)]
        ax.plot(xs, ys, marker="o", color=colour, label=name)
        reached = [x for x in xs if (curve[x] >= goal if higher_is_better else curve[x] <= goal)]
        first = reached[0] if reached else None
        if first is not None:
            ax.annotate(f"{first} steps: {fmt(curve[first])}", (first, curve[first]),
                        textcoords="offset points", xytext=(6, -14 - 12 * i), fontsize=8,
                        color=colour)  # fmt: skip
    ax.axhline(goal, color=SLATE, ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampling steps (log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_title(title or f"How many steps to reach {fmt(goal)}?")
    return fig
