"""Lesson 10: the Diffusion Transformer (Peebles & Xie 2023, arXiv 2212.09748), in pictures.

* :func:`plot_patches`: a digit cut into p x p patches, numbered in reading order, and the
  sequence of tokens the Transformer reads (Sec. 3.2, "Patchify", Fig. 4).
* :func:`query_attention`, :func:`plot_attention_maps`: where one patch looks, in a trained
  DiT, at a few noise levels (:meth:`~diffusion_edu.models.DiT.attention_maps`).
* :class:`DiTCosts`, :func:`dit_costs`, :func:`plot_dit_costs`, :func:`dit_cost_widget`: tokens,
  parameters, forward GFLOPs and the attention's share of them, for a patch size and a model
  size (Sec. 5, "Scaling the patch size": smaller patches, more tokens, more GFLOPs).
* :func:`load_scaling_record`, :func:`plot_scaling`: quality against training compute, from
  ``scripts/measure_dit_scaling.py`` (Sec. 5, Fig. 9: FID against training GFLOPs).
* :func:`plot_adaln_zero`: how the U-Net's residual block and DiT's block read the time and
  label (Sec. 3.2, "DiT block design", Fig. 3); :func:`adaln_gates`, :func:`plot_adaln_gates`:
  how open a trained DiT's gates are at each noise level.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)
from torch import nn

from diffusion_edu.data import require_data_file
from diffusion_edu.forward import q_sample
from diffusion_edu.latent import encode_latents
from diffusion_edu.models.autoencoder import LatentDiffusion
from diffusion_edu.models.common import forward_flops, unwrap
from diffusion_edu.models.dit import DiT, DiTConfig, patchify
from diffusion_edu.models.unet import UNet, count_parameters
from diffusion_edu.recipes import DIT_SIZES, MODEL_SIZES
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.plots import AMBER, FIGURE_WIDTH, RED, SLATE, TEAL, LessonFigure, to_display
from diffusion_edu.viz.widgets import LivePlot

__all__ = [
    "plot_patches",
    "query_attention",
    "plot_attention_maps",
    "DiTCosts",
    "dit_costs",
    "plot_dit_costs",
    "dit_cost_widget",
    "SCALING_RESULTS_FILE",
    "load_scaling_record",
    "plot_scaling",
    "plot_adaln_zero",
    "adaln_gates",
    "plot_adaln_gates",
]

#: Patch sizes the lesson's widget offers: divisors of 28 (p = 28 would leave one token).
WIDGET_PATCH_SIZES = (1, 2, 4, 7, 14)
MAX_NUMBERED_PATCHES = 49  # more patches than this and their numbers would not be legible
SCALING_RESULTS_FILE = "results/dit_scaling.json"
_REMAKE_SCALING = "measure it again with scripts/measure_dit_scaling.py (--quick: one tiny point)"


def _check_patch_size(patch_size: int, image_size: int) -> None:
    if patch_size < 1 or image_size % patch_size:
        works = ", ".join(str(d) for d in range(1, image_size + 1) if image_size % d == 0)
        raise ValueError(
            f"patch_size={patch_size} must divide the image size {image_size} (the patches tile "
            f"the image); choose one of {works}."
        )


def _as_image(image: torch.Tensor) -> torch.Tensor:
    """A grey-scale image ``(1, H, W)`` or ``(1, 1, H, W)`` as ``(1, 1, H, W)`` float."""
    x = image.detach().float().cpu()
    if x.ndim == 3:
        x = x[None]  # (1, 1, H, W)
    if x.ndim != 4 or x.shape[:2] != (1, 1) or x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"expected one square grey-scale image (1, H, W) or (1, 1, H, W) in [-1, 1], got "
            f"{tuple(image.shape)}; pick one digit, e.g. images[0]."
        )
    return x


def _draw_grid(ax: Any, grid: int, patch_size: int, colour: str = AMBER) -> None:
    """The patch boundaries on an image axes whose pixels span [-0.5, H - 0.5]."""
    for k in range(1, grid):
        ax.axhline(k * patch_size - 0.5, color=colour, lw=0.8 if grid <= 14 else 0.3)
        ax.axvline(k * patch_size - 0.5, color=colour, lw=0.8 if grid <= 14 else 0.3)


def _label_patch_axes(ax: Any, grid: int, patch_size: int) -> None:
    """Axis labels for an image axes cut into patches; ticks at the patch centres if few."""
    centres = [k * patch_size + patch_size / 2 - 0.5 for k in range(grid)]
    shown = grid <= 14
    ax.set_xticks(centres if shown else [], [str(k) for k in range(grid)] if shown else [])
    ax.set_yticks(centres if shown else [], [str(k) for k in range(grid)] if shown else [])
    ax.tick_params(length=0, labelsize=8)
    ax.set_xlabel("patch column")
    ax.set_ylabel("patch row")


def _index_ticks(count: int, most: int = 8) -> list[int]:
    """At most ``most`` whole-number ticks from 0 to ``count - 1``, ends included."""
    return sorted({round(v) for v in np.linspace(0, count - 1, min(count, most))})


# ----------------------------------------------------------------------------- patches
def plot_patches(image: torch.Tensor, patch_size: int) -> Figure:
    """A digit cut into ``patch_size`` x ``patch_size`` patches, and the token sequence.

    Left: the image with the patch grid, each patch numbered in reading order (row by row) when
    there are at most 49. Right: the tokens as a matrix, one row per patch, holding its p * p
    pixel values row by row: exactly :func:`~diffusion_edu.models.dit.patchify`'s output
    ``(N, p * p)`` with N = (H / p)^2 (Peebles & Xie 2023, Sec. 3.2 and Fig. 4: "T = (I/p)^2").
    Each row then goes through the same linear layer to become a token of width D.
    """
    x = _as_image(image)  # (1, 1, H, W)
    size = x.shape[-1]
    _check_patch_size(patch_size, size)
    p, grid = patch_size, size // patch_size
    tokens = patchify(x, p)[0]  # (N, p*p)
    n = tokens.shape[0]
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 4.2), layout="constrained")
    ax_img, ax_tok = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    ax_img.imshow(to_display(x[0, 0]), cmap="gray", vmin=0, vmax=1)
    _draw_grid(ax_img, grid, p)
    if n <= MAX_NUMBERED_PATCHES:
        for index in range(n):
            row, col = divmod(index, grid)
            ax_img.text(
                col * p + p / 2 - 0.5,
                row * p + p / 2 - 0.5,
                str(index),
                ha="center",
                va="center",
                fontsize=8 if n > 16 else 10,
                color=RED,
                fontweight="bold",
                path_effects=[patheffects.withStroke(linewidth=2, foreground="white")],
            )
    _label_patch_axes(ax_img, grid, p)
    numbered = "numbered row by row" if n <= MAX_NUMBERED_PATCHES else "too many to number"
    ax_img.set_title(f"{grid} x {grid} patches of {p} x {p} pixels\n({numbered})", fontsize=10)
    ax_tok.imshow(
        to_display(tokens), cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest"
    )
    ax_tok.set_xticks(_index_ticks(p * p))
    ax_tok.set_yticks(_index_ticks(n))
    ax_tok.set_xlabel(f"pixel of the patch, row by row (p * p = {p * p} values)")
    ax_tok.set_ylabel("token n (patch number)")
    tokens_word = "token" if n == 1 else "tokens"
    ax_tok.set_title(f"The sequence: {n} {tokens_word} x {p * p} values", fontsize=10)
    fig.suptitle(
        f"Patchify with p = {p}: N = ({size}/{p})^2 = {n} {tokens_word} of {p}*{p} = {p * p} values"
    )
    return fig


# ----------------------------------------------------------------------------- attention
def _check_dit(model: nn.Module, caller: str) -> DiT:
    """The DiT of ``model``: the model itself, or the denoiser of a latent model."""
    inner = unwrap(model)
    if isinstance(inner, LatentDiffusion):
        inner = unwrap(inner.denoiser)
    if not isinstance(inner, DiT):
        raise TypeError(
            f"{caller} needs a Diffusion Transformer (diffusion_edu.models.DiT), got "
            f"{type(inner).__name__}: only a DiT reads the image as patch tokens that attend to "
            "each other. Load one with load_pretrained('mnist-dit') or build DiT(DiTConfig(...))."
        )
    return inner


def query_attention(
    model: nn.Module,
    schedule: NoiseSchedule,
    image: torch.Tensor,
    label: int | None,
    timesteps: Sequence[int] = (900, 500, 100),
    query: int | None = None,
    layer: int = -1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noisy images x_t and where patch ``query`` looks at each t, averaged over heads.

    x_t = q_sample(x_0, t) with one noise image drawn from ``torch.Generator().manual_seed(seed)``
    (the same noise at every t: only its amount changes, DDPM Eq. 4). The attention weights
    are block ``layer``'s softmax(q k^T / sqrt(d)) row of token ``query`` (default: the centre
    patch), averaged over heads; each map sums to 1.

    For a latent model with a DiT denoiser (``load_pretrained("mnist-dit")``) the same happens
    to the image's scaled latents z_0 = E(x_0) * scale_factor, whose tokens are latent patches;
    the returned ``x_t`` are then the noisy latents z_t decoded to pixels (what the DiT sees,
    as a picture), and each latent patch stands for a square of ``image_size / grid`` pixels.

    Returns:
        ``x_t`` ``(len(timesteps), 1, H, W)`` and the maps ``(len(timesteps), grid, grid)``.
    """
    dit = _check_dit(model, "query_attention")
    cfg = dit.config
    latent = unwrap(model) if isinstance(unwrap(model), LatentDiffusion) else None
    x0 = _as_image(image)
    if latent is not None:
        if tuple(x0.shape[1:]) != tuple(latent.image_shape):
            raise ValueError(
                f"image must be one {latent.image_shape} picture for this latent model, got "
                f"{tuple(x0.shape)}."
            )
        with torch.no_grad():
            x0 = encode_latents(latent.autoencoder, x0) * latent.scale_factor  # (1, c, h, w)
    g = cfg.grid_size
    query = g * (g // 2) + g // 2 if query is None else query
    if not 0 <= query < cfg.num_tokens:
        raise ValueError(f"query must be a token index in 0..{cfg.num_tokens - 1}, got {query}.")
    if not -cfg.depth <= layer < cfg.depth:
        raise ValueError(f"layer must be in -{cfg.depth}..{cfg.depth - 1}, got {layer}.")
    device = next(dit.parameters()).device
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    ts = torch.as_tensor(list(timesteps), dtype=torch.long)
    k = len(ts)
    x_t = q_sample(x0.expand(k, -1, -1, -1), ts, schedule, noise.expand(k, -1, -1, -1))
    labels = None if label is None else torch.full((k,), int(label), dtype=torch.long)
    was_training = dit.training
    dit.eval()
    try:
        maps = dit.attention_maps(
            x_t.to(device), ts.to(device), None if labels is None else labels.to(device)
        )[layer]  # (k, heads, N, N)
    finally:
        dit.train(was_training)
    weights = maps.float().mean(dim=1)[:, query].cpu()  # (k, N): heads averaged, one query row
    if latent is not None:  # show the noisy latents as the pictures they decode to
        with torch.no_grad():
            x_t = latent.decode_latents(x_t.to(device)).cpu().clamp(-1, 1)  # (k, 1, H, W)
    return x_t, weights.reshape(k, g, g)  # (k, grid, grid)


def plot_attention_maps(
    model: nn.Module,
    schedule: NoiseSchedule,
    image: torch.Tensor,
    label: int | None,
    timesteps: Sequence[int] = (900, 500, 100),
    query: int | None = None,
    layer: int = -1,
    seed: int = 0,
) -> Figure:
    """Top row: x_t at each t. Bottom row: where the query patch (outlined) looks, in block
    ``layer``, as a heat map over the patch grid on top of x_t (see :func:`query_attention`).

    Self-attention lets every patch read every other patch in one step (Peebles & Xie 2023,
    Sec. 3.2: DiT's blocks are standard ViT blocks); the maps show which ones it reads.
    """
    dit = _check_dit(model, "plot_attention_maps")
    cfg = dit.config
    x_t, weights = query_attention(model, schedule, image, label, timesteps, query, layer, seed)
    g = cfg.grid_size
    size = x_t.shape[-1]  # pixels per side (a latent model's decoded pictures: its image size)
    p = size // g  # pixels per token: the patch size, or patch size x downsampling for latents
    query = g * (g // 2) + g // 2 if query is None else query
    q_row, q_col = divmod(query, g)
    k = len(timesteps)
    width = min(FIGURE_WIDTH, 1.0 + 2.3 * k)
    fig = LessonFigure(figsize=(width, 5.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, k, squeeze=False))
    what = "decoded z_t" if isinstance(unwrap(model), LatentDiffusion) else "x_t"
    extent = (-0.5, size - 0.5, size - 0.5, -0.5)  # one patch covers p x p pixels
    heat = None
    for j, t in enumerate(timesteps):
        top, bottom = axes[0, j], axes[1, j]
        digit = to_display(x_t[j, 0])
        top.imshow(digit, cmap="gray", vmin=0, vmax=1)
        top.set_title(f"{what} at t = {t}", fontsize=10)
        bottom.imshow(digit, cmap="gray", vmin=0, vmax=1)
        heat = bottom.imshow(
            weights[j].numpy(), cmap="magma", alpha=0.7, extent=extent, interpolation="nearest"
        )
        _draw_grid(bottom, g, p, colour="#ffffff40")
        bottom.add_patch(
            Rectangle((q_col * p - 0.5, q_row * p - 0.5), p, p, fill=False, ec=TEAL, lw=2)
        )
        bottom.set_title(f"patch {query} attends to (max {weights[j].max():.2f})", fontsize=9)
        _label_patch_axes(bottom, g, p)
        top.set_xticks([])
        top.set_yticks([])
    if heat is not None:
        fig.colorbar(heat, ax=axes[1, :].tolist(), shrink=0.8, label="attention weight")
    block = layer % cfg.depth
    label_text = "no label" if label is None else f"label {label}"
    fig.suptitle(
        f"Attention of patch {query} (outlined) in block {block + 1} of {cfg.depth}, "
        f"averaged over {cfg.num_heads} heads ({label_text})",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- costs
@dataclasses.dataclass(frozen=True)
class DiTCosts:
    """What one DiT configuration costs (one image, one forward pass).

    Attributes:
        config: the :class:`DiTConfig` measured (with ``num_classes=10``).
        tokens: N = (image_size / p)^2 (Sec. 3.2).
        parameters: trainable parameters of the real ``DiT(config)``.
        flops: forward FLOPs per image counted by :func:`~diffusion_edu.models.forward_flops`.
        attention_flops: the two N x N products of self-attention, q k^T and weights @ v:
            2 * (2 * N^2 * D) per block (a multiply-add counts 2), times depth.
    """

    config: DiTConfig
    tokens: int
    parameters: int
    flops: int
    attention_flops: int

    @property
    def gflops(self) -> float:
        """Forward GFLOPs per image."""
        return self.flops / 1e9

    @property
    def attention_share(self) -> float:
        """The fraction of the forward FLOPs spent in the N x N attention products."""
        return self.attention_flops / self.flops


@functools.lru_cache(maxsize=64)
def _measure(config: DiTConfig) -> tuple[int, int]:
    """Parameters and forward FLOPs of the real ``DiT(config)``, kept per config."""
    model = DiT(config)
    return count_parameters(model), forward_flops(model)


def dit_costs(
    patch_size: int, hidden_size: int, depth: int, num_heads: int = 4, image_size: int = 28
) -> DiTCosts:
    """Tokens, parameters, forward FLOPs and the attention's share for a class-conditional DiT.

    The parameters and FLOPs come from a real ``DiT(DiTConfig(..., num_classes=10))`` (built on
    the CPU; cached per configuration). Halving p gives 4x the tokens, and the attention's
    N x N products grow as N^2, so their share of the compute grows as p shrinks, while the
    parameters hardly change (Peebles & Xie 2023, Sec. 5, "Scaling the patch size").
    """
    config = DiTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        depth=depth,
        num_heads=num_heads,
        num_classes=10,
    )
    parameters, flops = _measure(config)
    n = config.num_tokens
    attention = depth * 2 * (2 * n * n * hidden_size)  # q k^T and weights @ v, every block
    return DiTCosts(config, n, parameters, flops, attention)


@functools.lru_cache(maxsize=1)
def _small_unet_costs() -> tuple[int, int]:
    """Parameters and forward FLOPs of the small class-conditional U-Net (the peer)."""
    model = UNet(dataclasses.replace(MODEL_SIZES["small"], num_classes=10))
    return count_parameters(model), forward_flops(model)


def _plain_power(value: float, position: int | None = None) -> str:
    """A power of ten as plain text (1e-3 -> "0.001", 1e6 -> "1M"), not as mathtext."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _bar(ax: Any, value: float, text: str, colour: str) -> None:
    ax.bar([0], [value], width=0.6, color=colour)
    ax.text(0, value, text, ha="center", va="bottom", fontsize=9)
    ax.set_xticks([])
    ax.set_xlim(-0.8, 0.8)
    ax.spines[["top", "right"]].set_visible(False)


def plot_dit_costs(patch_size: int = 4, size: str = "default", image_size: int = 28) -> Figure:
    """Four bars for ``DIT_SIZES[size]`` with patches of ``patch_size``: tokens, parameters,
    forward GFLOPs per image, and the share of those in attention (:func:`dit_costs`); the
    small U-Net's parameters and GFLOPs are dashed reference lines. The axes keep the same
    range for every choice, so moving a control shows how much each number grows.
    """
    if size not in DIT_SIZES:
        raise ValueError(f"size must be one of {', '.join(DIT_SIZES)}, got {size!r}.")
    base = DIT_SIZES[size]
    costs = dit_costs(patch_size, base.hidden_size, base.depth, base.num_heads, image_size)
    unet_params, unet_flops = _small_unet_costs()
    # Fixed margins (inches) instead of a layout engine, which would draw the figure twice (once
    # to measure every text), and only decade ticks on the log axes: a quicker redraw.
    width, height, left, gap, bottom, top = FIGURE_WIDTH, 3.4, 0.75, 0.85, 0.45, 0.75
    panel = (width - left - 3 * gap - 0.1) / 4
    fig = LessonFigure(figsize=(width, height))
    ax_n, ax_p, ax_f, ax_a = (
        fig.add_axes(
            (
                (left + i * (panel + gap)) / width,
                bottom / height,
                panel / width,
                (height - bottom - top) / height,
            )
        )  # fmt: skip
        for i in range(4)
    )
    _bar(ax_n, costs.tokens, f"{costs.tokens:,}", TEAL)
    ax_n.set(yscale="log", ylim=(0.5, 4 * image_size**2), ylabel="tokens N per image")
    ax_n.set_title("tokens", fontsize=10, y=1.0)
    _bar(ax_p, costs.parameters, f"{costs.parameters / 1e6:.2f}M", TEAL)
    ax_p.set(yscale="log", ylim=(1e3, 1e8), ylabel="trainable parameters")
    ax_p.set_title("parameters", fontsize=10, y=1.0)
    _bar(ax_f, costs.gflops, f"{costs.gflops:.3g}", TEAL)
    ax_f.set(yscale="log", ylim=(1e-4, 1e2), ylabel="forward GFLOPs per image")
    ax_f.set_title("compute", fontsize=10, y=1.0)
    for ax, value, text in (
        (ax_p, unet_params, f"{unet_params / 1e6:.2f}M"),
        (ax_f, unet_flops / 1e9, f"{unet_flops / 1e9:.3g}"),
    ):
        ax.axhline(value, color=SLATE, ls="--", lw=1.2, label=f"small U-Net: {text}")
        ax.legend(loc="upper left", frameon=False, fontsize=8)
    _bar(ax_a, 100 * costs.attention_share, f"{costs.attention_share:.0%}", RED)
    ax_a.set(ylim=(0, 100), ylabel="% of FLOPs in q k^T, weights @ v")
    ax_a.set_title("attention's share", fontsize=10, y=1.0)
    for ax in (ax_n, ax_p, ax_f, ax_a):
        ax.set_xlabel(f"DiT-{size}/{patch_size}", fontsize=9)
        if ax is not ax_a:
            ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_formatter(FuncFormatter(_plain_power))  # no mathtext: quicker
    fig.suptitle(
        f"DiT '{size}' (D = {base.hidden_size}, depth {base.depth}) with {patch_size} x "
        f"{patch_size} patches: {costs.tokens:,} tokens, {costs.parameters:,} parameters, "
        f"{costs.gflops:.3g} GFLOPs",
        fontsize=10,
    )
    return fig


def dit_cost_widget(image_size: int = 28) -> LivePlot:
    """A patch-size and a model-size dropdown over :func:`plot_dit_costs`.

    Patch sizes 1, 2, 4, 7, 14 (the divisors of 28 that leave more than one token); model sizes
    the names of :data:`~diffusion_edu.recipes.DIT_SIZES`. Defaults: the course's DiT (p = 4).
    """
    style = {"description_width": "initial"}
    controls = {
        "patch_size": widgets.Dropdown(
            options=[p for p in WIDGET_PATCH_SIZES if image_size % p == 0],
            value=4,
            description="patch size p",
            style=style,
            layout=widgets.Layout(width="180px"),
        ),
        "size": widgets.Dropdown(
            options=list(DIT_SIZES),
            value="default",
            description="model size",
            style=style,
            layout=widgets.Layout(width="200px"),
        ),
    }

    def draw(patch_size: int, size: str) -> Figure:
        return plot_dit_costs(patch_size, size, image_size)

    return LivePlot(draw, controls)


# ----------------------------------------------------------------------------- scaling
def load_scaling_record(path: str | Path | None = None) -> dict[str, Any]:
    """The record of ``scripts/measure_dit_scaling.py``: ``data/results/dit_scaling.json``
    (found by the library's data helper) or ``path``. Checked with :func:`_check_scaling`."""
    if path is None:
        path = require_data_file(SCALING_RESULTS_FILE, _REMAKE_SCALING)
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable DiT scaling record ({error}).") from None
    _check_scaling(record)
    return record


def _check_scaling(record: Any) -> None:
    models = record.get("models") if isinstance(record, dict) else None
    if not isinstance(models, dict) or not models:
        raise ValueError(
            "not a DiT scaling record: expected a dict with 'models' (name -> {'points': [...]}) "
            f"as written by scripts/measure_dit_scaling.py; {_REMAKE_SCALING}."
        )
    for name, entry in models.items():
        points = entry.get("points") if isinstance(entry, dict) else None
        wanted = ("training_gflops", "frechet_distance", "class_agreement")
        if not isinstance(points, list) or not all(
            isinstance(q, dict) and all(key in q for key in wanted) for q in points
        ):
            raise ValueError(
                f"DiT scaling record: model {name!r} needs 'points', a list of dicts with "
                f"{', '.join(wanted)}; {_REMAKE_SCALING}."
            )


#: One colour per model of the shipped record, so that a figure of some of its models (lesson 10
#: plots two, then all four) draws each in the same colour; other names take the next colour.
SCALING_COLOURS = {"dit-tiny": TEAL, "dit-small": AMBER, "dit-default": RED}
_SCALING_X = {
    "training_gflops": "training compute (GFLOPs)",
    "training_seconds": "training time (seconds on the record's machine)",
}


def plot_scaling(
    record: dict[str, Any],
    guided: bool = False,
    recomputed: Sequence[Any] = (),
    recomputed_label: str = "recomputed here",
    x: str = "training_gflops",
) -> Figure:
    """Quality against training compute, one line per model (Peebles & Xie 2023, Sec. 5,
    Fig. 9: at equal training GFLOPs, bigger DiTs reach a lower FID).

    Left: Frechet distance (log) against training GFLOPs (log), with the distance two sets of
    real digits of the same size already have (``frechet_floor_same_n``) dashed. Right: class
    agreement. A model still being measured (a partial record) shows the points it has.

    Args:
        record: from :func:`load_scaling_record`.
        guided: plot the samples drawn with guidance (the record's ``*_guided`` scores)
            instead of the model alone (guidance 1).
        recomputed: points measured in the lesson (:class:`~diffusion_edu.scaling.ScalingPoint`
            or dicts with the same keys), drawn as black stars labelled ``recomputed_label``.
        x: ``"training_gflops"`` (compute, as the paper) or ``"training_seconds"`` (wall-clock
            time on the record's machine: the same budget in minutes).
    """
    if x not in _SCALING_X:
        raise ValueError(f"x must be one of {', '.join(_SCALING_X)}, got {x!r}.")
    _check_scaling(record)
    suffix = "_guided" if guided else ""
    if guided and not all(
        f"class_agreement{suffix}" in q for e in record["models"].values() for q in e["points"]
    ):
        raise ValueError(
            "this scaling record has no guided scores ('class_agreement_guided'); plot it with "
            f"guided=False, or {_REMAKE_SCALING}."
        )
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 3.8), layout="constrained")
    ax_fd, ax_ca = fig.subplots(1, 2)
    colours = [TEAL, AMBER, RED, "#1f3b73", "#6a4c93"]
    dits = 0
    for name, entry in record["models"].items():
        points = sorted(entry["points"], key=lambda q: q["training_gflops"])
        if name.startswith("unet"):
            colour, style = SLATE, "--"
        else:
            colour = SCALING_COLOURS.get(name, colours[dits % len(colours)])
            style = "-"
            dits += 1
        params = entry.get("parameters")
        label = name if params is None else f"{name} ({params / 1e6:.2f}M)"
        gflops = [q[x] for q in points]
        for ax, key in ((ax_fd, "frechet_distance"), (ax_ca, "class_agreement")):
            ax.plot(gflops, [q[key + suffix] for q in points], style, marker="o", ms=4,
                    color=colour, label=label)  # fmt: skip
    extra = [q if isinstance(q, dict) else dataclasses.asdict(q) for q in recomputed]
    for k, q in enumerate(extra):
        for ax, key in ((ax_fd, "frechet_distance"), (ax_ca, "class_agreement")):
            ax.plot([q[x]], [q[key + suffix]], "*", ms=13, color="k",
                    zorder=5, label=recomputed_label if k == 0 else None)  # fmt: skip
    floor = record.get("frechet_floor_same_n")
    if floor is not None:
        ax_fd.axhline(floor, color="k", ls=":", lw=1, label=f"real vs real digits ({floor:g})")
    ax_fd.set(xscale="log", yscale="log", xlabel=_SCALING_X[x],
              ylabel="Frechet distance (lower is better)")  # fmt: skip
    ax_fd.set_title("Frechet distance to held-out digits", fontsize=10)
    ax_ca.set(xscale="log", ylim=(0, 1.02), xlabel=_SCALING_X[x],
              ylabel="class agreement (higher is better)")  # fmt: skip
    ax_ca.set_title("Samples that show the asked digit", fontsize=10)
    low, high = ax_fd.get_xlim()
    subs = (1.0,) if high / low > 100 else (1.0, 2.0, 5.0)  # label 1-2-5 within two decades
    for ax in (ax_fd, ax_ca):
        ax.grid(alpha=0.25, which="both")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_power))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax_fd.yaxis.set_major_formatter(FuncFormatter(_plain_power))
    ax_fd.yaxis.set_minor_formatter(NullFormatter())
    ax_fd.legend(frameon=False, fontsize=8)
    if extra:
        ax_ca.legend(frameon=False, fontsize=8)
    how = "with guidance" if guided else "guidance 1: the model alone"
    fig.suptitle(
        f"Quality against {_SCALING_X[x].split(' (')[0]}, one line per model ({how}; cf. "
        "Peebles & Xie "
        "2023, Fig. 9)",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- adaLN-Zero
_MAIN_X, _MAIN_W, _SIDE_X, _SIDE_W, _BOX_H = 0.3, 0.58, 0.8, 0.36, 0.085


def _box(ax: Any, x: float, y: float, w: float, text: str, colour: str) -> None:
    h = _BOX_H + 0.035 * text.count("\n")
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.008",
            fc=colour, ec="#444", lw=0.8, alpha=0.9,
        )
    )  # fmt: skip
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax: Any, start: tuple[float, float], end: tuple[float, float], dashed: bool) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=9, color=RED if dashed else "#444",
            ls="--" if dashed else "-", lw=1, shrinkA=0, shrinkB=0,
        )
    )  # fmt: skip


def _block_diagram(
    ax: Any, title: str, steps: Sequence[tuple[str, bool]], side: str, note: str
) -> None:
    """Boxes from bottom (input x) to top (output); ``steps[i][1]``: the condition enters."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    ys = np.linspace(0.2, 0.84, len(steps))
    hs = [_BOX_H + 0.035 * text.count("\n") for text, _ in steps]
    ax.text(_MAIN_X, 0.09, "x (input)", ha="center", va="center", fontsize=9)
    ax.text(_MAIN_X, 0.97, "output", ha="center", va="center", fontsize=9)
    _arrow(ax, (_MAIN_X, 0.11), (_MAIN_X, ys[0] - hs[0] / 2 - 0.01), False)
    _arrow(ax, (_MAIN_X, ys[-1] + hs[-1] / 2 + 0.01), (_MAIN_X, 0.95), False)
    for i, (text, conditioned) in enumerate(steps):
        _box(ax, _MAIN_X, ys[i], _MAIN_W, text, AMBER if conditioned else "#e8ecf2")
        if i:
            _arrow(
                ax,
                (_MAIN_X, ys[i - 1] + hs[i - 1] / 2 + 0.01),
                (_MAIN_X, ys[i] - hs[i] / 2 - 0.01),
                False,
            )
    side_h = _BOX_H + 0.035 * side.count("\n")
    side_y = 0.05 + side_h / 2
    _box(ax, _SIDE_X, side_y, _SIDE_W, side, TEAL)
    ax.texts[-1].set_color("white")
    for y, (_, conditioned) in zip(ys, steps, strict=True):
        if conditioned:
            _arrow(
                ax, (_SIDE_X, side_y + side_h / 2 + 0.01), (_MAIN_X + _MAIN_W / 2 + 0.01, y), True
            )
    ax.text(0.0, -0.02, note, ha="left", va="top", fontsize=8, transform=ax.transAxes)


def plot_adaln_zero() -> Figure:
    """How the condition enters a block: the course U-Net's residual block (left) and a DiT
    block with adaLN-Zero (right; Peebles & Xie 2023, Sec. 3.2, "DiT block design", Fig. 3).

    In both, the condition is one vector per image, the sum of the timestep and label
    embeddings. The U-Net adds a linear map of it to every channel (a bias, one number per
    channel). DiT *regresses* six vectors from it: the shift and scale that replace
    LayerNorm's own weights, and a gate that scales each branch before it is added back. That
    regression starts at zero, so every gate is 0 and every block starts as the identity
    (the paper's "Zero"); the course's U-Net blocks start as the identity too (their last
    convolution starts at zero), when input and output channels match.
    """
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 5.2), layout="constrained")
    ax_u, ax_d = fig.subplots(1, 2)
    _block_diagram(
        ax_u,
        "U-Net residual block: the condition is a bias",
        [
            ("GroupNorm, SiLU, conv 3x3", False),
            ("+ Linear(SiLU(emb)): one number per channel", True),
            ("GroupNorm, SiLU, dropout,\nconv 3x3 (starts at 0)", False),
            ("+ x (the residual connection)", False),
        ],
        "emb = t_emb + y_emb",
        "the condition shifts each channel of the feature map;\n"
        "a fresh block returns x (its last conv starts at 0)",
    )
    _block_diagram(
        ax_d,
        "DiT block (adaLN-Zero): the condition sets norm and gates",
        [
            ("LayerNorm, then * (1 + scale1) + shift1", True),
            ("multi-head self-attention", False),
            ("* gate1, then + x", True),
            ("LayerNorm, then * (1 + scale2) + shift2", True),
            ("MLP (D -> 4D -> D)", False),
            ("* gate2, then + x", True),
        ],
        "c = t_emb + y_emb\nLinear(SiLU(c)), starts at 0\n-> shift, scale, gate x2",
        "6 vectors of width D regressed from c, per image;\n"
        "gates start at 0: a fresh block returns x (identity)",
    )
    fig.suptitle("How each block reads the time step and the label", fontsize=11)
    return fig


@torch.no_grad()
def adaln_gates(model: nn.Module, timesteps: Sequence[int], label: int | None) -> torch.Tensor:
    """How open each block's two adaLN-Zero gates are, at each timestep: ``(len(timesteps),
    depth, 2)``, the mean |gate| over the D channels of the attention branch (``[..., 0]``)
    and of the MLP branch (``[..., 1]``), for the condition c = embed(t, label).

    A gate multiplies its branch before the branch is added back to the tokens (Sec. 3.2,
    "adaLN-Zero block"), so 0 means "this block leaves the tokens alone at this t". A fresh DiT
    gives all zeros (the "Zero"); a trained one shows what training opened. ``label`` None
    asks for the unconditional (null-label) condition.
    """
    dit = _check_dit(model, "adaln_gates")
    if not timesteps:
        raise ValueError("adaln_gates needs at least one timestep.")
    device = next(dit.parameters()).device
    t = torch.as_tensor(list(timesteps), device=device)  # (n,)
    if label is None:
        labels = None
    else:
        labels = torch.full_like(t, int(label))
        if dit.config.num_classes is None or not 0 <= int(label) < dit.config.num_classes:
            raise ValueError(
                f"label must be in 0..{(dit.config.num_classes or 1) - 1} for this DiT, or None "
                f"(no label), got {label}."
            )
    c = dit.embed(t, labels)  # (n, D)
    per_block = []
    for block in dit.blocks:
        _, _, gate_attn, _, _, gate_mlp = block.modulation(c).chunk(6, dim=1)  # each (n, D)
        per_block.append(torch.stack([gate_attn.abs().mean(1), gate_mlp.abs().mean(1)], dim=1))
    return torch.stack(per_block, dim=1).float().cpu()  # (n, depth, 2)


def plot_adaln_gates(
    model: nn.Module, timesteps: Sequence[int] = (900, 500, 100, 10), label: int | None = 3
) -> Figure:
    """Bars of :func:`adaln_gates`: for each block (x axis), how open its attention gate (left)
    and MLP gate (right) are, one bar colour per timestep. Shows that the condition does not
    only tell the blocks *what* to draw: it sets how much each block contributes at each t."""
    gates = adaln_gates(model, timesteps, label)  # (n, depth, 2)
    n, depth, _ = gates.shape
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colours = [RED, AMBER, TEAL, SLATE, "#1f3b73", "#6a4c93"]
    width = 0.8 / n
    blocks = np.arange(1, depth + 1)
    for ax, k, name in ((axes[0], 0, "attention branch"), (axes[1], 1, "MLP branch")):
        for i, t in enumerate(timesteps):
            ax.bar(blocks + (i - (n - 1) / 2) * width, gates[i, :, k].numpy(), width,
                   color=colours[i % len(colours)], label=f"t = {t}")  # fmt: skip
        ax.set(xlabel="block", xticks=blocks, title=f"gate of the {name}")
        ax.grid(alpha=0.25, axis="y")
    for ax in axes:
        ax.set_ylabel("mean |gate| over the D channels")
    axes[0].legend(frameon=False, fontsize=8)
    what = "no label" if label is None else f"label {label}"
    fig.suptitle(f"adaLN-Zero gates of the trained DiT ({what}): 0 = the branch adds nothing",
                 fontsize=11)  # fmt: skip
    return fig
