"""Lesson 06: anatomy of the U-Net, traced from the real model.

* :func:`trace_unet`: run the library's :class:`~diffusion_edu.UNet` once with forward hooks
  and record the shape after every stage (nothing in ``unet.py`` is changed). The stages are
  :class:`~diffusion_edu.models.unet2015.Stage` records, like those of the original
  segmentation U-Net (Ronneberger et al. 2015) whose shape arithmetic (unpadded 3x3
  convolutions, 572 -> 388) lives in :mod:`diffusion_edu.models.unet2015`.
* :func:`draw_unet_diagram`, :func:`draw_unet2015_diagram`: the U shape, boxes labelled by shape.
* :func:`parameter_breakdown`, :func:`plot_parameter_breakdown`: where the weights are.
* :func:`unet_config_widget`, :func:`plot_unet_config`: sliders for the configuration (base
  channels, levels, blocks per level, attention) over the traced diagram and the parameters of
  each part, from the real ``UNet`` built for that configuration.
* :func:`plot_time_embedding`: the sinusoidal time embedding as a heat map, and how similar
  the embeddings of nearby t are.
* :func:`remove_skips`, :func:`run_skip_experiment`: what the skip connections buy, measured.
"""

from __future__ import annotations

import copy
import functools
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.path import Path
from torch import nn
from torch.utils.hooks import RemovableHandle

from diffusion_edu.forward import q_sample
from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import (
    Part,
    Stage,
    skip_pairs,
    unet2015_skip_pairs,
    unet2015_stages,
)
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import predict_x0_from_eps
from diffusion_edu.toy2d import toy_train_config, train_toy_steps
from diffusion_edu.viz.plots import AMBER, RED, SLATE, TEAL, LessonFigure, make_grid
from diffusion_edu.viz.widgets import LivePlot

__all__ = [
    "trace_unet",
    "stage_table",
    "draw_unet_diagram",
    "draw_unet2015_diagram",
    "parameter_breakdown",
    "plot_parameter_breakdown",
    "plot_unet_config",
    "unet_config_widget",
    "plot_time_embedding",
    "remove_skips",
    "SkipExperimentResult",
    "run_skip_experiment",
    "plot_skip_experiment",
]

PART_COLOURS: dict[str, str] = {
    "in": SLATE,
    "down": TEAL,
    "mid": AMBER,
    "up": RED,
    "out": SLATE,
}


# ----------------------------------------------------------------------------- tracing
def _unet_stage_modules(model: UNet) -> list[tuple[str, Part, int, nn.Module, bool]]:
    """The stages of ``model`` in the order ``forward`` runs them (name, part, level, module)."""
    levels = len(model.config.channel_mults)
    stages: list[tuple[str, Part, int, nn.Module, bool]] = [
        ("conv_in", "in", 0, model.conv_in, False)
    ]
    for level, (blocks, down) in enumerate(zip(model.down_blocks, model.downsamples, strict=True)):
        for j, block in enumerate(blocks):
            stages.append((f"down {level}.{j}", "down", level, block, True))
        if level < levels - 1:
            stages.append((f"downsample {level}", "down", level + 1, down, False))
    stages.append(("mid res 1", "mid", levels - 1, model.mid1, False))
    if not isinstance(model.mid_attn, nn.Identity):
        stages.append(("mid attention", "mid", levels - 1, model.mid_attn, False))
    stages.append(("mid res 2", "mid", levels - 1, model.mid2, False))
    for i, (blocks, up) in enumerate(zip(model.up_blocks, model.upsamples, strict=True)):
        level = levels - 1 - i
        for j, block in enumerate(blocks):
            stages.append((f"up {level}.{j}", "up", level, block, True))
        if level > 0:
            stages.append((f"upsample {level}", "up", level - 1, up, False))
    stages.append(("conv_out", "out", 0, model.conv_out, False))
    return stages


@torch.no_grad()
def trace_unet(model: UNet, image_size: int | None = None) -> list[Stage]:
    """Run ``model`` once on a blank image and record every stage's input and output shape.

    Uses forward hooks (``register_forward_hook``) so the model's code is untouched; the hooks
    are removed before returning. ``image_size`` defaults to ``model.config.image_size``.
    """
    cfg = model.config
    size = image_size or cfg.image_size
    stages = _unet_stage_modules(model)
    seen: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    handles: list[RemovableHandle] = []
    for index, (_, _, _, module, _) in enumerate(stages):

        def hook(mod: nn.Module, args: tuple, output: torch.Tensor, index: int = index) -> None:
            seen[index] = (tuple(args[0].shape[1:]), tuple(output.shape[1:]))

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.zeros(1, cfg.in_channels, size, size, device=device)  # (1, C, H, W)
        model(x, 1)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    result = []
    for index, (name, part, level, module, skip) in enumerate(stages):
        if index not in seen:  # e.g. an upsample that forward skipped
            continue
        in_shape, out_shape = seen[index]
        result.append(Stage(name, part, level, in_shape, out_shape, count_parameters(module), skip))
    return result


# ----------------------------------------------------------------------------- diagrams
# Every figure of the lesson fits JupyterLab's default notebook width (about 960 px) at 100 dpi,
# so it is shown at its own size and an 8-point label stays 8 points on screen.
FIGURE_WIDTH = 9.4  # inches: with the notebook's tight bounding box, about 950 px
LABEL_SIZE = 8  # points: the smallest text in these figures
LEVEL_STEP = 1.6  # vertical distance between two resolution levels, in data units
INCHES_PER_UNIT = 0.4  # the diagrams' vertical scale
NOTES_STRIP = 0.6  # inches under the lowest shape label, for the notes and the legend
U_MARGINS = 1.8  # inches above and below a U diagram's axes: title, stage names, x label


def _shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _skip_height(span: float) -> float:
    """How far a skip arc rises above its ends: longer skips arch higher, so arcs nest."""
    return 0.3 + 0.06 * span


def _box_height(stage: Stage, max_hw: int) -> float:
    return 0.25 + 0.85 * np.sqrt(stage.out_shape[-1] / max_hw)


def _u_limits(stages: Sequence[Stage], pairs: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """The y range of a U diagram drawn at :data:`INCHES_PER_UNIT`.

    On top, the highest skip arc; at the bottom, the lowest shape label (about 0.06 in per
    character at 8 points) and a strip for the notes and the legend.
    """
    max_hw = max(s.out_shape[-1] for s in stages)
    lowest_label = min(
        -LEVEL_STEP * s.level
        - _box_height(s, max_hw) / 2
        - (0.1 + 0.06 * len(_shape_label(s.out_shape))) / INCHES_PER_UNIT
        for s in stages
    )
    top = max(
        [-LEVEL_STEP * stages[a].level + 0.62 + _skip_height(b - a) for a, b in pairs] + [0.7]
    )
    return lowest_label - NOTES_STRIP / INCHES_PER_UNIT, top + 0.15


def _u_height(stages: Sequence[Stage], pairs: Sequence[tuple[int, int]]) -> float:
    """Height (inches) of the axes of a U diagram, at :data:`INCHES_PER_UNIT`."""
    bottom, top = _u_limits(stages, pairs)
    return INCHES_PER_UNIT * (top - bottom)


def _draw_u_on(
    ax: Axes,
    stages: Sequence[Stage],
    pairs: Sequence[tuple[int, int]],
    notes: Sequence[str] = (),
    tick_labels: Sequence[str] | None = None,
    xlabel: str = "stage, in the order forward() runs them (under each box: C x H x W)",
) -> None:
    """Draw stages as boxes along a U: x = order of execution, y = resolution level.

    Box height grows with the spatial size, width with the channel count; dashed arcs are the
    skip connections.
    """
    n = len(stages)
    max_hw = max(s.out_shape[-1] for s in stages)
    max_ch = max(s.out_shape[0] for s in stages)
    levels = max(s.level for s in stages) + 1
    xs = np.arange(n) * 1.0
    ys = [-LEVEL_STEP * s.level for s in stages]
    ax.plot(xs, ys, color="#bbb", lw=1, zorder=0)  # the main path
    for x, y, s in zip(xs, ys, stages, strict=True):
        h = _box_height(s, max_hw)
        w = 0.18 + 0.62 * np.sqrt(s.out_shape[0] / max_ch)
        colour = PART_COLOURS[s.part]
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, color=colour, alpha=0.85, lw=0))
        ax.text(
            x,
            y - h / 2 - 0.07,
            _shape_label(s.out_shape),
            ha="center",
            va="top",
            fontsize=LABEL_SIZE,
            rotation=90,
        )
    for a, b in pairs:  # the skips, arched above the boxes (a quadratic Bezier curve)
        y = ys[a] + 0.62
        control = ((xs[a] + xs[b]) / 2, y + 2 * _skip_height(b - a))  # the peak: half-way up
        path = Path([(xs[a], y), control, (xs[b], y)], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
        ax.add_patch(
            FancyArrowPatch(
                path=path, arrowstyle="-|>", mutation_scale=9, ls="--", color="#555", lw=1
            )
        )
    for part, label in (
        ("down", "downsampling stack"),
        ("mid", "bottleneck"),
        ("up", "upsampling stack"),
        ("in", "input / output"),
    ):
        ax.plot([], [], "s", color=PART_COLOURS[part], label=label, ms=8)
    ax.plot([], [], ls="--", color="#555", label="skip connection")
    ax.legend(loc="lower right", frameon=False, fontsize=LABEL_SIZE, ncol=2, borderaxespad=0.2)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(*_u_limits(stages, pairs))
    # Stage and level names as plain texts, not tick labels: 30-odd tick objects took about
    # 100 ms per figure on a 2-core CPU (measured), and the configuration widget redraws often.
    ax.set_xticks([])
    names = tick_labels if tick_labels is not None else [s.name for s in stages]
    for x, name in zip(xs, names, strict=True):
        ax.text(
            x,
            0,
            name + " ",
            transform=ax.get_xaxis_transform(),  # x in data, y in axes coordinates
            rotation=60,
            rotation_mode="anchor",
            ha="right",
            va="center",
            fontsize=LABEL_SIZE,
        )
    ax.xaxis.labelpad = 6 + 3.9 * max(len(name) for name in names)  # points: below the names
    ax.set_yticks([])
    for lv in range(levels):
        ax.text(
            0,
            -LEVEL_STEP * lv,
            f"level {lv}  ",
            transform=ax.get_yaxis_transform(),  # x in axes, y in data coordinates
            ha="right",
            va="center",
            fontsize=LABEL_SIZE + 1,
        )
    ax.yaxis.labelpad = 42  # points: left of the level names
    ax.set_ylabel("resolution level\n(down = smaller)")
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    if notes:
        ax.text(0.01, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=LABEL_SIZE + 0.5)


def _draw_u(
    stages: Sequence[Stage],
    pairs: Sequence[tuple[int, int]],
    title: str,
    notes: Sequence[str] = (),
    tick_labels: Sequence[str] | None = None,
    xlabel: str = "stage, in the order forward() runs them (under each box: C x H x W)",
) -> Figure:
    """A figure with one U diagram (:func:`_draw_u_on`), :data:`FIGURE_WIDTH` wide."""
    height = _u_height(stages, pairs) + U_MARGINS + 0.2 * xlabel.count("\n")
    fig = LessonFigure(figsize=(FIGURE_WIDTH, height), layout="constrained")
    ax = fig.subplots()
    _draw_u_on(ax, stages, pairs, notes, tick_labels, xlabel)
    ax.set_title(title)
    return fig


def _unet_notes(config: UNetConfig, stages: Sequence[Stage], total: int) -> list[str]:
    first, last = stages[0].in_shape, stages[-1].out_shape
    return [
        f"input {_shape_label(first)} -> output {_shape_label(last)} (padded convs)",
        f"time embedding ({config.time_embed_dim} numbers) enters every res block",
        f"{total:,} parameters",
    ]


def draw_unet_diagram(model: UNet, image_size: int | None = None) -> Figure:
    """The library U-Net's U shape, traced from the model itself with forward hooks."""
    stages = trace_unet(model, image_size)
    notes = _unet_notes(model.config, stages, count_parameters(model))
    return _draw_u(stages, skip_pairs(stages), "The diffusion U-Net in diffusion_edu", notes)


# Short names for the 2015 stages under the diagram (the stage table keeps the long ones).
_SHORT_2015_NAMES = {
    "conv3x3+ReLU": "conv",
    "maxpool 2x2": "pool",
    "up 2x + conv2x2": "up-conv",
    "crop + concat": "concat",
    "conv1x1 (2 classes)": "1x1 conv",
}


def _short_2015_name(name: str) -> str:
    for long, short in _SHORT_2015_NAMES.items():
        if name.startswith(long):
            return short + name[len(long) :]
    return name


def draw_unet2015_diagram(input_size: int = 572, depth: int = 4) -> Figure:
    """The 2015 segmentation U-Net's U shape, from :func:`unet2015_stages`."""
    stages = unet2015_stages(input_size, depth)
    out = stages[-1].out_shape[-1]
    notes = [
        f"input {input_size}x{input_size} -> output {out}x{out}: unpadded convs shrink the image",
        "skips are cropped to fit; no time input",
        f"{sum(s.params for s in stages):,} parameters",
    ]
    xlabel = (
        "stage, from input to output (under each box: C x H x W)\n"
        "conv: unpadded 3x3 conv + ReLU;  pool: 2x2 max pool;  up-conv: 2x upsample + 2x2 conv;\n"
        "concat: crop the skip and concatenate"
    )
    return _draw_u(
        stages,
        unet2015_skip_pairs(stages),
        "The 2015 U-Net (Ronneberger et al.)",
        notes,
        [_short_2015_name(s.name) for s in stages],
        xlabel,
    )


# ----------------------------------------------------------------------------- parameters
def parameter_breakdown(model: UNet) -> dict[str, int]:
    """Trainable parameters per part of the U-Net; the values add up to ``count_parameters``."""
    parts: dict[str, list[nn.Module | None]] = {
        "time embedding MLP": [model.time_mlp],
        "label embedding": [model.label_emb],
        "input conv": [model.conv_in],
        "downsampling stack": [model.down_blocks, model.downsamples],
        "bottleneck (res + attention)": [model.mid1, model.mid_attn, model.mid2],
        "upsampling stack": [model.up_blocks, model.upsamples],
        "output (norm + conv)": [model.norm_out, model.conv_out],
    }
    return {
        name: sum(count_parameters(m) for m in modules if m is not None)
        for name, modules in parts.items()
    }


def _part_colour(name: str) -> str:
    if "down" in name:
        return PART_COLOURS["down"]
    if "up" in name:
        return PART_COLOURS["up"]
    if "bottleneck" in name:
        return PART_COLOURS["mid"]
    return PART_COLOURS["in"]


def _parameter_bars(ax: Axes, counts: dict[str, int]) -> None:
    """Horizontal bars of ``counts`` (top to bottom in the dict's order), each labelled."""
    total = sum(counts.values())
    names = list(counts)[::-1]
    values = [counts[k] for k in names]
    ax.barh(range(len(names)), values, color=[_part_colour(k) for k in names])
    for y, (name, v) in enumerate(zip(names, values, strict=True)):
        ax.text(v, y, f" {v:,} ({v / total:.0%})", va="center", fontsize=LABEL_SIZE)
        # the part's name left of the axis (a plain text: cheaper to draw than a tick label)
        name_position = ax.get_yaxis_transform()  # x in axes, y in data coordinates
        ax.text(
            0, y, name + "  ", transform=name_position, ha="right", va="center", fontsize=LABEL_SIZE
        )
    ax.set_xlim(0, max(values) * 1.35)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xticks([])  # every bar carries its count
    ax.set_yticks([])
    ax.set_xlabel("trainable parameters (bar length)")
    ax.spines[["top", "right"]].set_visible(False)


def plot_parameter_breakdown(model: UNet) -> Figure:
    """Horizontal bar chart of :func:`parameter_breakdown`."""
    counts = parameter_breakdown(model)
    fig = LessonFigure(figsize=(7.5, 3.2), layout="constrained")
    ax = fig.subplots()
    _parameter_bars(ax, counts)
    ax.set_title(f"Where the {sum(counts.values()):,} parameters are")
    return fig


# ----------------------------------------------------------------------------- configuration widget
def _explorer_config(
    base_channels: int, levels: int, num_res_blocks: int, attention: bool, image_size: int
) -> UNetConfig:
    """The widget's :class:`UNetConfig`: ``levels`` levels with ``channel_mults = (1, 2, ..., 2)``.

    (The library's default, ``(1, 2, 2)``, is ``levels = 3``.) Raises ``ValueError`` for an
    invalid combination, with UNetConfig's own message.
    """
    if levels < 1:
        raise ValueError(f"invalid UNetConfig: levels must be >= 1, got {levels}.")
    return UNetConfig(
        image_size=image_size,
        base_channels=base_channels,
        channel_mults=(1,) + (2,) * (levels - 1),
        num_res_blocks=num_res_blocks,
        attention=attention,
    )


@functools.lru_cache(maxsize=256)
def _traced_config(config: UNetConfig) -> tuple[tuple[Stage, ...], tuple[tuple[str, int], ...]]:
    """:func:`trace_unet` and :func:`parameter_breakdown` of ``UNet(config)``, kept per config.

    The model is built on PyTorch's ``"meta"`` device: the real :class:`UNet`, every module and
    parameter shape, but no memory is allocated and no weights are drawn, so even a
    39-million-parameter configuration is built and traced in a fraction of a second (the
    forward pass computes shapes only). Parameter counts are shapes too, so they are exact.
    """
    with torch.device("meta"):
        model = UNet(config)
    return tuple(trace_unet(model)), tuple(parameter_breakdown(model).items())


def _message_figure(title: str, message: str) -> Figure:
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 2.0), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title(title, color=RED)
    ax.text(0.5, 0.5, textwrap.fill(message, 95), ha="center", va="center", fontsize=10)
    return fig


def plot_unet_config(
    base_channels: int = 32,
    levels: int = 3,
    num_res_blocks: int = 2,
    attention: bool = True,
    image_size: int = 28,
) -> Figure:
    """The traced U shape of ``UNet`` for a configuration, and its parameters per part.

    ``levels`` sets ``channel_mults = (1, 2, ..., 2)`` (``levels`` entries: the first level
    has ``base_channels`` channels, every lower level ``2 * base_channels``). The model is the real
    :class:`UNet`, traced with :func:`trace_unet`; the counts are :func:`parameter_breakdown`
    and add up to ``count_parameters``. Traces are cached per configuration. An invalid
    combination shows UNetConfig's message instead of a diagram.
    """
    try:
        config = _explorer_config(base_channels, levels, num_res_blocks, attention, image_size)
    except ValueError as error:
        chosen = (
            f"base_channels={base_channels}, levels={levels}, "
            f"num_res_blocks={num_res_blocks}, attention={attention}"
        )
        return _message_figure("This configuration is not valid", f"{chosen}: {error}")
    stages, parts = _traced_config(config)
    counts = dict(parts)
    total = sum(counts.values())
    pairs = skip_pairs(stages)
    # Fixed margins (inches) instead of a layout engine, which would draw the figure twice (once
    # to measure every text): a quicker redraw. They fit the longest stage name ("mid attention").
    left, right, title, names, bars_title, bars, bars_names = 0.95, 0.12, 0.5, 1.25, 0.3, 1.8, 0.35
    diagram = _u_height(stages, pairs)
    width, height = FIGURE_WIDTH, title + diagram + names + bars_title + bars + bars_names
    bars_left = 1.75  # room for "bottleneck (res + attention)"

    def place(x0: float, y0: float, w: float, h: float) -> tuple[float, float, float, float]:
        return x0 / width, y0 / height, w / width, h / height  # inches -> figure fractions

    fig = LessonFigure(figsize=(width, height))
    diagram_bottom = bars_names + bars + bars_title + names
    ax_u = fig.add_axes(place(left, diagram_bottom, width - left - right, diagram))
    ax_p = fig.add_axes(place(bars_left, bars_names, width - bars_left - right, bars))
    _draw_u_on(ax_u, stages, pairs, _unet_notes(config, stages, total))
    ax_u.set_title(
        f"UNet(UNetConfig(base_channels={base_channels}, channel_mults={config.channel_mults}, "
        f"num_res_blocks={num_res_blocks}, attention={attention}))\n{total:,} parameters",
        fontsize=11,
        y=1.0,  # a fixed position: matplotlib need not measure the axes to place the title
    )
    _parameter_bars(ax_p, counts)
    ax_p.set_title(f"Where the {total:,} parameters are", fontsize=11, y=1.0)
    return fig


def unet_config_widget(image_size: int = 28) -> LivePlot:
    """Sliders for the U-Net's configuration, over :func:`plot_unet_config`.

    ``base_channels`` (8..128 in steps of 8: GroupNorm's 8 groups must divide every level's
    channels), ``levels`` (1..4), ``num_res_blocks`` (1..3) and an ``attention`` check box; the
    defaults are :class:`UNetConfig`'s. The sliders redraw when released
    (``continuous_update=False``): a configuration seen for the first time is built and traced.
    """
    default = UNetConfig(image_size=image_size)
    style = {"description_width": "initial"}

    def slider(name: str, value: int, low: int, high: int, step: int = 1) -> widgets.IntSlider:
        return widgets.IntSlider(
            value=value,
            min=low,
            max=high,
            step=step,
            description=name,
            continuous_update=False,
            style=style,
            layout=widgets.Layout(width="250px"),
        )

    controls = {
        "base_channels": slider("base_channels", default.base_channels, 8, 128, 8),
        "levels": slider("levels", len(default.channel_mults), 1, 4),
        "num_res_blocks": slider("num_res_blocks", default.num_res_blocks, 1, 3),
        "attention": widgets.Checkbox(
            value=default.attention,
            description="attention",
            indent=False,
            layout=widgets.Layout(width="110px"),
        ),
    }

    def draw(base_channels: int, levels: int, num_res_blocks: int, attention: bool) -> Figure:
        return plot_unet_config(base_channels, levels, num_res_blocks, attention, image_size)

    return LivePlot(draw, controls)


# ----------------------------------------------------------------------------- time embedding
def plot_time_embedding(dim: int = 32, T: int = 1000, marks: Sequence[int] | None = None) -> Figure:
    """The sinusoidal embedding of t = 1..T (heat map) and the cosine similarity of embeddings.

    Top: emb(t) for every t (x axis) and dimension (y axis): fast-wiggling rows tell nearby t
    apart, slow rows tell early from late. Bottom left: cos-similarity between emb(t) for every
    pair; a bright band along the diagonal means nearby t get similar vectors. Bottom right:
    for the steps in ``marks``, how similar the embedding of each t is to them (the legend sits
    outside the plot, clear of the peaks).
    """
    marks = marks or (T // 10, T // 2, 9 * T // 10)
    t = torch.arange(1, T + 1)
    emb = sinusoidal_embedding(t, dim)  # (T, dim)
    unit = emb / emb.norm(dim=1, keepdim=True)
    sim = unit @ unit.T  # (T, T)
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 6.6), layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)  # keep the colour bar clear of the next plot
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.25])
    ax_e = top.subplots()
    ax_s, ax_l = bottom.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.35]})
    im = ax_e.imshow(
        emb.T.numpy(),
        aspect="auto",
        cmap="RdBu_r",
        vmin=-1,
        vmax=1,
        extent=(0.5, T + 0.5, dim - 0.5, -0.5),
        interpolation="nearest",
    )
    top.colorbar(im, ax=ax_e, label="value", pad=0.01)
    ax_e.set(
        xlabel="timestep t",
        ylabel="embedding dimension",
        title=f"Sinusoidal embedding of t ({dim} numbers: sines, then cosines)",
    )
    im2 = ax_s.imshow(
        sim.numpy(), cmap="magma", vmin=-0.2, vmax=1, extent=(0.5, T + 0.5, T + 0.5, 0.5)
    )
    bottom.colorbar(im2, ax=ax_s, label="cosine similarity", shrink=0.85)
    ax_s.set(xlabel="t", ylabel="t'", title="Similarity of emb(t) and emb(t')")
    for m in marks:
        ax_l.plot(t.numpy(), sim[m - 1].numpy(), lw=1.2, label=f"t' = {m}")
    ax_l.set(xlabel="t", ylabel="cosine similarity to emb(t')", title="Nearby t look alike")
    ax_l.grid(alpha=0.25)
    ax_l.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=LABEL_SIZE)
    return fig


# ----------------------------------------------------------------------------- skip experiment
def remove_skips(model: UNet) -> list[RemovableHandle]:
    """Cut every skip connection of ``model`` by zeroing it, with forward pre-hooks.

    Each block of the upsampling stack receives ``cat([h, skip])`` (the skip is the last
    ``out_channels`` channels); the hook replaces the skip part with zeros. The weights and
    parameter count are unchanged, so a comparison with and without skips is fair. Returns the
    hook handles: ``for h in handles: h.remove()`` restores the skips.
    """
    handles = []
    for blocks in model.up_blocks:
        for block in blocks:
            skip_ch = block.conv1.out_channels  # the skip has the level's channel count

            def pre_hook(module: nn.Module, args: tuple, skip_ch: int = skip_ch) -> tuple:
                x, *rest = args
                x = torch.cat([x[:, :-skip_ch], torch.zeros_like(x[:, -skip_ch:])], dim=1)
                return (x, *rest)

            handles.append(block.register_forward_pre_hook(pre_hook))
    return handles


@dataclass(frozen=True)
class SkipExperimentResult:
    """Two identical U-Nets trained on the same batches, one with its skips cut.

    Attributes:
        losses_with, losses_without: training loss per step.
        eval_ts: the timesteps the denoising error was measured at.
        mse_with, mse_without: held-out MSE of x0_hat against x0 at each of ``eval_ts``.
        x0, x_t, x0_hat_with, x0_hat_without: a few example images at ``example_t``.
        example_t: the timestep of the examples.
        seconds: wall-clock training time of both models together.
    """

    losses_with: list[float]
    losses_without: list[float]
    eval_ts: list[int]
    mse_with: list[float]
    mse_without: list[float]
    x0: torch.Tensor
    x_t: torch.Tensor
    x0_hat_with: torch.Tensor
    x0_hat_without: torch.Tensor
    example_t: int
    seconds: float


def _tiny_config(image_size: int) -> UNetConfig:
    return UNetConfig(
        image_size=image_size,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention=False,
    )


def _denoise(
    model: nn.Module, x0: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x_t = q_sample(x0, t, schedule, noise)
    eps_hat = model(x_t, t)
    return x_t, predict_x0_from_eps(x_t, t, eps_hat, schedule).clamp(-1, 1)


def run_skip_experiment(
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int = 150,
    batch_size: int = 16,
    eval_ts: Sequence[int] = (50, 150, 300, 600),
    example_t: int = 150,
    seed: int = 0,
    config: UNetConfig | None = None,
    progress: bool = True,
) -> SkipExperimentResult:
    """Train the same tiny U-Net twice for ``steps`` steps, with and without skip connections.

    Both start from the same weights and see the same batches (DDPM Algorithm 1 with the
    library's one loop, via :func:`~diffusion_edu.toy2d.train_toy_steps`, the toy's recipe;
    the tiny U-Net runs on one thread by the library's thread policy); then both denoise the
    same held-out images, and we measure ``mean((x0_hat - x0)^2)`` at each t in ``eval_ts``.
    """
    config = config or _tiny_config(train_images.shape[-1])
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's random state is kept
        torch.manual_seed(seed)
        with_skips = UNet(config)
    without_skips = copy.deepcopy(with_skips)
    remove_skips(without_skips)
    train_cfg = toy_train_config(steps=steps, batch_size=batch_size, lr=2e-3, seed=seed)
    start = time.perf_counter()
    runs = []
    for model, desc in ((with_skips, "U-Net with skips"), (without_skips, "U-Net without skips")):
        steps_run = train_toy_steps(
            model, train_images, schedule, train_cfg, progress=progress, desc=desc
        )
        runs.append([record.loss for record in steps_run])
    losses_with, losses_without = runs
    seconds = time.perf_counter() - start
    g = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(test_images.shape, generator=g)
    mse_with, mse_without = [], []
    with torch.no_grad():
        for t in eval_ts:
            for model, out in ((with_skips, mse_with), (without_skips, mse_without)):
                _, x0_hat = _denoise(model, test_images, t, schedule, noise)
                out.append(torch.mean((x0_hat - test_images) ** 2).item())
        examples = torch.linspace(0, test_images.shape[0] - 1, 8).long()  # spread over the set
        x0 = test_images[examples]
        x_t, hat_with = _denoise(with_skips, x0, example_t, schedule, noise[examples])
        _, hat_without = _denoise(without_skips, x0, example_t, schedule, noise[examples])
    return SkipExperimentResult(
        losses_with,
        losses_without,
        list(eval_ts),
        mse_with,
        mse_without,
        x0,
        x_t,
        hat_with,
        hat_without,
        example_t,
        seconds,
    )


def plot_skip_experiment(result: SkipExperimentResult) -> Figure:
    """Left: denoising error vs t with and without skips. Right: example x0_hat images."""
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 3.9), layout="constrained")
    ax_mse, ax_img = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.45]})
    ax_mse.plot(
        result.eval_ts, result.mse_with, "o-", color=PART_COLOURS["down"], label="with skips"
    )
    ax_mse.plot(
        result.eval_ts,
        result.mse_without,
        "s--",
        color=PART_COLOURS["up"],
        label="skips cut (zeroed)",
    )
    ax_mse.set(
        xlabel="timestep t of the noisy input",
        ylabel=r"MSE of $\hat x_0$ vs $x_0$",
        title="Denoising error, held-out digits\n(lower is better)",
    )
    ax_mse.grid(alpha=0.25)
    ax_mse.legend(frameon=False, fontsize=LABEL_SIZE + 1)
    rows = torch.cat(
        [result.x0, result.x_t.clamp(-1, 1), result.x0_hat_with, result.x0_hat_without]
    )
    ax_img.imshow(make_grid(rows, nrow=result.x0.shape[0]), cmap="gray", vmin=0, vmax=1)
    ax_img.set_yticks([15 + 30 * i for i in range(4)])
    ax_img.set_yticklabels(
        ["x_0", f"x_t (t={result.example_t})", "x0_hat, skips", "x0_hat, no skips"]
    )
    ax_img.set_xticks([])
    ax_img.set_xlabel(f"{result.x0.shape[0]} held-out digits")
    ax_img.set_title("Same noisy digits, denoised in one step\nby each model")
    return fig


def stage_table(stages: Sequence[Stage]) -> str:
    """A plain-text table of the traced stages (name, part, in -> out shape, parameters)."""
    lines = [f"{'stage':<22}{'part':<6}{'input':>14}  ->{'output':>14}{'params':>10}"]
    for s in stages:
        lines.append(
            f"{s.name:<22}{s.part:<6}{_shape_label(s.in_shape):>14}  ->"
            f"{_shape_label(s.out_shape):>14}{s.params:>10,}"
        )
    return "\n".join(lines)
