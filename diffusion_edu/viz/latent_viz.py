"""Lesson 11: latent diffusion (Rombach et al. 2022, arXiv 2112.10752), in pictures.

* :class:`LatentCost`, :func:`latent_cost_table`, :func:`plot_latent_arithmetic`: why latents are
  cheap: values per image in pixels and in latents, for Stable Diffusion v1's published shapes
  and for the course's digits (Sec. 3.1: z = E(x) has h = H / f).
* :func:`reconstruct`, :func:`plot_reconstructions`: digits, their reconstructions D(E(x)) and
  the error (Sec. 3.1, "perceptual compression").
* :func:`plot_latent_channels`: the latent channels of one digit as pictures.
* :class:`LatentWalk`, :func:`latent_walk`, :func:`plot_latent_walk`, :func:`latent_walk_widget`:
  decode points on the straight line between two digits' latents, against a pixel cross-fade.
* :class:`SideBySide`, :func:`side_by_side`, :func:`plot_side_by_side`: the pixel U-Net and the
  latent model, from their records (quality, seconds) and PyTorch's FLOP counter.
* :class:`ChannelCountResult`, :func:`train_channel_count`: a quick autoencoder with fewer or
  more latent channels, and its held-out reconstruction error; :func:`plot_channel_counts`,
  :func:`channel_count_widget`: those results and their reconstructions, under a slider.

Every function that needs the autoencoder takes the latent model
(:class:`~diffusion_edu.models.LatentDiffusion`, e.g. ``load_pretrained("mnist-latent")[0]``)
and uses its scaled latents: :meth:`~diffusion_edu.models.LatentDiffusion.encode_images` and
:meth:`~diffusion_edu.models.LatentDiffusion.decode_latents`, what the diffusion runs on.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from diffusion_edu.models.common import decodes_latents, forward_flops, unwrap
from diffusion_edu.pretrained import pretrained_info
from diffusion_edu.viz.plots import (
    AMBER,
    FIGURE_WIDTH,
    INK_BLUE,
    SLATE,
    TEAL,
    LessonFigure,
    to_display,
)
from diffusion_edu.viz.widgets import LivePlot

__all__ = [
    "SD_V1_IMAGE_SHAPE",
    "SD_V1_LATENT_SHAPE",
    "LatentCost",
    "latent_cost_table",
    "plot_latent_arithmetic",
    "reconstruct",
    "plot_reconstructions",
    "plot_latent_channels",
    "LatentWalk",
    "latent_walk",
    "plot_latent_walk",
    "latent_walk_widget",
    "SideBySide",
    "decoder_flops",
    "side_by_side",
    "plot_side_by_side",
    "ChannelCountResult",
    "train_channel_count",
    "plot_channel_counts",
    "channel_count_widget",
]

#: Stable Diffusion v1's images, (C, H, W): 512 x 512 RGB. CompVis/stable-diffusion README
#: ("pretrained on 256x256 images and then finetuned on 512x512 images") and
#: ``configs/stable-diffusion/v1-inference.yaml`` (first stage ``in_channels: 3``; its
#: ``ch_mult: [1, 2, 4, 4]`` halves the size three times, f = 8: 64 x 8 = 512).
SD_V1_IMAGE_SHAPE = (3, 512, 512)
#: Stable Diffusion v1's latents, (C, h, w): ``v1-inference.yaml`` has ``image_size: 64``,
#: ``channels: 4`` (``z_channels: 4``): the README's "downsampling-factor 8 autoencoder".
SD_V1_LATENT_SHAPE = (4, 64, 64)

_LOAD_LATENT = "Load one with load_pretrained('mnist-latent') (diffusion_edu.pretrained)."


# ----------------------------------------------------------------------------- checks
def _check_latent_model(model: nn.Module, caller: str) -> nn.Module:
    """The plain latent model inside ``model``, or a TypeError saying what to pass instead."""
    inner = unwrap(model) if isinstance(model, nn.Module) else model
    if not decodes_latents(inner) or not callable(getattr(inner, "encode_images", None)):
        raise TypeError(
            f"{caller} needs a latent diffusion model (diffusion_edu.models.LatentDiffusion, "
            f"with an autoencoder), got {type(inner).__name__}: a pixel-space model has no "
            f"latents to encode or decode. {_LOAD_LATENT}"
        )
    return inner


def _as_images(model: nn.Module, images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """``images`` as ``(B, C, H, W)`` float on the CPU, checked against the model's images."""
    want = tuple(model.image_shape)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (B, {_dims(want)}).")
    x = images.detach().float().cpu()
    if x.ndim == len(want):
        x = x[None]  # one image -> a batch of one
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
        raise ValueError(
            f"{what}: expected images of shape (B, {_dims(want)}) or one image ({_dims(want)}) "
            f"in [-1, 1], the autoencoder's input, got {tuple(images.shape)}. Use digits from "
            "load_mnist('test').images (diffusion_edu.data)."
        )
    return x


def _dims(shape: Sequence[int]) -> str:
    return ", ".join(str(s) for s in shape)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _encode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.encode_images(x.to(_device(model))).float().cpu()  # (B, c, h, w), scaled


@torch.no_grad()
def _decode(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return model.decode_latents(z.to(_device(model))).float().cpu()  # (B, C, H, W)


def _image_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- arithmetic
@dataclasses.dataclass(frozen=True)
class LatentCost:
    """How many numbers one image is, in pixels and in its autoencoder's latents.

    Attributes:
        name: what the row describes.
        image_shape: ``(C, H, W)`` of the images.
        latent_shape: ``(c, h, w)`` of the latents.
    """

    name: str
    image_shape: tuple[int, int, int]
    latent_shape: tuple[int, int, int]

    @property
    def pixel_values(self) -> int:
        """C * H * W."""
        return math.prod(self.image_shape)

    @property
    def latent_values(self) -> int:
        """c * h * w."""
        return math.prod(self.latent_shape)

    @property
    def ratio(self) -> float:
        """How many times fewer numbers the diffusion model works on in latent space."""
        return self.pixel_values / self.latent_values

    @property
    def downsampling(self) -> float:
        """f = H / h, the autoencoder's downsampling factor (Rombach et al. 2022, Sec. 3.1)."""
        return self.image_shape[1] / self.latent_shape[1]


def latent_cost_table(model: nn.Module | None = None) -> list[LatentCost]:
    """Values per image for Stable Diffusion v1 and for the course's digits.

    Stable Diffusion v1: :data:`SD_V1_IMAGE_SHAPE` and :data:`SD_V1_LATENT_SHAPE`, the shapes
    of CompVis/stable-diffusion's ``v1-inference.yaml`` (512 x 512 x 3 -> 64 x 64 x 4, f = 8).
    The digits: ``model.image_shape`` and ``model.latent_shape`` of a latent model (default:
    the course's default :class:`~diffusion_edu.models.AutoencoderConfig`, 28 x 28 x 1 ->
    7 x 7 x 4, f = 4). Rombach et al. 2022 (Sec. 3.1) call f = H / h the downsampling factor
    and compare f = 1..32 in Sec. 4.1; Stable Diffusion uses f = 8.
    """
    if model is None:
        from diffusion_edu.models.autoencoder import Autoencoder, AutoencoderConfig

        config = AutoencoderConfig()
        image_shape = (config.in_channels, config.image_size, config.image_size)
        latent_shape = Autoencoder(config).latent_shape
    else:
        inner = _check_latent_model(model, "latent_cost_table")
        image_shape, latent_shape = tuple(inner.image_shape), tuple(inner.latent_shape)
    return [
        LatentCost("Stable Diffusion v1", SD_V1_IMAGE_SHAPE, SD_V1_LATENT_SHAPE),
        LatentCost("our digits", image_shape, latent_shape),  # type: ignore[arg-type]
    ]


def _shape_text(shape: Sequence[int]) -> str:
    c, h, w = shape
    return f"{h}x{w}x{c}"


def plot_latent_arithmetic(model: nn.Module | None = None) -> Figure:
    """Values per image (log scale) in pixels and in latents, for Stable Diffusion v1 and for
    our digits (:func:`latent_cost_table`), with the ratio printed over each pair.

    Every step of a diffusion model reads and writes one whole image's worth of numbers, so
    a model on latents with ``ratio`` times fewer numbers has that much less to process per
    step (Rombach et al. 2022, Sec. 3: the diffusion model is trained in the autoencoder's
    lower-dimensional latent space).
    """
    rows = latent_cost_table(model)
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 3.8), layout="constrained")
    ax = fig.add_subplot()
    positions, heights, colours, ticks = [], [], [], []
    for i, row in enumerate(rows):
        x = 3.0 * i
        positions += [x, x + 1]
        heights += [row.pixel_values, row.latent_values]
        colours += [SLATE, TEAL]
        ticks += [
            f"{row.name}\npixels {_shape_text(row.image_shape)}",
            f"{row.name}\nlatents {_shape_text(row.latent_shape)}",
        ]
        top = row.pixel_values * 4
        ax.annotate(
            f"{row.ratio:g}x fewer (f = {row.downsampling:g})",
            xy=(x + 0.5, top),
            ha="center",
            va="bottom",
            fontsize=10,
            color=INK_BLUE,
            fontweight="bold",
        )
    ax.bar(positions, heights, width=0.8, color=colours)
    for x, value in zip(positions, heights, strict=True):
        ax.text(x, value, f"{value:,}", ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(100, max(heights) * 40)
    ax.set_xticks(positions, ticks, fontsize=8)
    ax.set_xlabel("what the diffusion model works on")
    ax.set_ylabel("numbers per image (log scale)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(
        "Diffusing latents instead of pixels: "
        + "; ".join(
            f"{r.name} {r.pixel_values:,} / {r.latent_values:,} = {r.ratio:g}x" for r in rows
        ),
        fontsize=10,
    )
    return fig


# ----------------------------------------------------------------------------- reconstructions
def reconstruct(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``D(E(x))`` of ``images`` through the latent model's autoencoder, and each image's MSE.

    Returns ``(reconstructions (B, C, H, W) in [-1, 1], mse (B,))``; the latents are
    :meth:`~diffusion_edu.models.LatentDiffusion.encode_images`' (the encoder's mean, scaled),
    decoded by ``decode_latents`` (which unscales them): the round trip a sample's latents make.
    """
    inner = _check_latent_model(model, "reconstruct")
    x = _as_images(inner, images)
    recon = _decode(inner, _encode(inner, x))  # (B, C, H, W)
    return recon, (recon - x).square().flatten(1).mean(dim=1)


def plot_reconstructions(
    model: nn.Module, images: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None
) -> Figure:
    """Rows: held-out digits, their reconstructions D(E(x)), and the absolute error |x - D(E(x))|
    (0 = black, 0.5 or more = white); each column's title has that image's MSE.

    The autoencoder keeps what a digit looks like and loses fine detail (Rombach et al. 2022,
    Sec. 3.1, "perceptual compression"); on the shipped model the errors lie along the strokes'
    edges.
    """
    inner = _check_latent_model(model, "plot_reconstructions")
    x = _as_images(inner, images)
    if x.shape[0] > 12:
        raise ValueError(
            f"plot_reconstructions shows at most 12 digits side by side, got {x.shape[0]}: "
            "pass a few, e.g. images[:8]."
        )
    if labels is not None and len(labels) != x.shape[0]:
        raise ValueError(f"got {len(labels)} labels for {x.shape[0]} images: give one each.")
    recon, mse = reconstruct(inner, x)
    error = (x - recon).abs()  # (B, C, H, W)
    n = x.shape[0]
    fig = LessonFigure(figsize=(min(FIGURE_WIDTH, 1.0 + 1.1 * n), 4.4), layout="constrained")
    axes = np.asarray(fig.subplots(3, n, squeeze=False))
    for j in range(n):
        axes[0, j].imshow(to_display(x[j, 0]), cmap="gray", vmin=0, vmax=1)
        label = "" if labels is None else f"digit {int(labels[j])}\n"
        axes[0, j].set_title(f"{label}MSE {float(mse[j]):.4f}", fontsize=8)
        axes[1, j].imshow(to_display(recon[j, 0]), cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(error[j, 0].numpy(), cmap="gray", vmin=0, vmax=0.5)
        for ax in axes[:, j]:
            _image_axes(ax)
    for ax, text in zip(axes[:, 0], ("original x", "D(E(x))", "|x - D(E(x))|"), strict=True):
        ax.set_ylabel(text, fontsize=9)
    fig.suptitle(
        f"{n} held-out digits through the autoencoder: mean MSE {float(mse.mean()):.4f}",
        fontsize=11,
    )
    return fig


# ----------------------------------------------------------------------------- channels
def plot_latent_channels(model: nn.Module, image: torch.Tensor) -> Figure:
    """One digit and its latent channels ``model.encode_images(image)[0, k]`` (scaled latents,
    h x w each), on one diverging colour scale centred on 0 with a shared colour bar.

    This small grid of numbers is all the diffusion model sees of the digit (Rombach et al.
    2022, Sec. 3.2): each channel is a coarse h x w map laid over the digit.
    """
    inner = _check_latent_model(model, "plot_latent_channels")
    x = _as_images(inner, image, "image")
    if x.shape[0] != 1:
        raise ValueError(f"plot_latent_channels shows one digit, got {x.shape[0]}: pass images[0].")
    z = _encode(inner, x)[0]  # (c, h, w)
    c, h, w = z.shape
    limit = float(z.abs().max()) or 1.0
    fig = LessonFigure(figsize=(min(FIGURE_WIDTH, 2.0 + 1.9 * c), 2.8), layout="constrained")
    axes = fig.subplots(1, c + 1)
    axes[0].imshow(to_display(x[0, 0]), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"the digit\n{x.shape[-2]} x {x.shape[-1]} pixels", fontsize=9)
    _image_axes(axes[0])
    shown = None
    for k in range(c):
        shown = axes[k + 1].imshow(
            z[k].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        axes[k + 1].set_title(f"latent channel {k}\n{h} x {w}", fontsize=9)
        _image_axes(axes[k + 1])
    if shown is not None:
        fig.colorbar(shown, ax=list(axes[1:]), shrink=0.85, label="scaled latent value")
    fig.suptitle(
        f"A digit as {c} x {h} x {w} = {c * h * w} latent numbers (scaled by "
        f"{inner.scale_factor:.3g})",
        fontsize=10,
    )
    return fig


# ----------------------------------------------------------------------------- latent walk
@dataclasses.dataclass(frozen=True)
class LatentWalk:
    """Points on the straight line between two digits' latents, decoded, and a pixel cross-fade.

    Attributes:
        weights: ``(steps,)`` w from 0 to 1.
        latents: ``(steps, c, h, w)`` z(w) = (1 - w) z_a + w z_b (scaled latents).
        decoded: ``(steps, C, H, W)`` D(z(w)), what the decoder makes of each point.
        crossfade: ``(steps, C, H, W)`` (1 - w) x_a + w x_b, the same mix done on pixels.
    """

    weights: torch.Tensor
    latents: torch.Tensor
    decoded: torch.Tensor
    crossfade: torch.Tensor


def _lerp(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1 - w) a + w b for each w: ``(len(weights), *a.shape)``."""
    w = weights.reshape(-1, *([1] * a.ndim))
    return (1 - w) * a[None] + w * b[None]


def latent_walk(
    model: nn.Module, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 8
) -> LatentWalk:
    """Decode ``steps`` evenly spaced points from ``E(image_a)`` to ``E(image_b)`` (ends
    included), and cross-fade the pixels with the same weights, to compare.

    A straight line (lerp), not :func:`~diffusion_edu.samplers.slerp`: these latents are
    encoded digits, not Gaussian noise, so there is no shell of typical norms to stay on.
    Where the autoencoder has learnt a smooth space, the points in between decode to
    stroke shapes between the two digits, while the pixel cross-fade is two faint digits on
    top of each other.
    """
    inner = _check_latent_model(model, "latent_walk")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2 (the two ends), got {steps!r}.")
    x = torch.cat([_as_images(inner, image_a, "image_a"), _as_images(inner, image_b, "image_b")])
    if x.shape[0] != 2:
        raise ValueError(
            "latent_walk walks between two digits: pass one image each, e.g. images[0]."
        )
    z = _encode(inner, x)  # (2, c, h, w)
    weights = torch.linspace(0.0, 1.0, steps)
    latents = _lerp(z[0], z[1], weights)  # (steps, c, h, w)
    return LatentWalk(weights, latents, _decode(inner, latents), _lerp(x[0], x[1], weights))


def plot_latent_walk(
    model: nn.Module, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 8
) -> Figure:
    """Top row: the latent walk D((1 - w) z_a + w z_b); bottom row: the pixel cross-fade
    (1 - w) x_a + w x_b, at the same weights w (see :func:`latent_walk`)."""
    walk = latent_walk(model, image_a, image_b, steps)
    fig = LessonFigure(figsize=(min(FIGURE_WIDTH, 1.4 + 1.0 * steps), 3.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, steps, squeeze=False))
    for j in range(steps):
        axes[0, j].imshow(to_display(walk.decoded[j, 0]), cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(to_display(walk.crossfade[j, 0]), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"w = {float(walk.weights[j]):.2f}", fontsize=8)
        _image_axes(axes[0, j])
        _image_axes(axes[1, j])
    axes[0, 0].set_ylabel("decode the\nlatent mix", fontsize=9)
    axes[1, 0].set_ylabel("mix the\npixels", fontsize=9)
    fig.suptitle("From one digit to another: through latent space (top) and in pixels (bottom)")
    return fig


def _first_of_each_class(labels: torch.Tensor) -> dict[str, int]:
    """Dropdown options: ``"digit d (#i)"`` -> index i of the first image with label d."""
    options: dict[str, int] = {}
    for label in sorted({int(v) for v in labels.tolist()}):
        index = int((labels == label).nonzero()[0, 0])
        options[f"digit {label} (#{index})"] = index
    return options


def latent_walk_widget(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    positions: int = 11,
) -> LivePlot:
    """Two dropdowns (the digit at each end: the first held-out digit of each class) and a
    slider for the position w along the walk, over the decoded latent mix and the pixel mix.

    The chosen digits' latents are encoded once, here; a move decodes one latent and changes
    the drawn figure in place (:class:`~diffusion_edu.viz.widgets.LivePlot`'s ``update``).

    Args:
        model: the latent model (``load_pretrained("mnist-latent")[0]``).
        images: ``(N, C, H, W)`` digits, e.g. ``load_mnist("test").images``.
        labels: ``(N,)`` their classes.
        positions: slider stops from w = 0 to w = 1 (11: steps of 0.1).
    """
    inner = _check_latent_model(model, "latent_walk_widget")
    x = _as_images(inner, images)
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"got {labels.shape[0]} labels for {x.shape[0]} images: give one each.")
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 2:
        raise ValueError(f"positions must be an integer >= 2, got {positions!r}.")
    options = _first_of_each_class(labels)
    if len(options) < 2:
        raise ValueError("latent_walk_widget needs digits of at least two classes to walk between.")
    chosen = list(options.values())
    latents = dict(zip(chosen, _encode(inner, x[chosen]), strict=True))  # index -> (c, h, w)
    names = list(options)
    style = {"description_width": "initial"}
    choices = list(options.items())  # (label, image index) pairs
    layout = widgets.Layout(width="190px")
    controls = {
        "start": widgets.Dropdown(
            options=choices, value=chosen[0], description="from", style=style, layout=layout
        ),
        "end": widgets.Dropdown(
            options=choices, value=chosen[1], description="to", style=style, layout=layout
        ),
        "step": widgets.IntSlider(
            value=positions // 2, min=0, max=positions - 1, description="position",
            style=style, readout=False,
        ),
    }  # fmt: skip

    def pictures(start: int, end: int, step: int) -> tuple[float, np.ndarray, np.ndarray]:
        w = step / (positions - 1)
        z = (1 - w) * latents[start] + w * latents[end]  # (c, h, w)
        decoded = _decode(inner, z[None])[0, 0]  # (H, W)
        crossfade = (1 - w) * x[start, 0] + w * x[end, 0]  # (H, W)
        return w, to_display(decoded), to_display(crossfade)

    def titles(start: int, end: int, w: float) -> tuple[str, str]:
        a = names[chosen.index(start)].split(" (")[0]
        b = names[chosen.index(end)].split(" (")[0]
        return (
            f"{a} -> {b}, w = {w:.1f}",
            "D((1 - w) z_a + w z_b)  |  (1 - w) x_a + w x_b",
        )

    def draw(start: int, end: int, step: int) -> Figure:
        w, decoded, crossfade = pictures(start, end, step)
        # Fixed axes positions (no layout engine): a redraw only paints, it does not measure.
        fig = LessonFigure(figsize=(FIGURE_WIDTH, 2.9))
        panels = [
            (to_display(x[start, 0]), "x_a (w = 0)"),
            (decoded, "decoded latent mix"),
            (crossfade, "pixel mix"),
            (to_display(x[end, 0]), "x_b (w = 1)"),
        ]
        for i, (picture, title) in enumerate(panels):
            ax = fig.add_axes((0.03 + i * 0.245, 0.05, 0.2, 0.72))
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=10, color=TEAL if i in (1, 2) else "black")
            _image_axes(ax)
        top, bottom = titles(start, end, w)
        fig.suptitle(f"{top}\n{bottom}", fontsize=10)
        return fig

    def update(fig: Figure, start: int, end: int, step: int) -> None:
        w, decoded, crossfade = pictures(start, end, step)
        for ax, picture in zip(fig.axes, (to_display(x[start, 0]), decoded, crossfade,
                                          to_display(x[end, 0])), strict=True):  # fmt: skip
            ax.images[0].set_data(picture)
        top, bottom = titles(start, end, w)
        fig._suptitle.set_text(f"{top}\n{bottom}")

    return LivePlot(draw, controls, update=update)


# ----------------------------------------------------------------------------- side by side
@dataclasses.dataclass(frozen=True)
class SideBySide:
    """The pixel model and the latent model, as recorded and as counted.

    Attributes:
        names: ``(pixel, latent)`` names of the shipped models.
        class_agreement: ``{name: (guidance 1, guidance 2)}``, from ``pretrained_info(name).record``
            (``"ddim50_guidance1"``, ``"ddim50_guidance2"``).
        frechet_distance: the same, Frechet distance to held-out digits.
        seconds_per_image: the same, seconds per image with DDIM-50.
        frechet_floor: the records' ``frechet_floor_same_n`` (two sets of real digits).
        model_call_flops: ``{name: FLOPs}`` of one denoiser call on one image
            (:func:`~diffusion_edu.models.forward_flops`; the latent model's runs on latents).
        decoder_flops: FLOPs of decoding one image's latents (the latent model pays it once).
        evaluated_on: ``{name: the record's "evaluated_on"}``.
    """

    names: tuple[str, str]
    class_agreement: dict[str, tuple[float, float]]
    frechet_distance: dict[str, tuple[float, float]]
    seconds_per_image: dict[str, tuple[float, float]]
    frechet_floor: dict[str, float]
    model_call_flops: dict[str, int]
    decoder_flops: int
    evaluated_on: dict[str, str]


def decoder_flops(model: nn.Module) -> int:
    """FLOPs of ``model.decode_latents`` on one image's latents, counted by PyTorch's
    ``FlopCounterMode`` (convolutions; a multiply-add counts 2, as in
    :func:`~diffusion_edu.models.forward_flops`)."""
    inner = _check_latent_model(model, "decoder_flops")
    z = torch.zeros((1, *inner.latent_shape), device=_device(inner))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        inner.decode_latents(z)
    return int(counter.get_total_flops())


def side_by_side(
    pixel: str = "mnist",
    latent: str = "mnist-latent",
    models: tuple[nn.Module, nn.Module] | None = None,
) -> SideBySide:
    """Read both shipped models' records, and count their FLOPs.

    Quality and seconds come from ``pretrained_info(name).record`` only (500 samples, DDIM-50,
    as the records say); FLOPs are counted on ``models`` (default: ``load_pretrained`` of
    each). One image with DDIM-50 costs 50 model calls (100 with guidance: conditional and
    unconditional), plus, for the latent model, one decode.
    """
    from diffusion_edu.pretrained import load_pretrained

    names = (pixel, latent)
    if models is None:
        models = (load_pretrained(pixel, device="cpu")[0], load_pretrained(latent, device="cpu")[0])
    if decodes_latents(models[0]):
        raise TypeError(f"side_by_side: the first model ({pixel!r}) must be a pixel-space model.")
    _check_latent_model(models[1], "side_by_side (second model)")
    records = {name: pretrained_info(name).record for name in names}
    keys = ("ddim50_guidance1", "ddim50_guidance2")
    for name, record in records.items():
        missing = [k for k in (*keys, "frechet_floor_same_n") if k not in record]
        if missing:
            raise ValueError(
                f"the record of {name!r} lacks {', '.join(missing)}: measure it again with the "
                "script its 'command' names."
            )

    def pair(name: str, field: str) -> tuple[float, float]:
        return tuple(float(records[name][k][field]) for k in keys)  # type: ignore[return-value]

    return SideBySide(
        names=names,
        class_agreement={n: pair(n, "class_agreement") for n in names},
        frechet_distance={n: pair(n, "frechet_distance") for n in names},
        seconds_per_image={n: pair(n, "seconds_per_image") for n in names},
        frechet_floor={n: float(records[n]["frechet_floor_same_n"]) for n in names},
        model_call_flops={n: forward_flops(m) for n, m in zip(names, models, strict=True)},
        decoder_flops=decoder_flops(models[1]),
        evaluated_on={n: str(records[n].get("evaluated_on", "")) for n in names},
    )


def plot_side_by_side(figures: SideBySide | None = None) -> Figure:
    """Pixel U-Net against latent model: class agreement, Frechet distance and seconds per image
    at guidance 1 and 2 (DDIM-50, from the records), and MFLOPs per model call and per decode
    (counted), each bar with its value printed."""
    f = figures if figures is not None else side_by_side()
    pixel, latent = f.names
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 6.4), layout="constrained")
    (ax_ca, ax_fd), (ax_s, ax_fl) = fig.subplots(2, 2)
    colours = {pixel: SLATE, latent: TEAL}
    width = 0.38
    for ax, values, fmt, ylabel in (
        (ax_ca, f.class_agreement, "{:g}", "class agreement (higher is better)"),
        (ax_fd, f.frechet_distance, "{:g}", "Frechet distance (lower is better)"),
        (ax_s, f.seconds_per_image, "{:g}", "seconds per image (CPU)"),
    ):
        for k, name in enumerate(f.names):
            xs = np.arange(2) + (k - 0.5) * width
            bars = ax.bar(xs, values[name], width, color=colours[name], label=name)
            for bar, value in zip(bars, values[name], strict=True):
                ax.text(bar.get_x() + width / 2, value, fmt.format(value), ha="center",
                        va="bottom", fontsize=8)  # fmt: skip
        ax.set_xticks([0, 1], ["guidance 1", "guidance 2"])
        ax.set_xlabel("DDIM, 50 steps")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_ylim(0, 1.35 * max(max(v) for v in values.values()))
        ax.spines[["top", "right"]].set_visible(False)
    floor = f.frechet_floor[latent]
    ax_fd.axhline(floor, color="k", ls=":", lw=1, label=f"real vs real digits ({floor:g})")
    ax_ca.set_title("Samples that show the asked digit", fontsize=10)
    ax_fd.set_title("Distance to held-out digits", fontsize=10)
    ax_s.set_title("Time to draw one image", fontsize=10)
    for ax in (ax_ca, ax_fd, ax_s):
        ax.legend(frameon=False, fontsize=8, loc="upper left", ncol=3)
    threads = {n: re.search(r"(\d+) threads?", text) for n, text in f.evaluated_on.items()}
    if all(threads.values()):  # the records say how many CPU threads sampled: not always equal
        ax_s.set_xlabel(
            "DDIM, 50 steps; CPU threads as recorded: "
            + ", ".join(f"{n} {m.group(1)}" for n, m in threads.items() if m)
        )
    mflops = [
        (f"{pixel}\nU-Net call", f.model_call_flops[pixel] / 1e6, SLATE),
        (f"{latent}\ndenoiser call", f.model_call_flops[latent] / 1e6, TEAL),
        (f"{latent}\ndecode (once)", f.decoder_flops / 1e6, AMBER),
    ]
    bars = ax_fl.bar(range(3), [m for _, m, _ in mflops], 0.6, color=[c for *_, c in mflops])
    for bar, (_, value, _) in zip(bars, mflops, strict=True):
        ax_fl.text(bar.get_x() + 0.3, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    ax_fl.set_xticks(range(3), [t for t, _, _ in mflops], fontsize=8)
    ax_fl.set_xlabel("one image, one forward pass")
    ax_fl.set_ylabel("MFLOPs (FlopCounterMode)", fontsize=9)
    ax_fl.set_ylim(0, 1.2 * max(m for _, m, _ in mflops))
    ax_fl.spines[["top", "right"]].set_visible(False)
    ratio = f.model_call_flops[pixel] / f.model_call_flops[latent]
    ax_fl.set_title(f"Compute per call: the latent denoiser needs {ratio:.2g}x less", fontsize=10)
    fig.suptitle(
        f"Pixel-space '{pixel}' against latent '{latent}' (quality and time: their records)"
    )
    return fig


# ----------------------------------------------------------------------------- channel count
@dataclasses.dataclass(frozen=True)
class ChannelCountResult:
    """A quick autoencoder with ``latent_channels`` channels and how well it reconstructs.

    Attributes:
        latent_channels: c of the latent grid (c x 7 x 7 numbers per digit).
        steps: training steps it had.
        seconds: how long the training took here.
        heldout_mse: :func:`~diffusion_edu.latent.reconstruction_mse` on the held-out images.
        autoencoder: the trained autoencoder (eval mode), to look at its reconstructions.
    """

    latent_channels: int
    steps: int
    seconds: float
    heldout_mse: float
    autoencoder: nn.Module


def train_channel_count(
    latent_channels: int,
    train_images: torch.Tensor,
    heldout_images: torch.Tensor,
    steps: int = 300,
    device: torch.device | str | None = None,
) -> ChannelCountResult:
    """Train a fresh :class:`~diffusion_edu.models.Autoencoder` with ``latent_channels`` channels
    for ``steps`` steps (the course's recipe, :data:`~diffusion_edu.latent.AUTOENCODER_TRAINING`,
    shortened) and measure its held-out reconstruction error.

    Rombach et al. 2022 (Sec. 4.1) weigh compression against quality with the downsampling
    factor f; here the number of channels plays that part. The warm-up is shortened to a fifth
    of the steps and the weights are used as trained, without the moving average, whose 0.995
    decay would still remember the first steps after a few hundred.

    Measured on the 4,500 bundled digits (one CPU thread, about 16-21 s per run of 300 steps),
    held-out MSE after 300 steps: 1 channel 0.060, 2: 0.049, 4: 0.050, 8: 0.054 (the shipped
    4-channel autoencoder, 2,000 steps: 0.0088). So a 300-step run only shows that one channel
    is worse; it is too short to rank 2, 4 and 8 channels, whose differences are within what a
    short run varies by.
    """
    from diffusion_edu.latent import AUTOENCODER_TRAINING, reconstruction_mse, train_autoencoder
    from diffusion_edu.models.autoencoder import AutoencoderConfig

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    config = AutoencoderConfig(latent_channels=latent_channels)  # checks latent_channels
    train = dataclasses.replace(
        AUTOENCODER_TRAINING, steps=steps, warmup_steps=steps // 5, ema_decay=None
    )
    start = time.perf_counter()
    trainer = train_autoencoder(
        train_images, config, train, device, verbose=False, progress=steps >= 100
    )
    seconds = time.perf_counter() - start
    autoencoder = trainer.ema_model.eval()  # the model itself: no moving average was kept
    mse = reconstruction_mse(autoencoder, heldout_images)
    return ChannelCountResult(latent_channels, steps, seconds, mse, autoencoder)


def _check_channel_results(
    results: Sequence[ChannelCountResult], images: torch.Tensor, caller: str
) -> tuple[list[ChannelCountResult], torch.Tensor]:
    """The results sorted by channel count, and ``images`` as a small batch, or a clear error."""
    results = list(results)
    if not results or not all(isinstance(r, ChannelCountResult) for r in results):
        raise TypeError(
            f"{caller} takes a list of ChannelCountResult, one per channel count: "
            "[train_channel_count(c, train_images, heldout_images) for c in (1, 2, 4, 8)]."
        )
    counts = [r.latent_channels for r in results]
    if len(set(counts)) != len(counts):
        raise ValueError(f"{caller}: each channel count once, got {counts}.")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not 1 <= images.shape[0] <= 12:
        raise ValueError(
            f"{caller} shows 1 to 12 digits (B, 1, 28, 28), got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
            ": pass a few held-out digits, e.g. images[:8]."
        )
    return sorted(results, key=lambda r: r.latent_channels), images.detach().float().cpu()


@torch.no_grad()
def _reconstruct_with(autoencoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    device = next(autoencoder.parameters()).device
    return autoencoder.decode(autoencoder.encode(x.to(device))).float().cpu()  # (B, C, H, W)


def plot_channel_counts(
    results: Sequence[ChannelCountResult], images: torch.Tensor, selected: int | None = None
) -> Figure:
    """Left: held-out MSE against the number of latent channels (:func:`train_channel_count`),
    the ``selected`` count marked; right: a few held-out digits (top) and that autoencoder's
    reconstructions (bottom)."""
    results, x = _check_channel_results(results, images, "plot_channel_counts")
    by_count = {r.latent_channels: r for r in results}
    chosen = by_count.get(selected if selected is not None else results[-1].latent_channels)
    if chosen is None:
        raise ValueError(f"selected must be one of the channel counts {sorted(by_count)}.")
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 3.4))
    _draw_channel_counts(fig, results, x, chosen)
    return fig


def _draw_channel_counts(
    fig: Figure, results: list[ChannelCountResult], x: torch.Tensor, chosen: ChannelCountResult
) -> None:
    # Fixed axes positions (no layout engine), so the widget can redraw in place quickly.
    n = x.shape[0]
    ax = fig.add_axes((0.08, 0.17, 0.24, 0.6))
    counts = [r.latent_channels for r in results]
    mses = [r.heldout_mse for r in results]
    ax.plot(counts, mses, "o-", color=SLATE)
    ax.plot([chosen.latent_channels], [chosen.heldout_mse], "o", color=TEAL, ms=12)  # lines[1]
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("latent channels c (c x 7 x 7 numbers)")
    ax.set_ylabel("held-out MSE")
    ax.set_title(f"error after {chosen.steps} steps", fontsize=9)
    ax.set_ylim(0, 1.15 * max(mses))
    ax.spines[["top", "right"]].set_visible(False)
    recon = _reconstruct_with(chosen.autoencoder, x)
    width = 0.6 / n
    for j in range(n):
        for row, picture in enumerate((x[j, 0], recon[j, 0])):
            a = fig.add_axes((0.38 + j * width, 0.42 - row * 0.36, width * 0.95, 0.34))
            a.imshow(to_display(picture), cmap="gray", vmin=0, vmax=1)
            _image_axes(a)
            if j == 0:
                a.set_ylabel(("original", "D(E(x))")[row], fontsize=9)
    fig.suptitle(_channel_title(chosen), fontsize=10)


def _channel_title(r: ChannelCountResult) -> str:
    return (
        f"{r.latent_channels} latent channel{'s' if r.latent_channels > 1 else ''} "
        f"({r.latent_channels * 49} numbers per digit), {r.steps} training steps: "
        f"held-out MSE {r.heldout_mse:.4f}"
    )


def channel_count_widget(results: Sequence[ChannelCountResult], images: torch.Tensor) -> LivePlot:
    """A slider over the channel counts of ``results`` (trained beforehand, so a move only
    decodes a few digits) above :func:`plot_channel_counts`' figure, changed in place.

    Args:
        results: one :func:`train_channel_count` result per channel count.
        images: ``(B, 1, 28, 28)`` a few held-out digits to reconstruct (1 to 12).
    """
    results, x = _check_channel_results(results, images, "channel_count_widget")
    by_count = {r.latent_channels: r for r in results}
    if len(by_count) < 2:
        raise ValueError("channel_count_widget needs results for at least two channel counts.")
    controls = {
        "channels": widgets.SelectionSlider(
            options=list(by_count), value=results[-1].latent_channels,
            description="latent channels", style={"description_width": "initial"},
        )
    }  # fmt: skip

    def draw(channels: int) -> Figure:
        fig = LessonFigure(figsize=(FIGURE_WIDTH, 3.4))
        _draw_channel_counts(fig, results, x, by_count[channels])
        return fig

    def update(fig: Figure, channels: int) -> None:
        chosen = by_count[channels]
        recon = _reconstruct_with(chosen.autoencoder, x)
        pictures = fig.axes[1:]  # original, reconstruction, original, ... (column by column)
        for j in range(x.shape[0]):
            pictures[2 * j + 1].images[0].set_data(to_display(recon[j, 0]))
        fig.axes[0].lines[1].set_data(  # the marker on the MSE curve
            [chosen.latent_channels], [chosen.heldout_mse]
        )
        fig._suptitle.set_text(_channel_title(chosen))

    return LivePlot(draw, controls, update=update)
