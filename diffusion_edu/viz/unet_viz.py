"""Lesson 06: anatomy of the U-Net, traced from the real model.

* :func:`trace_unet`: run the library's :class:`~diffusion_edu.UNet` once with forward hooks
  and record the shape after every stage (nothing in ``unet.py`` is changed). The stages are
  :class:`~diffusion_edu.models.unet2015.Stage` records, like those of the original
  segmentation U-Net (Ronneberger et al. 2015) whose shape arithmetic (unpadded 3x3
  convolutions, 572 -> 388) lives in :mod:`diffusion_edu.models.unet2015`.
* :func:`draw_unet_diagram`, :func:`draw_unet2015_diagram`: the U shape, boxes labelled by shape.
* :func:`parameter_breakdown`, :func:`plot_parameter_breakdown`: where the weights are.
* :func:`plot_time_embedding`: the sinusoidal time embedding as a heat map, and how similar
  the embeddings of nearby t are.
* :func:`remove_skips`, :func:`run_skip_experiment`: what the skip connections buy, measured.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
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

__all__ = [
    "trace_unet",
    "stage_table",
    "draw_unet_diagram",
    "draw_unet2015_diagram",
    "parameter_breakdown",
    "plot_parameter_breakdown",
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
def _shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _draw_u(
    stages: Sequence[Stage],
    pairs: Sequence[tuple[int, int]],
    title: str,
    notes: Sequence[str] = (),
) -> Figure:
    """Draw stages as boxes along a U: x = order of execution, y = resolution level.

    Box height grows with the spatial size, width with the channel count; dashed arcs are the
    skip connections.
    """
    n = len(stages)
    max_hw = max(s.out_shape[-1] for s in stages)
    max_ch = max(s.out_shape[0] for s in stages)
    levels = max(s.level for s in stages) + 1
    fig = LessonFigure(figsize=(max(9.0, 0.62 * n), 1.5 * levels + 2.6), layout="constrained")
    ax = fig.subplots()
    xs = np.arange(n) * 1.0
    ys = []
    for x, s in zip(xs, stages, strict=True):
        y = -1.6 * s.level
        ys.append(y)
        h = 0.25 + 0.85 * np.sqrt(s.out_shape[-1] / max_hw)
        w = 0.18 + 0.62 * np.sqrt(s.out_shape[0] / max_ch)
        colour = PART_COLOURS[s.part]
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, color=colour, alpha=0.85, lw=0))
        ax.text(
            x,
            y - h / 2 - 0.07,
            _shape_label(s.out_shape),
            ha="center",
            va="top",
            fontsize=7,
            rotation=90,
        )
    for i in range(n - 1):  # the main path
        ax.annotate(
            "",
            (xs[i + 1], ys[i + 1]),
            (xs[i], ys[i]),
            arrowprops={"arrowstyle": "-", "color": "#bbb", "lw": 1},
        )
    for k, (a, b) in enumerate(pairs):  # the skips, arched above the boxes
        y = ys[a] + 0.65
        arrow = FancyArrowPatch(
            (xs[a], y),
            (xs[b], y),
            connectionstyle=f"arc3,rad={-0.12 - 0.03 * (k % 3)}",
            arrowstyle="-|>",
            mutation_scale=9,
            ls="--",
            color="#555",
            lw=1,
        )
        ax.add_patch(arrow)
    for part, label in (
        ("down", "downsampling stack"),
        ("mid", "bottleneck"),
        ("up", "upsampling stack"),
        ("in", "input / output"),
    ):
        ax.plot([], [], "s", color=PART_COLOURS[part], label=label, ms=9)
    ax.plot([], [], ls="--", color="#555", label="skip connection")
    ax.legend(loc="lower right", frameon=False, fontsize=8, ncol=1)
    ax.set_xlim(-1, n)
    ax.set_ylim(-1.6 * (levels - 1) - 2.4, 1.9)
    ax.set_xticks(xs)
    ax.set_xticklabels([s.name for s in stages], rotation=60, ha="right", fontsize=7)
    ax.set_yticks([-1.6 * lv for lv in range(levels)])
    ax.set_yticklabels([f"level {lv}" for lv in range(levels)])
    ax.set_ylabel("resolution level (down = smaller)")
    ax.set_xlabel("stage, in the order forward() runs them (labels under boxes: C x H x W)")
    ax.spines[["top", "right"]].set_visible(False)
    for i, note in enumerate(notes):
        ax.text(0.01, 0.02 + 0.06 * (len(notes) - 1 - i), note, transform=ax.transAxes, fontsize=9)
    ax.set_title(title)
    return fig


def draw_unet_diagram(model: UNet, image_size: int | None = None) -> Figure:
    """The library U-Net's U shape, traced from the model itself with forward hooks."""
    stages = trace_unet(model, image_size)
    first, last = stages[0].in_shape, stages[-1].out_shape
    notes = [
        f"input {_shape_label(first)} -> output {_shape_label(last)}: same shape (padded convs)",
        f"time embedding ({model.config.time_embed_dim} numbers) enters every res block",
        f"{count_parameters(model):,} parameters",
    ]
    return _draw_u(stages, skip_pairs(stages), "The diffusion U-Net in diffusion_edu", notes)


def draw_unet2015_diagram(input_size: int = 572, depth: int = 4) -> Figure:
    """The 2015 segmentation U-Net's U shape, from :func:`unet2015_stages`."""
    stages = unet2015_stages(input_size, depth)
    notes = [
        f"input {input_size}x{input_size} -> output "
        f"{stages[-1].out_shape[-1]}x{stages[-1].out_shape[-1]}: unpadded convs shrink the image",
        "skips are cropped to fit; no time input",
    ]
    return _draw_u(
        stages, unet2015_skip_pairs(stages), "The 2015 U-Net (Ronneberger et al.)", notes
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


def plot_parameter_breakdown(model: UNet) -> Figure:
    """Horizontal bar chart of :func:`parameter_breakdown`."""
    counts = parameter_breakdown(model)
    total = sum(counts.values())
    fig = LessonFigure(figsize=(7.5, 3.2), layout="constrained")
    ax = fig.subplots()
    names = list(counts)[::-1]
    values = [counts[k] for k in names]
    colours = [
        PART_COLOURS["down"]
        if "down" in k
        else PART_COLOURS["up"]
        if "up" in k
        else PART_COLOURS["mid"]
        if "bottleneck" in k
        else PART_COLOURS["in"]
        for k in names
    ]
    ax.barh(names, values, color=colours)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,} ({v / total:.0%})", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.35)
    ax.set_xlabel("trainable parameters")
    ax.set_title(f"Where the {total:,} parameters are")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


# ----------------------------------------------------------------------------- time embedding
def plot_time_embedding(dim: int = 32, T: int = 1000, marks: Sequence[int] | None = None) -> Figure:
    """The sinusoidal embedding of t = 1..T (heat map) and the cosine similarity of embeddings.

    Left: emb(t) for every t (x axis) and dimension (y axis): fast-wiggling rows tell nearby t
    apart, slow rows tell early from late. Right: cos-similarity between emb(t) for every pair;
    a bright band along the diagonal means nearby t get similar vectors. Plus, for the steps
    in ``marks``, how similar the embedding of each t is to them.
    """
    marks = marks or (T // 10, T // 2, 9 * T // 10)
    t = torch.arange(1, T + 1)
    emb = sinusoidal_embedding(t, dim)  # (T, dim)
    unit = emb / emb.norm(dim=1, keepdim=True)
    sim = unit @ unit.T  # (T, T)
    fig = LessonFigure(figsize=(14, 4), layout="constrained")
    ax_e, ax_s, ax_l = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.5, 1, 1.2]})
    im = ax_e.imshow(
        emb.T.numpy(),
        aspect="auto",
        cmap="RdBu_r",
        vmin=-1,
        vmax=1,
        extent=(0.5, T + 0.5, dim - 0.5, -0.5),
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax_e, label="value")
    ax_e.set(
        xlabel="timestep t",
        ylabel="embedding dimension",
        title=f"sinusoidal embedding of t ({dim} numbers)",
    )
    im2 = ax_s.imshow(
        sim.numpy(), cmap="magma", vmin=-0.2, vmax=1, extent=(0.5, T + 0.5, T + 0.5, 0.5)
    )
    fig.colorbar(im2, ax=ax_s, label="cosine similarity")
    ax_s.set(xlabel="t", ylabel="t'", title="similarity of emb(t) and emb(t')")
    for m in marks:
        ax_l.plot(t.numpy(), sim[m - 1].numpy(), lw=1.5, label=f"t' = {m}")
    ax_l.set(xlabel="t", ylabel="cos similarity to emb(t')", title="nearby t look alike")
    ax_l.grid(alpha=0.25)
    ax_l.legend(frameon=False, fontsize=8)
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
    losses_with = [
        r.loss for r in train_toy_steps(with_skips, train_images, schedule, train_cfg, progress)
    ]
    losses_without = [
        r.loss for r in train_toy_steps(without_skips, train_images, schedule, train_cfg, progress)
    ]
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
    fig = LessonFigure(figsize=(13, 4.2), layout="constrained")
    ax_mse, ax_img = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5]})
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
        title="Denoising error on held-out digits (lower is better)",
    )
    ax_mse.grid(alpha=0.25)
    ax_mse.legend(frameon=False)
    rows = torch.cat(
        [result.x0, result.x_t.clamp(-1, 1), result.x0_hat_with, result.x0_hat_without]
    )
    ax_img.imshow(make_grid(rows, nrow=result.x0.shape[0]), cmap="gray", vmin=0, vmax=1)
    ax_img.set_yticks([15 + 30 * i for i in range(4)])
    ax_img.set_yticklabels(
        ["x_0", f"x_t (t={result.example_t})", "x0_hat, skips", "x0_hat, no skips"]
    )
    ax_img.set_xticks([])
    ax_img.set_title("Same noisy digits, denoised in one step by each model")
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
