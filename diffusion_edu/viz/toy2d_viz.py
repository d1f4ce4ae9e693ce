"""Lesson 05: pictures of the 2-D toy: point clouds, score fields (arrows), the reverse flow.

Every function returns a matplotlib Figure (or HTML for animations); the slider widget
:class:`ScoreFieldExplorer` re-renders one figure in place, like lesson 04's schedule widget.
Later sections: conditional samples and a guidance slider (:func:`guidance_explorer`), the
hyperparameter grid (:func:`plot_hyperparameter_sweep`, :func:`plot_sweep_losses`) and its
train-it-yourself widget (:class:`HyperparameterTrainer`), and data quality
(:func:`plot_data_quality`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from diffusion_edu.forward import q_sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import (
    HyperparameterSweep,
    ToyRunResult,
    sample_points,
    score_field,
    train_and_sample_toy,
)
from diffusion_edu.viz.animation import animate_frames
from diffusion_edu.viz.plots import (
    AMBER,
    INK_BLUE,
    RED,
    SLATE,
    TEAL,
    LessonFigure,
    render_png,
    square_axes,
)
from diffusion_edu.viz.widgets import FigureImage, LivePlot, WidgetView, log_slider

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
    "CLASS_COLOURS",
    "plot_conditional_samples",
    "guidance_explorer",
    "plot_hyperparameter_sweep",
    "plot_sweep_losses",
    "plot_toy_run",
    "HyperparameterTrainer",
    "plot_data_quality",
]

DATA_COLOUR = SLATE  # grey-blue: the real data, always in the background
SAMPLE_COLOUR = RED  # red: noisy points / generated samples
CLASS_COLOURS = (TEAL, AMBER, INK_BLUE)  # class 0, 1, 2 of a labelled data set
ARROW_CMAP = "viridis"
LIM = 1.6
PER_ROW = 3  # panels per row: three ~3-inch panels fill JupyterLab's ~9.5 inches legibly


def _square(ax, lim: float = LIM) -> None:  # noqa: ANN001
    square_axes(ax, lim, "x[0]", "x[1]")
    ax.grid(alpha=0.2)


def _grid_shape(n: int, per_row: int = PER_ROW) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: at most ``per_row`` a row, the rows as even as can be
    (4 panels: 2 x 2, 5: 2 x 3 with one empty)."""
    rows = math.ceil(n / per_row)
    return rows, math.ceil(n / rows)


def _panel_axes(fig: Figure, n: int, per_row: int = PER_ROW) -> list[Axes]:
    """``n`` axes on a :func:`_grid_shape` grid, read like text (left to right, then the next
    row); the grid's spare panels are hidden."""
    axes = fig.subplots(*_grid_shape(n, per_row), squeeze=False).flatten()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


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
    """The forward process on the point cloud: x_t ~ q(x_t | x_0) at several t (DDPM Eq. 4).

    At most three panels per row (read like text), so five t fit JupyterLab's width.
    """
    noise = torch.randn(data.shape, generator=torch.Generator().manual_seed(seed))
    rows, cols = _grid_shape(len(ts))
    fig = LessonFigure(figsize=(2.9 * cols, 2.9 * rows + 0.4), layout="constrained")
    axes = _panel_axes(fig, len(ts))
    for ax, t in zip(axes, ts, strict=True):
        x_t = q_sample(data, t, schedule, noise)
        ax.scatter(x_t[:, 0], x_t[:, 1], s=2, color=SAMPLE_COLOUR if t else DATA_COLOUR)
        _square(ax, 3.0)
        ab = schedule.alpha_bars[t].item()
        ax.set_title(f"t={t}  " + r"$\bar\alpha_t$" + f"={ab:.2f}")
    fig.suptitle("Forward process: the ink drop spreads (x_0 first, x_T last)")
    return fig


def _draw_losses(ax: Axes, losses: Sequence[float], window: int, zero_label: str) -> None:
    """Loss per batch, its moving average over ``window`` steps, and the untrained level 1."""
    arr = np.asarray(losses, dtype=float)
    ax.plot(arr, color=DATA_COLOUR, lw=0.6, label="per batch")
    if len(arr) >= window:
        smooth = np.convolve(arr, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(arr)), smooth, color=SAMPLE_COLOUR, lw=2,
                label=f"moving average ({window})")  # fmt: skip
    ax.axhline(1.0, color="black", ls=":", lw=1, label=zero_label)


def plot_loss_curve(losses: Sequence[float], window: int = 50) -> Figure:
    """Training loss per step, with a moving average."""
    fig = LessonFigure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    _draw_losses(ax, losses, window, zero_label="predict eps_hat = 0 (loss 1)")
    ax.set(
        xlabel="training step",
        ylabel=r"MSE of $\hat\epsilon$ against $\epsilon$",
        title="Noise estimation: how well the MLP predicts the noise",
    )
    ax.set_ylim(0, max(1.2, float(np.percentile(losses, 99)) if len(losses) else 1.2))
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
    At most three panels per row, read like text (four t: 2 x 2), one colour bar for all.
    """
    rows, cols = _grid_shape(len(ts))
    side = min(3.3, 8.4 / cols)  # three a row: smaller panels, so the colour bar fits too
    fig = LessonFigure(figsize=(side * cols + 0.9, side * rows + 0.4), layout="constrained")
    axes = _panel_axes(fig, len(ts))
    for ax, t in zip(axes, ts, strict=True):
        q = _draw_field(ax, model, schedule, data, t)
        ax.set_title(f"t={t}  " + r"$\bar\alpha_t$" + f"={schedule.alpha_bars[t].item():.2f}")
    fig.colorbar(q, ax=axes, shrink=0.8, label="log10 |score|")
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
        self.image_widget = widgets.Image(
            format="png", width=str(round(5 * dpi)), layout=widgets.Layout(max_width="100%")
        )  # shown at the size it is drawn at, never stretched
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
        self.image_widget.value = render_png(self.fig, dpi=self.dpi)
        self.redraw_times.append(time.perf_counter() - start)


def _snapshot_indices(n_frames: int, k: int) -> list[int]:
    return sorted({round(i * (n_frames - 1) / (k - 1)) for i in range(k)})


def plot_reverse_snapshots(
    xs: torch.Tensor, timesteps: Sequence[int], data: torch.Tensor, k: int = 6
) -> Figure:
    """``k`` snapshots of the reverse process (``xs``: (S+1, B, 2), x_T first, x_0 last).

    At most three panels per row, read like text (left to right, then the next row), so six
    snapshots fit JupyterLab's default width (9.5 inches) at a legible size.
    """
    idx = _snapshot_indices(xs.shape[0], k)
    rows, cols = _grid_shape(len(idx))
    fig = LessonFigure(figsize=(3.1 * cols, 3.1 * rows + 0.4), layout="constrained")
    axes = _panel_axes(fig, len(idx))  # an odd number of snapshots leaves the last one empty
    for ax, i in zip(axes, idx, strict=True):
        ax.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.35)
        ax.scatter(xs[i, :, 0], xs[i, :, 1], s=3, color=SAMPLE_COLOUR)
        _square(ax, 3.0)
        ax.set_title(f"t={timesteps[i]}")
    fig.suptitle("Reverse process: iterative denoising from x_T (first panel) to x_0 (last)")
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


# ----------------------------------------------------------------------------- the "prompt"
def _own_class_fraction(
    samples: torch.Tensor, label: int, data: torch.Tensor, labels: torch.Tensor
) -> float:
    """Fraction of samples whose nearest data point has class ``label``."""
    nearest = torch.cdist(samples.float(), data.float()).argmin(dim=1)
    return (labels[nearest] == label).float().mean().item()


def plot_conditional_samples(
    samples_by_label: Mapping[int, torch.Tensor],
    data: torch.Tensor,
    labels: torch.Tensor,
    title: str = "Conditional generation: the label is the prompt",
) -> Figure:
    """One panel per requested label: the samples (red) over the data coloured by class.

    Each panel's title gives the fraction of samples whose nearest data point has the
    requested class.
    """
    fig = LessonFigure(figsize=(4.2 * len(samples_by_label), 4.4), layout="constrained")
    axes = fig.subplots(1, len(samples_by_label), squeeze=False)[0]
    classes = sorted(int(c) for c in labels.unique())
    for ax, (label, pts) in zip(axes, samples_by_label.items(), strict=True):
        for c in classes:
            mask = labels == c
            colour = CLASS_COLOURS[c % len(CLASS_COLOURS)]
            ax.scatter(
                data[mask, 0],
                data[mask, 1],
                s=2,
                color=colour,
                alpha=0.35,
                label=f"data, class {c}",
            )
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color=SAMPLE_COLOUR, label="samples")
        _square(ax, 1.5)
        frac = _own_class_fraction(pts, label, data, labels)
        ax.set_title(f"prompt: label = {label}\n{frac:.0%} of samples land on class {label}")
        ax.legend(loc="lower left", fontsize=8, frameon=False, markerscale=3)
    fig.suptitle(title)
    return fig


def guidance_explorer(
    model: nn.Module,
    schedule: NoiseSchedule,
    data: torch.Tensor,
    labels: torch.Tensor,
    n: int = 300,
    seed: int = 0,
) -> LivePlot:
    """A guidance-scale slider (0..5) over class-conditional samples of a 2-D toy model.

    Classifier-free guidance (Ho & Salimans 2022): ``eps = eps_uncond + w (eps_cond -
    eps_uncond)``. w = 0 ignores the prompt, w = 1 is the plain conditional model, w > 1
    pushes the samples further towards "what makes this class this class".
    """
    classes = sorted(int(c) for c in labels.unique())

    def draw(guidance: float) -> Figure:
        samples = {
            c: sample_points(model, schedule, labels=[c] * n, guidance=guidance, seed=seed)
            for c in classes
        }
        return plot_conditional_samples(
            samples, data, labels, f"Classifier-free guidance, w = {guidance:g}"
        )

    slider = widgets.FloatSlider(
        value=1.0,
        min=0.0,
        max=5.0,
        step=0.5,
        description="guidance w",
        continuous_update=False,
        layout=widgets.Layout(width="420px"),
    )
    return LivePlot(draw, {"guidance": slider})


# ----------------------------------------------------------------------------- hyperparameters
def _run_title(run: ToyRunResult) -> str:
    d = "diverged" if not math.isfinite(run.distance) else f"{run.distance:.3f}"
    return f"{run.label}\ndistance to data: {d}"


def plot_hyperparameter_sweep(sweep: HyperparameterSweep, data: torch.Tensor) -> Figure:
    """The samples of every run of a sweep on a grid: rows = learning rates, columns = batch
    sizes; each title gives the mean distance of the samples to the data (lower is better)."""
    rows, cols = len(sweep.lrs), len(sweep.batch_sizes)
    fig = LessonFigure(figsize=(3.4 * cols, 3.5 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, lr in enumerate(sweep.lrs):
        for j, bs in enumerate(sweep.batch_sizes):
            run, ax = sweep.get(lr, bs), axes[i][j]
            ax.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.35)
            pts = run.samples.clamp(-1.95, 1.95)  # points that flew off: drawn on the frame
            ax.scatter(pts[:, 0], pts[:, 1], s=3, color=SAMPLE_COLOUR)
            _square(ax, 2.0)
            ax.set_title(_run_title(run), fontsize=9)
    steps = sweep.results[0].steps
    fig.suptitle(
        f"Same model, same seed, {steps} steps: only lr (rows) and batch size differ\n"
        "(samples that flew off are drawn on the frame's edge)"
    )
    return fig


def plot_sweep_losses(sweep: HyperparameterSweep, window: int = 20) -> Figure:
    """Loss curves of a sweep: one panel per learning rate (at most three a row), one line per
    batch size (moving average over ``window`` steps, faint raw curve behind)."""
    rows, cols = _grid_shape(len(sweep.lrs))
    fig = LessonFigure(figsize=(3.1 * cols, 2.9 * rows + 0.3), layout="constrained")
    axes = _panel_axes(fig, len(sweep.lrs))
    colours = (RED, INK_BLUE, TEAL, AMBER)
    for ax, lr in zip(axes, sweep.lrs, strict=True):
        for k, bs in enumerate(sweep.batch_sizes):
            arr = np.asarray(sweep.get(lr, bs).losses, dtype=float)
            colour = colours[k % len(colours)]
            ax.plot(arr, color=colour, lw=0.5, alpha=0.35)
            if len(arr) >= window:
                smooth = np.convolve(arr, np.ones(window) / window, mode="valid")
                ax.plot(
                    np.arange(window - 1, len(arr)),
                    smooth,
                    color=colour,
                    lw=1.8,
                    label=f"batch {bs}",
                )
        ax.axhline(1.0, color="black", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set(xlabel="training step", ylabel="loss (log scale)", title=f"lr = {lr:.0e}")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle("Loss curves: a bigger batch averages more examples, so its loss is smoother")
    return fig


def plot_toy_run(run: ToyRunResult, data: torch.Tensor, window: int = 20) -> Figure:
    """One run of :func:`~diffusion_edu.toy2d.train_and_sample_toy`: loss curve and samples."""
    fig = LessonFigure(figsize=(9, 3.8), layout="constrained")
    ax_loss, ax_pts = fig.subplots(1, 2, width_ratios=[1.4, 1])
    _draw_losses(ax_loss, run.losses, window, zero_label="eps_hat = 0")
    ax_loss.set_yscale("log")
    ax_loss.set(
        xlabel="training step",
        ylabel="loss (log scale)",
        title=f"{run.schedule} schedule, T={run.T}, {run.steps} steps ({run.seconds:.1f} s)",
    )
    ax_loss.legend(frameon=False, fontsize=8)
    ax_pts.scatter(data[:, 0], data[:, 1], s=2, color=DATA_COLOUR, alpha=0.35)
    pts = run.samples.clamp(-1.95, 1.95)  # points that flew off: drawn on the frame
    ax_pts.scatter(pts[:, 0], pts[:, 1], s=3, color=SAMPLE_COLOUR)
    _square(ax_pts, 2.0)
    ax_pts.set_title(_run_title(run), fontsize=9)
    fig.suptitle("Your training run: loss (left) and samples over the data (right)")
    return fig


class HyperparameterTrainer(WidgetView):
    """Learning rate, batch size, schedule and T controls, and a Train button.

    Pressing Train trains a fresh toy model for ``steps`` steps with those settings (seeded,
    so the same settings give the same result) and shows :func:`plot_toy_run`. Nothing is
    trained until the button is pressed (or :meth:`train` is called): after a run, moving a
    control makes the status line say that the picture is still the last run's.
    """

    def __init__(
        self, data: torch.Tensor, steps: int = 600, n_samples: int = 500, seed: int = 0
    ) -> None:
        self.data, self.steps, self.n_samples, self.seed = data, steps, n_samples, seed
        self.last_run: ToyRunResult | None = None
        self.last_figure: Figure | None = None
        style = {"description_width": "90px"}
        self.lr = log_slider(
            "learning rate", 1e-2, -5, 0, step=0.25, readout_format=".0e", style=style
        )
        self.batch_size = widgets.Dropdown(
            options=[4, 16, 64, 256, 1024], value=256, description="batch size", style=style
        )
        self.schedule = widgets.Dropdown(
            options=["cosine", "linear"], value="cosine", description="schedule", style=style
        )
        self.T = widgets.Dropdown(
            options=[25, 50, 100, 200], value=100, description="T", style=style
        )
        self.button = widgets.Button(description=f"Train ({steps} steps)", button_style="primary")
        self.button.on_click(lambda _: self.train())
        self.status = widgets.Label("Choose settings and press Train.")
        self.image = FigureImage()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.lr, self.batch_size]),
                widgets.HBox([self.schedule, self.T]),
                widgets.HBox([self.button, self.status]),
                self.image.widget,
            ]
        )
        self._done_message = ""
        for control in (self.lr, self.batch_size, self.schedule, self.T):
            control.observe(self._on_setting_change, names="value")

    def _settings(self) -> tuple[float, int, str, int]:
        return (self.lr.value, self.batch_size.value, self.schedule.value, self.T.value)

    def _on_setting_change(self, change: object = None) -> None:
        """After a run, say whether the picture still matches the controls (it changes only on
        Train: training takes seconds, so it does not follow every click)."""
        run = self.last_run
        if run is None:  # nothing shown yet; the status already says to press Train
            return
        lr, batch_size, schedule, T = self._settings()
        shown = (run.batch_size, run.schedule, run.T)
        if math.isclose(lr, run.lr) and (batch_size, schedule, T) == shown:  # back to the run's
            self.status.value = self._done_message
        else:
            self.status.value = (
                f"press Train for lr={lr:.0e}, batch {batch_size}, {schedule}, T={T} "
                f"(the picture is lr={run.lr:.0e}, batch {run.batch_size}, {run.schedule}, "
                f"T={run.T})"
            )

    def train(self) -> ToyRunResult:
        """Train with the controls' current values, show the result, and return it."""
        self.status.value = "training..."
        run = train_and_sample_toy(
            self.data,
            lr=self.lr.value,
            batch_size=self.batch_size.value,
            schedule=self.schedule.value,
            T=self.T.value,
            steps=self.steps,
            n_samples=self.n_samples,
            seed=self.seed,
        )
        self.last_run = run
        self.last_figure = fig = plot_toy_run(run, self.data)
        self.image.show(fig)
        d = "diverged" if not math.isfinite(run.distance) else f"{run.distance:.3f}"
        self._done_message = f"done in {run.seconds:.1f} s; distance to data {d}"
        self.status.value = self._done_message
        return run


# ----------------------------------------------------------------------------- data quality
def plot_data_quality(
    train_sets: Mapping[str, torch.Tensor],
    samples: Mapping[str, torch.Tensor],
    notes: Mapping[str, str] | None = None,
    lim: float = 1.6,
) -> Figure:
    """Top row: what each model was trained on; bottom row: what it generates.

    ``train_sets`` and ``samples`` share their keys (the panel names); ``notes`` adds a line
    (e.g. a measurement) under each bottom title.
    """
    names = list(train_sets)
    fig = LessonFigure(figsize=(3.1 * len(names), 6.9), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    for j, name in enumerate(names):
        train = train_sets[name]
        big = train.shape[0] <= 50  # a tiny data set: draw its points large
        axes[0][j].scatter(train[:, 0], train[:, 1], s=40 if big else 2, color=INK_BLUE)
        axes[0][j].set_title(f"trained on: {name}\n({train.shape[0]} points)", fontsize=10)
        pts = samples[name]
        axes[1][j].scatter(pts[:, 0], pts[:, 1], s=3, color=SAMPLE_COLOUR, alpha=0.6)
        if big:
            axes[1][j].scatter(
                train[:, 0],
                train[:, 1],
                s=60,
                facecolors="none",
                edgecolors=INK_BLUE,
                lw=1.2,
                label="training points",
            )
            axes[1][j].legend(loc="lower left", fontsize=8, frameon=False)
        note = f"\n{notes[name]}" if notes and name in notes else ""
        axes[1][j].set_title(f"generated ({pts.shape[0]} samples){note}", fontsize=10)
        for ax in (axes[0][j], axes[1][j]):
            _square(ax, lim)
    fig.suptitle("Garbage in, garbage out; too little data and the model copies it")
    return fig
