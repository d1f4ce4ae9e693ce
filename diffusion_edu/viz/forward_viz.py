"""Pictures, widgets and animations for lesson 02 (noise and data) and lesson 03 (the forward
process as a Markov chain).

Everything here draws what the core computes (``q_sample``, ``noise_walk``, the schedules);
the widgets return a :class:`~diffusion_edu.viz.widgets.LivePlot`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from diffusion_edu.forward import q_sample
from diffusion_edu.physics import NoiseWalk, ks_distance_to_normal
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.animation import animate_images
from diffusion_edu.viz.plots import FIGURE_WIDTH, INK_BLUE, make_grid
from diffusion_edu.viz.widgets import LivePlot, play_button

__all__ = [
    "plot_gaussian_noise",
    "plot_normalization",
    "plot_augmentations",
    "plot_noise_levels",
    "plot_snr",
    "noise_level_widget",
    "animate_forward_chain",
    "forward_chain_widget",
    "plot_chain_vs_closed_form",
    "plot_pixel_histograms",
    "plot_end_state",
]

CHAIN = INK_BLUE  # step by step (q_step)
JUMP = "#e67e22"  # closed form (q_sample)


def _normal_pdf(x: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def _hist_vs_normal(ax: Axes, values: torch.Tensor, colour: str, label: str) -> None:
    v = values.detach().flatten().float().numpy()
    ax.hist(v, bins=80, density=True, color=colour, alpha=0.6, label=label)
    grid = np.linspace(-4, 4, 400)
    ax.plot(grid, _normal_pdf(grid), color="k", lw=1.5, label="N(0, 1) density")


def _image(ax: Axes, image: torch.Tensor, title: str, nrow: int = 8) -> None:
    grid = make_grid(image[None] if image.ndim == 3 else image, nrow=nrow)
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# ============================================================================ lesson 02
def plot_gaussian_noise(noise: torch.Tensor) -> Figure:
    """Gaussian noise two ways: a histogram against the N(0, 1) density, and as an image.

    ``noise``: ``(B, 1, H, W)`` draws of ``torch.randn``; the first image is shown.
    """
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(FIGURE_WIDTH, 3.8), gridspec_kw={"width_ratios": [2, 1]}
    )
    _hist_vs_normal(left, noise, "#7f8c8d", f"{noise.numel():,} draws of torch.randn")
    left.set_xlabel("value")
    left.set_ylabel("density")
    left.set_title("the histogram of many draws follows the bell curve")
    left.legend(fontsize=8)
    right.imshow(noise[0, 0].numpy(), cmap="gray", vmin=-3, vmax=3)
    right.set_title("one 28x28 image of N(0, 1) noise", fontsize=10)
    right.set_xlabel("pixel column")
    right.set_ylabel("pixel row")
    fig.suptitle("Gaussian noise eps ~ N(0, I): every pixel an independent bell-curve draw")
    fig.tight_layout()
    return fig


def plot_normalization(raw: torch.Tensor, normalized: torch.Tensor) -> Figure:
    """Pixel values before (uint8, 0..255) and after normalising to [-1, 1], vs N(0, 1)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 3.8))
    left.hist(raw.flatten().float().numpy(), bins=64, color="#7f8c8d", density=True)
    left.set_xlabel("pixel value (uint8)")
    left.set_ylabel("density")
    left.set_title("raw MNIST pixels: 0..255")
    left.set_yscale("log")
    right.hist(
        normalized.flatten().numpy(), bins=64, density=True, color=CHAIN, alpha=0.7,
        label="normalised pixels",
    )  # fmt: skip
    grid = np.linspace(-4, 4, 400)
    right.plot(grid, _normal_pdf(grid), color="k", lw=1.5, label="N(0, 1): the noise")
    right.set_yscale("log")
    right.set_ylim(1e-3, None)
    right.set_xlabel("pixel value after x / 127.5 - 1")
    right.set_ylabel("density (log scale)")
    right.set_title("normalised: [-1, 1], the scale of the noise")
    right.legend(fontsize=8)
    fig.suptitle("Normalisation puts data and noise on the same scale")
    fig.tight_layout()
    return fig


def plot_augmentations(images: torch.Tensor, augmented: Sequence[torch.Tensor]) -> Figure:
    """Originals (top row) and several random augmentations of each (rows below).

    ``images``: ``(B, 1, H, W)`` in [-1, 1]; ``augmented``: a list of batches like it. One
    column per image; the columns narrow (to 0.9 inches for ten) to fit :data:`FIGURE_WIDTH`.
    """
    rows = [images, *augmented]
    b = images.shape[0]
    cell = min(1.3, (FIGURE_WIDTH - 0.5) / b)  # inches per image; 0.5 for the row labels
    fig, axes = plt.subplots(
        len(rows), b, figsize=(cell * b + 0.5, (cell + 0.1) * len(rows) + 0.5), squeeze=False
    )
    for r, batch in enumerate(rows):
        for c in range(b):
            ax = axes[r, c]
            _image(ax, batch[c], "")
            if c == 0:
                ax.set_ylabel("original" if r == 0 else f"random {r}", fontsize=9)
    fig.suptitle("Augmentation: small random shifts and rotations; still the same digits")
    fig.tight_layout()
    return fig


def plot_noise_levels(
    x0: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int], noise: torch.Tensor
) -> Figure:
    """Digits (rows) at several steps t (columns) of the closed form ``q_sample``.

    The columns narrow (to 1.3 inches for seven steps) to fit :data:`FIGURE_WIDTH`.
    """
    b = x0.shape[0]
    cell = min(1.4, (FIGURE_WIDTH - 0.4) / len(ts))  # inches per image; 0.4 for the row labels
    fig, axes = plt.subplots(
        b, len(ts), figsize=(cell * len(ts) + 0.4, (cell + 0.1) * b + 0.6), squeeze=False
    )
    for c, t in enumerate(ts):
        x_t = q_sample(x0, t, schedule, noise)
        keep = schedule.sqrt_alpha_bars[t].item()
        for r in range(b):
            _image(axes[r, c], x_t[r], f"t = {t}\nsignal x{keep:.2f}" if r == 0 else "")
    for r in range(b):
        axes[r, 0].set_ylabel(f"digit {r + 1}", fontsize=9)
    fig.suptitle("Noise levels: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps")
    fig.tight_layout()
    return fig


def _draw_snr_curve(ax: Axes, schedule: NoiseSchedule, marks: Sequence[int]) -> None:
    t = np.arange(1, schedule.T + 1)
    snr = schedule.snr[1:].numpy()
    ax.semilogy(t, snr, color=CHAIN, lw=2)
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.text(schedule.T * 0.98, 1.3, "SNR = 1: as much noise as signal", ha="right", fontsize=8)
    for m in marks:
        if m >= 1:
            ax.semilogy([m], [schedule.snr[m].item()], "o", color=JUMP, ms=7)
    ax.set_xlabel("step t")
    ax.set_ylabel("SNR(t) = alpha_bar / (1 - alpha_bar)")
    ax.set_xlim(0, schedule.T)


def plot_snr(
    x0: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int], noise: torch.Tensor
) -> Figure:
    """The signal-to-noise ratio against t (top) with one digit at the marked steps (below).

    The digits sit seven to a row (1.3 inches each), so the figure fits :data:`FIGURE_WIDTH`;
    more steps wrap onto further rows.
    """
    cols = max(1, min(len(ts), 7))
    rows = math.ceil(len(ts) / cols)
    fig = plt.figure(figsize=(min(FIGURE_WIDTH, 1.6 * cols + 1), 4.1 + 1.7 * rows))
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[4.1] + [1.7] * rows)
    top = fig.add_subplot(grid[0, :])
    _draw_snr_curve(top, schedule, ts)
    top.set_title(f"Signal-to-noise ratio of the {schedule.name} schedule (log scale)")
    for i, t in enumerate(ts):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        x_t = q_sample(x0[:1], t, schedule, noise[:1])
        snr = schedule.snr[t].item()
        _image(ax, x_t[0], f"t = {t}\nSNR = {snr:.2g}" if t > 0 else "t = 0\nSNR = inf")
    fig.tight_layout()
    return fig


def _pixel_histogram(ax: Axes, values: torch.Tensor, colour: str, label: str) -> StepPatch:
    """A pixel histogram (density) over [-4, 4] that a widget can refill in place."""
    counts, edges = _histogram(values)
    stairs = ax.stairs(counts, edges, fill=True, color=colour, alpha=0.6, label=label)
    grid = np.linspace(-4, 4, 400)
    ax.plot(grid, _normal_pdf(grid), color="k", lw=1.5, label="N(0, 1) density")
    ax.set_xlim(-4, 4)
    _fit_height(ax, counts)
    ax.set_xlabel("pixel value")
    ax.set_ylabel("density")
    return stairs


def _fit_height(ax: Axes, counts: np.ndarray) -> None:
    ax.set_ylim(0, max(0.5, 1.05 * float(counts.max())))  # at least N(0, 1)'s peak, 0.4


def _refill(ax: Axes, values: torch.Tensor) -> None:
    counts = _histogram(values)[0]
    ax.patches[0].set_data(counts)
    _fit_height(ax, counts)


def _histogram(values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    v = values.detach().flatten().float().numpy()
    return np.histogram(v, bins=80, range=(-4, 4), density=True)


def noise_level_widget(x0: torch.Tensor, schedule: NoiseSchedule, seed: int = 0) -> LivePlot:
    """A slider (and play button) for the step t: the noisy digits, the SNR, the pixel histogram.

    The same noise is used at every t, so you see one digit fade rather than new noise. The
    figure is drawn once and updated in place (a slider move redraws in about 0.1 s).
    """
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    t_slider = widgets.IntSlider(
        value=schedule.T // 4, min=0, max=schedule.T, step=1, description="step t"
    )
    play = play_button(t_slider, step=max(1, schedule.T // 50))

    def texts(t: int) -> tuple[str, str, str]:
        snr = schedule.snr[t].item() if t > 0 else math.inf
        ab = schedule.alpha_bars[t].item()
        return (
            f"x_t at t = {t}",
            f"SNR(t = {t}) = {snr:.3g}",
            f"keep sqrt(alpha_bar) = {math.sqrt(ab):.3f} of the signal, "
            f"noise std sqrt(1 - alpha_bar) = {math.sqrt(1 - ab):.3f}",
        )

    def draw(t: int) -> Figure:
        x_t = q_sample(x0, t, schedule, noise)
        fig, axes = plt.subplots(
            1, 3, figsize=(9.6, 3.4), gridspec_kw={"width_ratios": [1.0, 1.3, 1.1]}
        )
        image_title, snr_title, caption = texts(t)
        _image(axes[0], x_t[:16], image_title, nrow=4)
        axes[0].set_xlabel("the digits, noised")
        _draw_snr_curve(axes[1], schedule, [])
        axes[1].semilogy([max(t, 1)], [schedule.snr[max(t, 1)].item()], "o", color=JUMP, ms=7)
        axes[1].set_title(snr_title, fontsize=10)
        axes[1].set_ylabel("SNR(t) (log scale)")
        _pixel_histogram(axes[2], x_t, CHAIN, "pixels of x_t")
        axes[2].set_title("pixel histogram", fontsize=10)
        axes[2].legend(fontsize=7, loc="upper right")
        fig.suptitle(caption, fontsize=10)
        fig.tight_layout()
        return fig

    def update(fig: Figure, t: int) -> None:
        x_t = q_sample(x0, t, schedule, noise)
        image_title, snr_title, caption = texts(t)
        image_ax, snr_ax, hist_ax = fig.axes
        image_ax.images[0].set_data(make_grid(x_t[:16], nrow=4))
        image_ax.set_title(image_title, fontsize=9)
        snr_ax.lines[-1].set_data([max(t, 1)], [schedule.snr[max(t, 1)].item()])
        snr_ax.set_title(snr_title, fontsize=10)
        _refill(hist_ax, x_t)
        fig._suptitle.set_text(caption)

    return LivePlot(draw, {"t": t_slider}, extra=[play], update=update)


# ============================================================================ lesson 03
def animate_forward_chain(walk: NoiseWalk, nrow: int = 8) -> str:
    """HTML animation of digits dissolving, one saved step per frame (from ``noise_walk``)."""
    titles = [f"forward chain, t = {int(t)}" for t in walk.ts]
    return animate_images(list(walk.states), titles=titles, nrow=nrow, interval_ms=120)


def forward_chain_widget(walk: NoiseWalk) -> LivePlot:
    """A slider over the saved steps of a chain: the images and their pixel histogram."""
    ts = [int(t) for t in walk.ts]
    t_slider = widgets.SelectionSlider(
        options=ts, value=ts[min(len(ts) - 1, len(ts) // 4)], description="step t"
    )

    def draw(t: int) -> Figure:
        x_t = walk.states[ts.index(t)]
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(9.5, 3.8), gridspec_kw={"width_ratios": [1.0, 1.1]}
        )
        _image(left, x_t[:16], f"x_{t}, reached one q_step at a time", nrow=4)
        left.set_xlabel("the digits")
        _pixel_histogram(right, x_t, CHAIN, f"pixels of x_{t}")
        right.set_title("two bumps (ink, background) melt into one", fontsize=10)
        right.legend(fontsize=8)
        fig.suptitle(f"The forward Markov chain at step t = {t}")
        fig.tight_layout()
        return fig

    def update(fig: Figure, t: int) -> None:
        x_t = walk.states[ts.index(t)]
        left, right = fig.axes
        left.images[0].set_data(make_grid(x_t[:16], nrow=4))
        left.set_title(f"x_{t}, reached one q_step at a time", fontsize=9)
        _refill(right, x_t)
        right.patches[0].set_label(f"pixels of x_{t}")
        right.legend(fontsize=8)
        fig._suptitle.set_text(f"The forward Markov chain at step t = {t}")

    return LivePlot(draw, {"t": t_slider}, update=update)


def plot_chain_vs_closed_form(
    ts: torch.Tensor,
    chain_states: torch.Tensor,
    jump_states: torch.Tensor,
    schedule: NoiseSchedule,
    theory: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Figure:
    """Mean and variance of all pixel values vs t: step by step, in one jump, and exact.

    ``chain_states`` / ``jump_states``: ``(K, B, ...)`` at steps ``ts`` (K of them).
    ``theory``: optional exact (mean, variance) for every t = 0..T.
    """
    fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 3.8))
    t_np = ts.numpy()
    for ax, stat, name in (
        (axes[0], lambda s: s.flatten(1).mean(dim=1), "mean"),
        (axes[1], lambda s: s.flatten(1).var(dim=1), "variance"),
    ):
        if theory is not None:
            exact = theory[0] if name == "mean" else theory[1]
            ax.plot(np.arange(schedule.T + 1), exact.numpy(), color="k", lw=1, label="exact")
        ax.plot(t_np, stat(chain_states).numpy(), "o", color=CHAIN, ms=6, mfc="none",
                label="t x q_step (chain)")  # fmt: skip
        ax.plot(t_np, stat(jump_states).numpy(), "x", color=JUMP, ms=6,
                label="q_sample (one jump)")  # fmt: skip
        ax.set_xlabel("step t")
        ax.set_ylabel(f"{name} of pixel values of x_t")
        ax.set_title(f"{name}: the two ways agree")
        ax.legend(fontsize=8)
    axes[1].axhline(1.0, color="0.5", ls=":")
    fig.suptitle("Step by step vs closed form, over many digits")
    fig.tight_layout()
    return fig


def plot_pixel_histograms(
    chain: NoiseWalk, jump_states: torch.Tensor, schedule: NoiseSchedule, x0_value: float
) -> Figure:
    """Histograms of ONE pixel (many copies, start ``x0_value``) at the saved steps, both ways.

    The exact density of x_t given x_0 is N(sqrt(alpha_bar_t) x_0, 1 - alpha_bar_t) (Eq. 4).
    At most three panels to a row (four make two rows of two), so the figure fits
    :data:`FIGURE_WIDTH`.
    """
    ks = [k for k, t in enumerate(chain.ts) if int(t) > 0]
    rows = max(1, math.ceil(len(ks) / 3))
    cols = max(1, math.ceil(len(ks) / rows))
    width = min(4.0, FIGURE_WIDTH / cols)  # inches per panel
    fig, grid = plt.subplots(rows, cols, figsize=(width * cols, 2.7 * rows + 0.5), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(ks) :]:
        ax.remove()  # the unused cells of the last row
    for ax, k in zip(axes, ks, strict=False):
        t = int(chain.ts[k])
        ab = schedule.alpha_bars[t].item()
        mean, std = math.sqrt(ab) * x0_value, math.sqrt(1 - ab)
        lo, hi = mean - 4.5 * std, mean + 4.5 * std
        bins = np.linspace(lo, hi, 50)
        ax.hist(chain.states[k].flatten().numpy(), bins=bins, density=True, color=CHAIN,
                alpha=0.5, label="chain")  # fmt: skip
        ax.hist(jump_states[k].flatten().numpy(), bins=bins, density=True, histtype="step",
                color=JUMP, lw=2, label="closed form")  # fmt: skip
        grid = np.linspace(lo, hi, 300)
        ax.plot(grid, _normal_pdf(grid, mean, std), color="k", lw=1, label="exact")
        ax.set_title(f"t = {t}: N({mean:.2f}, {std:.2f}^2)", fontsize=10)
        ax.set_xlabel("pixel value x_t")
        ax.set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"One pixel starting at x_0 = {x0_value:g}, many times: both ways, same law")
    fig.tight_layout()
    return fig


def plot_end_state(x_T: torch.Tensor, max_points: int = 20000) -> Figure:
    """Is x_T standard normal? Histogram vs density, a quantile-quantile plot, the KS distance."""
    values = x_T.detach().flatten().double()
    ks = ks_distance_to_normal(values)
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 4))
    _hist_vs_normal(left, values, CHAIN, "pixels of x_T")
    left.set_xlabel("pixel value")
    left.set_ylabel("density")
    left.set_title("histogram vs the N(0, 1) density")
    left.legend(fontsize=8)
    sorted_v = values.sort().values
    n = sorted_v.numel()
    idx = torch.linspace(0, n - 1, min(n, max_points)).round().long()
    probs = (idx.double() + 0.5) / n
    normal_q = torch.special.ndtri(probs)
    right.plot(normal_q.numpy(), sorted_v[idx].numpy(), ".", ms=2, color=CHAIN)
    right.plot([-4.5, 4.5], [-4.5, 4.5], color="k", lw=1, ls="--", label="perfect match")
    right.set_xlabel("quantile of N(0, 1)")
    right.set_ylabel("quantile of the pixels of x_T")
    right.set_title("quantile-quantile plot: on the line = Gaussian")
    right.legend(fontsize=8)
    typical = 0.87 / math.sqrt(n)
    fig.suptitle(
        f"End of the chain vs N(0, I): KS distance {ks:.4f} (about {typical:.4f} is typical "
        f"for {n:,} true N(0, 1) draws)"
    )
    fig.tight_layout()
    return fig
