"""Lesson 13: strengths and costs of diffusion models, measured, and a cost calculator.

* :func:`stability_sweep`, :func:`plot_stability`: lesson 05's 2-D toy trained at several
  learning rates, each with several seeds: loss curves side by side (training stability).
* :func:`plot_data_types`: one figure, four kinds of data the course generates.
* :func:`plot_flops_rule`: FLOPs per call counted by PyTorch against ``2 P N`` (the rule of
  :mod:`diffusion_edu.costs`), one line per layout.
* :func:`plot_speed_rows`: seconds per image and quality of several ways of sampling.
* :func:`plot_cost_estimates`, :func:`cost_calculator_widget`: estimated seconds per image on
  this machine for any image size, pixels or latents, parameters, steps, guidance and batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from diffusion_edu.costs import (
    CostEstimate,
    GenerationSetup,
    SpeedRow,
    Throughput,
    estimate_cost,
)
from diffusion_edu.toy2d import ToyRunResult, train_and_sample_toy
from diffusion_edu.viz.plots import (
    AMBER,
    FIGURE_WIDTH,
    INK_BLUE,
    RED,
    SLATE,
    TEAL,
    LessonFigure,
    make_grid,
    to_display,
)
from diffusion_edu.viz.widgets import LivePlot, log_slider

__all__ = [
    "StabilitySweep",
    "RulePoint",
    "stability_sweep",
    "plot_stability",
    "plot_data_types",
    "plot_flops_rule",
    "plot_speed_rows",
    "plot_cost_estimates",
    "cost_calculator_widget",
]

_COLOURS = (INK_BLUE, TEAL, AMBER, RED, SLATE)


# ----------------------------------------------------------------------------- stability
@dataclass(frozen=True)
class StabilitySweep:
    """Seeded toy runs, one per (learning rate, seed): ``runs[(lr, seed)]``."""

    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    runs: dict[tuple[float, int], ToyRunResult]

    def final_losses(self, lr: float, last: int = 20) -> list[float]:
        """Each seed's mean loss over its last ``last`` steps (NaN-free runs only)."""
        return [float(np.mean(self.runs[(lr, s)].losses[-last:])) for s in self.seeds]


def stability_sweep(
    data: torch.Tensor,
    lrs: Sequence[float] = (1e-3, 1e-2, 3e-1),
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 300,
    batch_size: int = 256,
    n_samples: int = 500,
) -> StabilitySweep:
    """:func:`~diffusion_edu.toy2d.train_and_sample_toy` for every (learning rate, seed):
    the same recipe, only the learning rate and the seed (weights, batches, noise) change."""
    if not lrs or not seeds:
        raise ValueError("give at least one learning rate and one seed.")
    runs = {
        (lr, s): train_and_sample_toy(
            data, lr=lr, batch_size=batch_size, steps=steps, seed=s, n_samples=n_samples
        )
        for lr in lrs
        for s in seeds
    }
    return StabilitySweep(tuple(lrs), tuple(seeds), runs)


def plot_stability(sweep: StabilitySweep, smooth: int = 10) -> Figure:
    """One panel per learning rate, one loss curve per seed (running mean over ``smooth``
    steps, log axis), and each run's distance of its samples to the data in the legend."""
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 0.3, 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sweep.lrs), sharey=True))
    for ax, lr in zip(axes, sweep.lrs, strict=True):
        for k, seed in enumerate(sweep.seeds):
            run = sweep.runs[(lr, seed)]
            losses = np.asarray(run.losses, dtype=float)
            width = max(1, min(smooth, len(losses)))
            curve = np.convolve(losses, np.ones(width) / width, mode="valid")
            dist = "diverged" if not math.isfinite(run.distance) else f"{run.distance:.3g}"
            ax.plot(np.arange(len(curve)) + width, curve, color=_COLOURS[k % len(_COLOURS)],
                    lw=1.3, label=f"seed {seed}: samples {dist} from data")  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(f"learning rate {lr:g}", fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (log)")
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel(f"loss (running mean of {smooth} steps, log)")
    fig.suptitle("Training stability: the same 2-D toy, three learning rates, one curve per seed")
    return fig


# ----------------------------------------------------------------------------- data types
def plot_data_types(
    points: torch.Tensor,
    data: torch.Tensor,
    panels: Sequence[tuple[str, torch.Tensor]],
) -> Figure:
    """The 2-D toy's sampled ``points`` over its training ``data``, then one grid of images per
    ``(title, images in [-1, 1])`` panel (pixels, decoded latents, text-conditioned...)."""
    if not panels:
        raise ValueError("give at least one (title, images) panel.")
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 2.9), layout="constrained")
    axes = fig.subplots(1, 1 + len(panels))
    ax = axes[0]
    d, p = data.detach().cpu().numpy(), points.detach().cpu().numpy()
    ax.scatter(d[:, 0], d[:, 1], s=2, color=SLATE, alpha=0.4, label="data")
    ax.scatter(p[:, 0], p[:, 1], s=3, color=RED, alpha=0.7, label="samples")
    ax.set_aspect("equal")
    ax.set_title("2-D points (lesson 05)", fontsize=9)
    ax.set_xlabel("x1", fontsize=8)
    ax.set_ylabel("x2", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    for ax, (title, images) in zip(axes[1:], panels, strict=True):
        grid = make_grid(to_display(images), nrow=int(math.ceil(math.sqrt(len(images)))))
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("One method, many kinds of data: every panel sampled in this lesson")
    return fig


# ----------------------------------------------------------------------------- the rule
@dataclass(frozen=True)
class RulePoint:
    """One network on one grid: its parameters P, grid positions N, and FLOPs per call as
    counted by :func:`~diffusion_edu.models.forward_flops`."""

    name: str
    layout: str
    parameters: int
    positions: int
    flops: float

    @property
    def share(self) -> float:
        """The measured grid share: ``flops / (2 P N)``."""
        return self.flops / (2 * self.parameters * self.positions)


def plot_flops_rule(points: Sequence[RulePoint]) -> Figure:
    """Counted FLOPs per call against ``2 P N`` (log-log): a line of slope 1 per layout (its
    mean grid share) says the rule holds; the dotted diagonal is a share of 1."""
    if not points:
        raise ValueError("give at least one RulePoint.")
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 2.5, 4.4), layout="constrained")
    ax = fig.subplots()
    layouts = list(dict.fromkeys(p.layout for p in points))
    x_all = np.array([2.0 * p.parameters * p.positions for p in points])
    xs = np.geomspace(x_all.min() / 2, x_all.max() * 2, 50)
    ax.plot(xs, xs, color="k", ls=":", lw=1, label="grid share 1 (every weight on every position)")
    for k, layout in enumerate(layouts):
        mine = [p for p in points if p.layout == layout]
        share = float(np.mean([p.share for p in mine]))
        colour = _COLOURS[k % len(_COLOURS)]
        ax.plot(xs, share * xs, color=colour, lw=1, alpha=0.6)
        ax.scatter([2.0 * p.parameters * p.positions for p in mine], [p.flops for p in mine],
                   color=colour, s=36, zorder=3, label=f"{layout}: share {share:.3f}")  # fmt: skip
    # One label per spot: points that coincide on the figure (e.g. 4x the pixels and 4x the
    # parameters) share it, one name per line.
    # Labels of every other layout go to the upper left, so neighbouring layouts' labels part.
    spots: dict[tuple[float, float], list[str]] = {}
    side: dict[tuple[float, float], int] = {}
    for p in points:
        x = 2.0 * p.parameters * p.positions
        key = next((k for k in spots if abs(math.log(k[0] / x)) < 0.1
                    and abs(math.log(k[1] / p.flops)) < 0.1), (x, p.flops))  # fmt: skip
        spots.setdefault(key, []).append(p.name)
        side.setdefault(key, layouts.index(p.layout))
    for (x, y), names in spots.items():
        k = side[(x, y)]
        left = k % 2 == 1
        ax.annotate("\n".join(names), (x, y), fontsize=7, xytext=(-6, 4) if left else (5, -4),
                    color=_COLOURS[k % len(_COLOURS)],
                    ha="right" if left else "left", va="bottom" if left else "top",
                    textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("2 x parameters x grid positions")
    ax.set_ylabel("FLOPs per call, counted by PyTorch")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("FLOPs per call = 2 P N x the layout's grid share", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- sampler speeds
def plot_speed_rows(rows: Sequence[SpeedRow]) -> Figure:
    """Seconds per image (log bars, model calls written on them) and Frechet distance, one row
    per way of sampling, as recorded."""
    if not rows:
        raise ValueError("give at least one SpeedRow.")
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 0.55 * len(rows) + 1.5), layout="constrained")
    ax_t, ax_q = fig.subplots(1, 2, sharey=True, width_ratios=(3, 2))
    ys = np.arange(len(rows))[::-1]
    colours = [_COLOURS[k % len(_COLOURS)] for k in range(len(rows))]
    ax_t.barh(ys, [r.seconds_per_image for r in rows], color=colours)
    for y, r in zip(ys, rows, strict=True):
        ax_t.text(r.seconds_per_image * 1.08, y, f"{r.seconds_per_image:.3f} s, "
                  f"{r.model_calls} calls", va="center", fontsize=8)  # fmt: skip
    ax_t.set_xscale("log")
    lo = min(r.seconds_per_image for r in rows)
    hi = max(r.seconds_per_image for r in rows)
    ax_t.set_xlim(lo / 2, hi * 12)
    ax_t.set_yticks(ys, [r.name for r in rows])
    ax_t.set_xlabel("seconds per image on the record's CPU (log)")
    ax_t.set_ylabel("way of sampling")
    ax_q.set_ylabel("(the same rows)", fontsize=8)
    ax_t.set_title("Cost", fontsize=10)
    ax_q.barh(ys, [r.frechet_distance for r in rows], color=colours)
    for y, r in zip(ys, rows, strict=True):
        ax_q.text(r.frechet_distance * 1.02, y, f"{r.frechet_distance:.2f}, "
                  f"{r.class_agreement:.0%}", va="center", fontsize=8)  # fmt: skip
    ax_q.set_xlim(0, 1.45 * max(r.frechet_distance for r in rows))
    ax_q.set_xlabel(
        "Frechet distance (lower: more like real digits)\nand % read as the digit asked"
    )
    ax_q.set_title("What it buys", fontsize=10)
    for ax in (ax_t, ax_q):
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle("Slow generation, and what the samplers did about it")
    return fig


# ----------------------------------------------------------------------------- the calculator
_MARKS = ((1.0, "1 s"), (60.0, "1 min"), (3600.0, "1 h"))


def _format_seconds(s: float) -> str:
    if s < 1:
        return f"{1000 * s:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def plot_cost_estimates(estimates: Sequence[CostEstimate], note: str = "") -> Figure:
    """Estimated seconds per image (log bars, with the FLOPs per image written on them) for each
    estimate, with lines at a second, a minute and an hour; the first is drawn in red."""
    if not estimates:
        raise ValueError("give at least one CostEstimate.")
    height = 0.6 * len(estimates) + 1.9
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 0.6, height), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(estimates))[::-1]
    seconds = [e.seconds_per_image for e in estimates]
    colours = [RED] + [SLATE] * (len(estimates) - 1)
    ax.barh(ys, seconds, color=colours)
    lo, hi = min(seconds + [0.5]) / 3, max(seconds + [7200.0]) * 40
    for y, e in zip(ys, estimates, strict=True):
        ax.text(e.seconds_per_image * 1.15, y, f"{_format_seconds(e.seconds_per_image)}  "
                f"({e.flops_per_image:.3g} FLOPs: {e.calls_per_image} calls x "
                f"{e.flops_per_call:.3g})", va="center", fontsize=8)  # fmt: skip
    for value, text in _MARKS:
        ax.axvline(value, color="k", lw=0.8, ls=":")
        ax.text(value, ys[0] + 0.55, text, fontsize=8, ha="center")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.6, len(estimates) - 0.2)
    ax.set_yticks(ys, [e.setup.name for e in estimates])
    ax.set_xlabel("estimated seconds per image on this machine (log scale)")
    ax.set_ylabel("setting")
    ax.spines[["top", "right"]].set_visible(False)
    title = "What one image costs: FLOPs per call x calls / measured FLOPs per second"
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
    return fig


_SIZES = (28, 32, 64, 128, 256, 512, 768, 1024)
_SPACES = {"pixels": 1, "latents, f = 4": 4, "latents, f = 8": 8}


def cost_calculator_widget(
    throughput: Throughput,
    shares: Mapping[str, float],
    presets: Mapping[str, GenerationSetup],
    references: Sequence[GenerationSetup] = (),
) -> LivePlot:
    """Controls for image size, pixels or latents, parameters, layout (grid share), steps,
    guidance, batch and a what-if speed-up, above :func:`plot_cost_estimates` for that setting
    and the ``references`` (e.g. Stable Diffusion v1 and our digit model). Choosing a preset
    sets every control to its values; the layout list offers the ``shares`` by name."""
    if not presets or not shares:
        raise ValueError("give at least one preset and one layout (name -> grid share).")
    style = {"description_width": "initial"}
    first = next(iter(presets.values()))
    layouts = dict(shares)
    for p in presets.values():
        if p.share not in layouts.values():
            layouts[f"{p.name} (share {p.share:.3g})"] = p.share

    def layout_name(share: float) -> str:
        return next(name for name, s in layouts.items() if s == share)

    def space_name(setup: GenerationSetup) -> str:
        return next(n for n, f in _SPACES.items() if f == setup.downsampling)

    narrow = widgets.Layout(width="230px")
    sizes = sorted(set(_SIZES) | {p.image_size for p in presets.values()})
    controls = {
        "image_size": widgets.Dropdown(options=sizes,
                                       value=first.image_size, description="image side",
                                       style=style, layout=narrow),
        "space": widgets.Dropdown(options=list(_SPACES), value=space_name(first),
                                  description="denoise", style=style, layout=narrow),
        "parameters": log_slider("parameters", first.parameters, 4, 10, step=0.1, style=style,
                                 readout_format=".3g"),
        "layout": widgets.Dropdown(options=list(layouts), value=layout_name(first.share),
                                   description="layout", style=style,
                                   layout=widgets.Layout(width="330px")),
        "steps": widgets.Dropdown(options=sorted({1, 2, 4, 10, 15, 20, 25, 50, 100, 250, 1000}
                                                 | {p.steps for p in presets.values()}),
                                  value=first.steps, description="steps", style=style,
                                  layout=narrow),
        "guidance": widgets.Checkbox(value=first.guidance, description="guidance (2 calls/step)"),
        "batch": widgets.Dropdown(options=[1, 2, 4, 8, 16, 32], value=first.batch,
                                  description="batch", style=style, layout=narrow),
        "speedup": log_slider("what-if speed-up x", 1.0, 0, 4, step=0.25, style=style,
                              readout_format=".3g"),
    }  # fmt: skip
    preset = widgets.Dropdown(options=list(presets), value=next(iter(presets)),
                              description="preset", style=style,
                              layout=widgets.Layout(width="300px"))  # fmt: skip

    def draw(image_size: int, space: str, parameters: float, layout: str, steps: int,
             guidance: bool, batch: int, speedup: float) -> Figure:  # fmt: skip
        f = _SPACES[space]
        name = "your setting"
        if image_size % f:  # the autoencoder needs a side it can divide by f
            image_size = f * max(1, round(image_size / f))
            name += f" (side rounded to {image_size})"
        setup = GenerationSetup(
            name=name, image_size=image_size, latent=f > 1, downsampling=f,
            parameters=parameters, share=layouts[layout], steps=steps, guidance=guidance,
            batch=batch,
        )  # fmt: skip
        mine = estimate_cost(setup, throughput, speedup=speedup)
        others = [estimate_cost(dataclasses.replace(r, batch=batch), throughput, speedup=speedup)
                  for r in references]  # fmt: skip
        measured = throughput.at(batch)
        threads = f"{throughput.threads} thread{'s' if throughput.threads > 1 else ''}"
        note = (f"{measured / 1e9:.3g} GFLOP/s at batch {batch}, measured on this "
                f"{throughput.device.upper()} ({threads})")  # fmt: skip
        if speedup != 1:
            note += (f" x {speedup:.3g} what-if speed-up (NOT measured) = "
                     f"{measured * speedup / 1e9:.3g} GFLOP/s")  # fmt: skip
        return plot_cost_estimates([mine, *others], note=note)

    live = LivePlot(draw, controls, extra=[preset])
    c = live.controls  # three rows of controls instead of one long one
    live.widget.children = (
        widgets.VBox([
            widgets.HBox([preset, c["image_size"], c["space"]]),
            widgets.HBox([c["parameters"], c["layout"]]),
            widgets.HBox([c["steps"], c["guidance"], c["batch"], c["speedup"]]),
        ]),
        live.status,
        live.image.widget,
    )  # fmt: skip

    def apply(change: dict) -> None:
        p = presets[change["new"]]
        live.controls["image_size"].value = p.image_size
        live.controls["space"].value = space_name(p)
        live.controls["parameters"].value = p.parameters
        live.controls["layout"].value = layout_name(p.share)
        live.controls["steps"].value = p.steps
        live.controls["guidance"].value = p.guidance
        live.controls["batch"].value = p.batch

    preset.observe(apply, names="value")
    live.preset = preset  # so that code (and tests) can choose a preset
    return live
