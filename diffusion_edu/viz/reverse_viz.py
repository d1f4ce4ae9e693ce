"""Pictures, widgets and animations for lesson 08 (sampling: running the reverse process).

Everything here draws what the core computes: the samplers' loop
(:func:`~diffusion_edu.samplers.sample_steps`, :func:`~diffusion_edu.samplers.sample`,
:func:`~diffusion_edu.samplers.sdedit`) and the classifier's verdicts. The widgets return a
:class:`~diffusion_edu.viz.widgets.LivePlot`; the ones that sample digits show a quick preview
(a few solver steps) first, then the picture asked for.

* :func:`animate_reverse`, :func:`plot_reverse_snapshots`: x_t next to the predicted x_0, step
  by step, for several samplers from the same x_T.
* :func:`variability_widget`: DDIM's eta and steps on several runs from one x_T.
* :func:`plot_interpolation`, :func:`morph_widget`: digits made from slerp (and lerp) mixes of
  two starting noises.
* :func:`digit_grid_widget`: ten digits under any sampler, steps, eta and guidance.
* :func:`sdedit_widget`, :func:`plot_sdedit_strip`: SDEdit's trade between the original and
  the new label.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from diffusion_edu.classifier import classifier_predictions
from diffusion_edu.samplers import Trajectory, sample, sdedit
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.animation import animate_frames
from diffusion_edu.viz.plots import FIGURE_WIDTH, LessonFigure, make_grid
from diffusion_edu.viz.widgets import LivePlot, play_button

__all__ = [
    "SAMPLER_NAMES",
    "animate_reverse",
    "plot_reverse_snapshots",
    "variability_widget",
    "plot_interpolation",
    "morph_widget",
    "digit_grid_widget",
    "sdedit_widget",
    "plot_sdedit_strip",
]

# How the lesson names each sampler (the library's name -> the papers').
SAMPLER_NAMES: dict[str, str] = {
    "ddpm": "DDPM",
    "ddim": "DDIM",
    "dpm-solver++": "DPM-Solver++(2M)",
}
NoisePredictor = Callable[..., torch.Tensor]


def _sampler_name(sampler: str, steps: int | None, T: int) -> str:
    if sampler == "ddpm":
        return f"DDPM-{T}"
    return f"{SAMPLER_NAMES.get(sampler, sampler)}-{steps}"


# ----------------------------------------------------------------------------- sampling
def _from(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    labels: Sequence[int] | None,
    sampler: str,
    steps: int | None,
    eta: float,
    guidance: float,
    seed: int,
    guidance_interval: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The library's ``sample`` from the given x_T, on the CPU (the widgets' one call)."""
    images = sample(model, schedule, labels=labels, sampler=sampler, steps=steps, eta=eta,  # type: ignore[arg-type]
                    guidance=guidance, guidance_interval=guidance_interval, seed=seed, x_T=x_T,
                    progress=False)  # fmt: skip
    return images.cpu()  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- watching it
def _frame_times(trajectories: Mapping[str, Trajectory], frames: int) -> list[int]:
    """Timesteps every trajectory visits (the coarsest one's), thinned to about ``frames``."""
    common = set.intersection(*(set(tr.timesteps) for tr in trajectories.values()))
    ts = sorted(common, reverse=True)  # T ... 0
    if len(ts) <= frames:
        return ts
    keep = torch.linspace(0, len(ts) - 1, frames).round().long().unique().tolist()
    return [ts[i] for i in keep]


def _state_at(trajectory: Trajectory, t: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, x0_hat at t) of image ``index``; at t = 0, x0_hat is the finished image."""
    i = trajectory.timesteps.index(t)
    x_t = trajectory.xs[i, index]  # (C, H, W)
    x0_hat = trajectory.x0_hats[i, index] if i < len(trajectory.x0_hats) else x_t
    return x_t, x0_hat


def _check_trajectories(trajectories: Mapping[str, Trajectory], index: int) -> None:
    if not trajectories:
        raise ValueError("give at least one trajectory, e.g. {'DDPM': sample(..., "
                         "return_trajectory=True)}.")  # fmt: skip
    for name, tr in trajectories.items():
        if not isinstance(tr, Trajectory):
            raise TypeError(f"{name!r}: expected a Trajectory (sample(..., return_trajectory="
                            f"True)), got {type(tr).__name__}.")  # fmt: skip
        if not 0 <= index < tr.xs.shape[1]:
            raise ValueError(f"index {index} is not an image of {name!r} ({tr.xs.shape[1]}).")
    if not set.intersection(*(set(tr.timesteps) for tr in trajectories.values())) - {0}:
        raise ValueError("the trajectories share no timestep to show side by side.")


def _panel(ax: Axes, image: torch.Tensor, title: str) -> None:
    ax.imshow(make_grid(image[None]), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def animate_reverse(
    trajectories: Mapping[str, Trajectory],
    index: int = 0,
    frames: int = 40,
    interval_ms: int = 150,
) -> str:
    """One digit's x_t next to its predicted x_0, step by step, one row per sampler.

    ``trajectories``: name -> :class:`~diffusion_edu.samplers.Trajectory`, e.g. DDPM and DDIM
    from the same x_T. Each frame shows every row at the same timestep t (one the coarsest
    sampler visits), so the rows are comparable; about ``frames`` frames in all. Returns HTML
    (an offline JavaScript player): show it with ``IPython.display.HTML``.
    """
    _check_trajectories(trajectories, index)
    ts = _frame_times(trajectories, frames)
    rows = len(trajectories)
    fig, axes = plt.subplots(rows, 2, figsize=(4.6, 2.3 * rows + 0.5), squeeze=False)
    images = []
    for r, (name, tr) in enumerate(trajectories.items()):
        x_t, x0_hat = _state_at(tr, ts[0], index)
        _panel(axes[r, 0], x_t, f"{name}: x_t")
        _panel(axes[r, 1], x0_hat, f"{name}: predicted x_0")
        images.append((axes[r, 0].images[0], axes[r, 1].images[0]))
    title = fig.suptitle("")
    fig.tight_layout()

    def update(k: int) -> list:
        t = ts[k]
        for (im_t, im_0), tr in zip(images, trajectories.values(), strict=True):
            x_t, x0_hat = _state_at(tr, t, index)
            im_t.set_data(make_grid(x_t[None]))
            im_0.set_data(make_grid(x0_hat[None]))
        title.set_text(f"t = {t}" + ("  (finished)" if t == 0 else ""))
        return [title]

    update(0)
    anim = animation.FuncAnimation(fig, update, frames=len(ts), interval=interval_ms)
    return animate_frames(anim)


def plot_reverse_snapshots(
    trajectories: Mapping[str, Trajectory], index: int = 0, n: int = 6
) -> Figure:
    """x_t (top row of each pair) and predicted x_0 (below) at ``n`` shared timesteps.

    The still version of :func:`animate_reverse`: one pair of rows per sampler, columns from
    t = T (left) to t = 0 (right).
    """
    _check_trajectories(trajectories, index)
    ts = _frame_times(trajectories, n)
    rows = 2 * len(trajectories)
    cell = min(1.25, (FIGURE_WIDTH - 1.6) / len(ts))
    fig = LessonFigure(figsize=(cell * len(ts) + 1.6, (cell + 0.25) * rows + 0.5))
    axes = fig.subplots(rows, len(ts), squeeze=False)
    for r, (name, tr) in enumerate(trajectories.items()):
        for c, t in enumerate(ts):
            x_t, x0_hat = _state_at(tr, t, index)
            _panel(axes[2 * r, c], x_t, f"t = {t}")
            _panel(axes[2 * r + 1, c], x0_hat, "")
        short = textwrap.fill(name, 16)  # row labels stay in the left margin
        axes[2 * r, 0].set_ylabel(f"{short}\nx_t", fontsize=8)
        axes[2 * r + 1, 0].set_ylabel(f"{short}\npredicted x_0", fontsize=8)
    fig.suptitle("The reverse process: the noisy x_t and the model's guess of the clean x_0")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- DDIM's eta
def _row_figure(images: torch.Tensor, title: str, ncol: int | None = None) -> Figure:
    """A light figure for widgets: one image grid and a title, at most FIGURE_WIDTH wide."""
    ncol = ncol or images.shape[0]
    nrows = -(-images.shape[0] // ncol)
    width = min(FIGURE_WIDTH, 0.95 * ncol + 0.3)
    fig = LessonFigure(figsize=(width, width / ncol * nrows + 0.5))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.45 / (width / ncol * nrows + 0.5)))
    ax.imshow(make_grid(images, nrow=ncol), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    fig.suptitle(title, fontsize=10, y=0.995, va="top")
    return fig


def variability_widget(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    label: int,
    n: int = 6,
    guidance: float = 2.0,
    seed: int = 0,
    steps: Sequence[int] = (5, 10, 20, 50),
    guidance_interval: tuple[int, int] | None = None,
) -> LivePlot:
    """``n`` DDIM runs from ONE starting noise x_T (same label), with sliders for eta and steps.
    ``guidance`` applies where ``guidance_interval`` says (``sample``'s argument: every step
    when None).

    DDIM (Song et al. 2021), Eq. 16: the fresh noise per step has standard deviation
    sigma = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t /
    alpha_bar_prev). At eta = 0 every run is the same image; as eta grows the runs differ.
    The title prints the largest pixel difference between the runs.
    """
    x_T = torch.randn((1, 1, 28, 28), generator=torch.Generator().manual_seed(seed))
    x_T = x_T.expand(n, -1, -1, -1).contiguous()  # (n, 1, 28, 28): n copies of one x_T
    labels = [label] * n
    eta_slider = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="eta",
                                     continuous_update=False)  # fmt: skip
    steps_slider = widgets.SelectionSlider(options=list(steps), value=steps[-1] if 20 not in steps
                                           else 20, description="DDIM steps",
                                           continuous_update=False)  # fmt: skip

    def draw(eta: float, steps: int) -> Figure:
        images = _from(model, schedule, x_T, labels, "ddim", steps, eta, guidance, seed + 1,
                       guidance_interval)  # fmt: skip
        spread = (images - images[:1]).abs().amax().item()
        title = f"DDIM-{steps}, eta = {eta:.1f}: {n} runs from one x_T, max difference {spread:.3g}"
        return _row_figure(images, title)

    return LivePlot(draw, {"eta": eta_slider, "steps": steps_slider})


# ----------------------------------------------------------------------------- interpolation
def plot_interpolation(
    rows: Mapping[str, torch.Tensor], weights: Sequence[float], norms: Mapping[str, Sequence[float]]
) -> Figure:
    """Digits made from mixes of two starting noises: one row per way of mixing them.

    ``rows``: name (e.g. "slerp", "lerp") -> images (len(weights), 1, H, W); ``norms``: the
    same names -> the norm of each mixed x_T divided by sqrt(D) (1 for typical N(0, I) noise).
    """
    if not rows or any(v.shape[0] != len(weights) for v in rows.values()):
        raise ValueError("give one row of len(weights) images per way of mixing.")
    cols = len(weights)
    cell = min(1.0, (FIGURE_WIDTH - 0.9) / cols)
    fig = LessonFigure(figsize=(cell * cols + 0.9, (cell + 0.45) * len(rows) + 0.5))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, w in enumerate(weights):
            _panel(axes[r, c], images[c], f"w = {w:.2f}\n|x_T| = {norms[name][c]:.2f}")
        axes[r, 0].set_ylabel(name, fontsize=10)
    fig.suptitle("Digits from mixed starting noise: x_T = mix(noise a, noise b, w)")
    fig.tight_layout()
    return fig


def morph_widget(frames: torch.Tensor, weights: Sequence[float], title: str = "") -> LivePlot:
    """A slider (and play button) through already drawn morph frames (N, 1, H, W)."""
    if frames.shape[0] != len(weights) or len(weights) < 2:
        raise ValueError(f"need one frame per weight (at least 2): {frames.shape[0]} frames, "
                         f"{len(weights)} weights.")  # fmt: skip
    slider = widgets.IntSlider(value=0, min=0, max=len(weights) - 1, description="frame",
                               continuous_update=True)  # fmt: skip
    play = play_button(slider, interval_ms=200)

    def draw(frame: int) -> Figure:
        fig = LessonFigure(figsize=(3.2, 3.5))
        ax = fig.add_axes((0.05, 0.02, 0.9, 0.82))
        ax.imshow(make_grid(frames[frame : frame + 1], pad=0), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
        fig.suptitle(f"{title}\nw = {weights[frame]:.2f}".strip(), fontsize=10)
        return fig

    return LivePlot(draw, {"frame": slider}, extra=[play])


# ----------------------------------------------------------------------------- the ten digits
def digit_grid_widget(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    labels: Sequence[int] = tuple(range(10)),
    seed: int = 0,
    samplers: Sequence[str] = ("dpm-solver++", "ddim"),
    steps: int = 15,
    guidance: float = 2.0,
    preview_steps: int = 3,
    guidance_interval: tuple[int, int] | None = None,
) -> LivePlot:
    """Ten digits (one per label, the same x_T throughout) under the sampler, steps, eta and
    guidance the controls pick; the guidance slider's w applies where ``guidance_interval``
    says (``sample``'s argument: every step when None; the titles say which).

    Each change first shows a quick preview (DPM-Solver++ with ``preview_steps`` steps, same
    guidance), then the picture asked for; every picture is kept, so coming back is instant.
    DDPM is not offered: its 1000 steps take tens of seconds per redraw on a laptop CPU.
    """
    if preview_steps < 1:
        raise ValueError(f"preview_steps must be >= 1, got {preview_steps}.")
    n = len(labels)
    x_T = torch.randn((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))
    style = {"description_width": "initial"}
    options = dict(continuous_update=False, style=style)
    controls = {
        "sampler": widgets.Dropdown(
            options=[(SAMPLER_NAMES[s], s) for s in samplers], value=samplers[0],
            description="sampler", style=style,
        ),
        "steps": widgets.IntSlider(value=steps, min=5, max=50, step=5, description="steps",
                                   **options),
        "eta": widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.25,
                                   description="eta (DDIM)", **options),
        "guidance": widgets.FloatSlider(value=guidance, min=0.0, max=5.0, step=0.5,
                                        description="guidance w", **options),
    }  # fmt: skip
    kept: dict[tuple, torch.Tensor] = {}  # samples by the settings that change them

    def draw(
        sampler: str, steps: int, eta: float, guidance: float, preview: bool = False
    ) -> Figure:
        used_eta = eta if sampler == "ddim" else 0.0  # only DDIM has an eta
        key = (sampler, steps, used_eta, guidance)
        if key not in kept:
            kept[key] = _from(model, schedule, x_T, labels, sampler, steps, used_eta,
                              guidance, seed + 1, guidance_interval)  # fmt: skip
        name = _sampler_name(sampler, steps, schedule.T)
        where = "" if guidance_interval is None else " at {} < t <= {}".format(*guidance_interval)
        if preview:
            title = (f"quick preview ({name}, guidance {guidance:g}{where}): drawing the full "
                     "picture...")  # fmt: skip
        else:
            noise = f", eta {eta:g}" if sampler == "ddim" else f" (eta {eta:g}: DDIM only)"
            title = f"Digits {labels[0]}-{labels[-1]}: {name}{noise}, guidance {guidance:g}{where}"
        return _row_figure(kept[key], title, ncol=n)

    def preview(values: dict) -> dict:
        return {**values, "sampler": "dpm-solver++", "steps": preview_steps, "eta": 0.0,
                "preview": True}  # fmt: skip

    return LivePlot(draw, controls, preview=preview)


# ----------------------------------------------------------------------------- SDEdit
def _verdicts(images: torch.Tensor) -> list[int]:
    return classifier_predictions(images.cpu()).tolist()


def sdedit_widget(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    originals: torch.Tensor,
    new_labels: Sequence[int],
    t_values: Sequence[int],
    steps: int | None = None,
    guidance: float = 2.0,
    seed: int = 0,
    guidance_interval: tuple[int, int] | None = None,
) -> LivePlot:
    """A slider for SDEdit's t*: real digits (top row), noised to t* (middle), and denoised
    under a new label (bottom), with the classifier's reading of each result. ``guidance``
    applies where ``guidance_interval`` says (every step when None).

    Meng et al. 2022 (SDEdit), Sec. 3: small t* keeps the original (its style *and* its
    class), large t* obeys the new label but forgets the original.
    """
    if originals.shape[0] != len(new_labels):
        raise ValueError(f"one new label per original: {originals.shape[0]} originals, "
                         f"{len(new_labels)} labels.")  # fmt: skip
    slider = widgets.SelectionSlider(options=list(t_values), value=t_values[len(t_values) // 2],
                                     description="t*", continuous_update=False)  # fmt: skip

    def draw(t_star: int) -> Figure:
        result = sdedit(model, schedule, originals, t_star, labels=list(new_labels), steps=steps,
                        guidance=guidance, guidance_interval=guidance_interval, seed=seed,
                        return_trajectory=True)  # fmt: skip
        assert isinstance(result, Trajectory)
        reads = _verdicts(result.images)
        b = originals.shape[0]
        fig = LessonFigure(figsize=(min(FIGURE_WIDTH, 1.3 * b + 1.4), 4.6))
        axes = fig.subplots(3, b, squeeze=False)
        for i in range(b):
            _panel(axes[0, i], originals[i], "original" if i == 0 else "")
            _panel(axes[1, i], result.xs[0, i], f"x_t* (t* = {t_star})" if i == 0 else "")
            ok = "yes" if reads[i] == new_labels[i] else "no"
            _panel(axes[2, i], result.images[i],
                   f"asked {new_labels[i]}, reads {reads[i]} ({ok})")  # fmt: skip
        fig.suptitle(f"SDEdit: noise to t* = {t_star} of {schedule.T}, then denoise under the "
                     "new label")  # fmt: skip
        fig.tight_layout()
        return fig

    return LivePlot(draw, {"t_star": slider})


def plot_sdedit_strip(
    original: torch.Tensor,
    results: Mapping[int, torch.Tensor],
    new_label: int,
    old_label: int,
) -> Figure:
    """One real digit, then SDEdit's result at each t* (columns), the classifier's reading below.

    ``results``: t* -> the edited image (1, H, W) or (H, W).
    """
    ts = list(results)
    images = torch.stack([results[t].reshape(original.shape) for t in ts])  # (n, 1, H, W)
    reads = _verdicts(images)
    cols = len(ts) + 1
    cell = min(1.15, (FIGURE_WIDTH - 0.2) / cols)
    fig = LessonFigure(figsize=(cell * cols + 0.2, cell + 1.1))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    _panel(axes[0], original, f"original\n(a {old_label})")
    for ax, t, read in zip(axes[1:], ts, reads, strict=True):
        _panel(ax, images[ts.index(t)], f"t* = {t}")
        verdict = "new" if read == new_label else ("old" if read == old_label else "other")
        ax.set_xlabel(f"reads {read} ({verdict})", fontsize=9)
    fig.suptitle(f"SDEdit from a real {old_label}, asking for a {new_label}: the classifier's "
                 "reading under each")  # fmt: skip
    fig.tight_layout()
    return fig
