"""Lesson 04: noise schedules, compared and explored with sliders.

The maths the figures show lives in :mod:`diffusion_edu.schedules`: :func:`make_schedule` (one
entry point for the three named schedules, the widget's model) and :func:`summarize_schedule`
(where log-SNR crosses 0, how many steps are (nearly) pure noise).

* :func:`plot_schedule_comparison`, :func:`plot_noised_rows`: static figures for the lesson.
* :class:`ScheduleExplorer`: the slider widget. It builds ONE figure and, on every slider move,
  updates the lines' data in place and re-renders it to a PNG shown in an ``ipywidgets.Image``
  (works in any Jupyter front end, no ipympl needed). The noise is drawn once, so only the
  schedule changes between redraws.
"""

from __future__ import annotations

import html
import math
import time

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from diffusion_edu.forward import q_sample
from diffusion_edu.schedules import (
    PURE_NOISE_ALPHA_BAR,
    NoiseSchedule,
    log_snr_zero_crossing,
    make_schedule,
    summarize_schedule,
)
from diffusion_edu.viz.plots import (
    AMBER,
    RED,
    SLATE,
    TEAL,
    LessonFigure,
    render_png,
    to_display,
)
from diffusion_edu.viz.widgets import WidgetView, log_slider

__all__ = [
    "SCHEDULE_COLOURS",
    "evenly_spaced_timesteps",
    "plot_schedule_comparison",
    "plot_noised_rows",
    "ScheduleExplorer",
]

# One colour per schedule, used by every figure of the lesson.
SCHEDULE_COLOURS: dict[str, str] = {
    "linear": RED,
    "cosine": TEAL,
    "sigmoid": AMBER,
}
_GREY = SLATE
_LABEL_OFFSETS = {"linear": (4, -14), "cosine": (-34, 6), "sigmoid": (6, 6)}


# ----------------------------------------------------------------------------- helpers
def evenly_spaced_timesteps(T: int, n: int) -> list[int]:
    """``n`` timesteps from 0 (clean) to T (noise), evenly spaced and rounded: 0, ..., T."""
    if n < 2:
        raise ValueError(f"need n >= 2 timesteps (0 and T at least), got {n}.")
    return [round(i * T / (n - 1)) for i in range(n)]


def _noised_images(
    image: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule, ts: list[int]
) -> np.ndarray:
    """``image`` (1, H, W) noised to each t in ``ts`` with the SAME noise; (len(ts), H, W)."""
    n = len(ts)
    x0 = image.expand(n, *image.shape)  # (n, 1, H, W)
    eps = noise.expand(n, *noise.shape)  # (n, 1, H, W): one noise draw for every t
    return to_display(q_sample(x0, torch.tensor(ts), schedule, eps))  # (n, H, W)


def _as_image(image: torch.Tensor) -> torch.Tensor:
    image = torch.as_tensor(image, dtype=torch.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 1:
        raise ValueError(f"expected one grey-scale image (1, H, W), got {tuple(image.shape)}.")
    return image


# ----------------------------------------------------------------------------- static figures
def _style_axes(ax_beta, ax_ab, ax_snr, T: int) -> None:  # noqa: ANN001
    ax_beta.set(title=r"$\beta_t$: noise added at step t", xlabel="step t", ylabel=r"$\beta_t$")
    ax_ab.set(
        title=r"$\bar\alpha_t$: signal left in $x_t$",
        xlabel="step t",
        ylabel=r"$\bar\alpha_t$",
        ylim=(-0.03, 1.03),
    )
    ax_snr.set(
        title=r"log-SNR = $\log(\bar\alpha_t / (1-\bar\alpha_t))$",
        xlabel="step t",
        ylabel="log-SNR",
        ylim=(-12, 12),
    )
    ax_snr.axhline(0.0, color=_GREY, lw=0.8)
    for ax in (ax_beta, ax_ab, ax_snr):
        ax.title.set_fontsize(11)
        ax.set_xlim(0, T)
        ax.grid(alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)


def plot_schedule_comparison(
    schedules: list[NoiseSchedule] | None = None, threshold: float = PURE_NOISE_ALPHA_BAR
) -> Figure:
    """beta_t, alpha_bar_t and log-SNR of several schedules side by side.

    A dot marks where each log-SNR crosses 0; the shaded band on the alpha_bar panel is where
    the first schedule (the linear one, by default) has alpha_bar < ``threshold``.
    """
    schedules = schedules or [
        NoiseSchedule.linear(),
        NoiseSchedule.cosine(),
        NoiseSchedule.sigmoid(),
    ]
    T = max(s.T for s in schedules)
    fig = LessonFigure(figsize=(9.5, 3.4), layout="constrained")  # JupyterLab's width
    ax_beta, ax_ab, ax_snr = fig.subplots(1, 3)
    _style_axes(ax_beta, ax_ab, ax_snr, T)
    first = summarize_schedule(schedules[0], threshold)
    if first.t_pure_noise <= first.T:
        ax_ab.axvspan(first.t_pure_noise, first.T, color=_GREY, alpha=0.18, lw=0)
        ax_ab.text(
            (first.t_pure_noise + first.T) / 2,
            0.55,
            f"{schedules[0].name}:\n" + r"$\bar\alpha_t$" + f" < {threshold:g}\n(pure noise)",
            ha="center",
            fontsize=8,
            color="#444",
        )
    for sched in schedules:
        colour = SCHEDULE_COLOURS.get(sched.name, "black")
        t = np.arange(sched.T + 1)
        ax_beta.plot(t[1:], sched.betas[1:].numpy(), color=colour, lw=2, label=sched.name)
        ax_ab.plot(t, sched.alpha_bars.numpy(), color=colour, lw=2, label=sched.name)
        ax_snr.plot(t[1:], sched.log_snr[1:].clamp(-12, 12).numpy(), color=colour, lw=2)
        t_half = log_snr_zero_crossing(sched)
        if t_half <= sched.T:
            ax_snr.plot([t_half], [0.0], "o", color=colour, ms=7, mec="white")
            ax_snr.annotate(
                f"t={t_half}",
                (t_half, 0.0),
                xytext=_LABEL_OFFSETS.get(sched.name, (4, 6)),
                textcoords="offset points",
                color=colour,
                fontsize=8,
            )
    ax_beta.set_yscale("log")
    ax_beta.set_ylabel(r"$\beta_t$ (log scale)")
    ax_ab.legend(frameon=False, loc="lower left")
    fig.suptitle(f"Three noise schedules with T = {T}: how fast is the image destroyed?")
    return fig


def plot_noised_rows(
    image: torch.Tensor,
    schedules: list[NoiseSchedule] | None = None,
    n: int = 9,
    seed: int = 0,
) -> Figure:
    """The same digit, noised with the same noise, at ``n`` evenly spaced t, one row per schedule.

    Because the noise is shared, any difference between the rows is the schedule's alone.
    """
    image = _as_image(image)
    schedules = schedules or [NoiseSchedule.linear(), NoiseSchedule.cosine()]
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    side = min(1.25, 9.5 / n)  # inches per image: the row fits JupyterLab's 9.5-inch width
    fig = LessonFigure(
        figsize=(side * n, (side + 0.3) * len(schedules) + 0.5), layout="constrained"
    )
    axes = fig.subplots(len(schedules), n, squeeze=False)
    for row, sched in zip(axes, schedules, strict=True):
        ts = evenly_spaced_timesteps(sched.T, n)
        imgs = _noised_images(image, noise, sched, ts)
        for ax, img, t in zip(row, imgs, ts, strict=True):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ab = sched.alpha_bars[t].item()
            ax.set_title(f"t={t}\n" + r"$\bar\alpha$" + f"={ab:.2f}", fontsize=8)
        row[0].set_ylabel(sched.name, color=SCHEDULE_COLOURS.get(sched.name, "black"))
    fig.suptitle("One digit, one fixed noise draw, different schedules (left: x_0, right: x_T)")
    return fig


# ----------------------------------------------------------------------------- the widget
class ScheduleExplorer(WidgetView):
    """Sliders for a noise schedule, with live plots and a row of noised digits.

    Controls: schedule type, T, beta_start and beta_end (linear), s (cosine), tau (sigmoid).
    Plots: beta_t, alpha_bar_t, log-SNR (the three default schedules faintly for reference,
    yours in bold), the log-SNR = 0 step, the "pure noise" region, and one real digit noised
    at ``n_images`` evenly spaced t with noise drawn ONCE (``seed``).

    Display it by leaving it as the last expression of a cell (or ``display(explorer.widget)``).
    ``explorer.update(kind="cosine", T=200)`` moves the sliders from code; ``redraw_times``
    holds how long each redraw took (seconds).

    The figure is :data:`FIGURE_SIZE` inches at ``dpi`` (default 100: 950 x 480 pixels), and
    the picture is shown at exactly that many pixels (narrower only in a narrower window), so
    it is never stretched: JupyterLab's default output area is about 960 pixels wide.
    """

    FIGURE_SIZE = (9.5, 4.8)  # inches; 9.5 fits JupyterLab's default width at 100 dpi

    def __init__(self, image: torch.Tensor, n_images: int = 8, seed: int = 0, dpi: int = 100):
        self.image = _as_image(image)
        self.noise = torch.randn(self.image.shape, generator=torch.Generator().manual_seed(seed))
        self.n_images = n_images
        self.dpi = dpi
        self.redraw_times: list[float] = []
        self.error: str | None = None

        style = {"description_width": "90px"}

        def wide() -> widgets.Layout:  # one Layout per control: hiding one must not hide all
            return widgets.Layout(width="320px")

        self.kind = widgets.ToggleButtons(
            options=["linear", "cosine", "sigmoid"], value="linear", description="schedule"
        )
        self.T = widgets.IntSlider(
            value=1000, min=10, max=2000, step=10, description="T", style=style, layout=wide()
        )
        self.beta_start = log_slider(
            "beta_start", 1e-4, -5, -1, readout_format=".1e", style=style, layout=wide()
        )
        self.beta_end = log_slider(
            "beta_end", 0.02, -3, 0, readout_format=".3f", style=style, layout=wide()
        )
        self.s = log_slider(
            "cosine s", 0.008, -4, 0, readout_format=".4f", style=style, layout=wide()
        )
        self.tau = log_slider(
            "sigmoid tau", 1.0, -1, 1, readout_format=".2f", style=style, layout=wide()
        )
        self.status = widgets.HTML()
        width_px = round(self.FIGURE_SIZE[0] * dpi)  # shown as rendered: one PNG pixel per pixel
        self.image_widget = widgets.Image(
            format="png", width=str(width_px), layout=widgets.Layout(max_width="100%")
        )
        self._build_figure()
        for control in (self.kind, self.T, self.beta_start, self.beta_end, self.s, self.tau):
            control.observe(self._on_change, names="value")
        controls = widgets.HBox(
            [
                widgets.VBox([self.kind, self.T]),
                widgets.VBox([self.beta_start, self.beta_end, self.s, self.tau]),
            ]
        )
        self.widget = widgets.VBox([controls, self.status, self.image_widget])
        self.redraw()

    # -- figure, built once
    def _build_figure(self) -> None:
        n = self.n_images
        fig = LessonFigure(figsize=self.FIGURE_SIZE, dpi=self.dpi)
        top = fig.add_gridspec(
            1, 3, left=0.075, right=0.97, top=0.86, bottom=0.49, wspace=0.4
        )  # the three curves
        bottom = fig.add_gridspec(
            1, n, left=0.075, right=0.97, top=0.3, bottom=0.0, wspace=0.08
        )  # the row of noised digits
        ax_beta, ax_ab, ax_snr = (fig.add_subplot(top[0, i]) for i in range(3))
        _style_axes(ax_beta, ax_ab, ax_snr, 1000)
        self.axes = (ax_beta, ax_ab, ax_snr)
        # Faint reference curves: the three default schedules at the current T.
        self.ref_lines = {}
        for kind, colour in SCHEDULE_COLOURS.items():
            self.ref_lines[kind] = [
                ax.plot([], [], color=colour, lw=1.2, ls="--", alpha=0.45)[0] for ax in self.axes
            ]
        self.lines = [ax.plot([], [], lw=2.6)[0] for ax in self.axes]
        self.noise_band = ax_ab.axvspan(0, 0, color=_GREY, alpha=0.18, lw=0)
        self.half_lines = [ax.axvline(0, color="black", lw=0.9, ls=":") for ax in self.axes]
        self.half_text = ax_snr.text(0, 9, "", fontsize=9, ha="left")
        self.noise_text = ax_ab.text(0, 0.75, "", fontsize=9, ha="center", color="#444")
        handles = [self.ref_lines[k][1] for k in SCHEDULE_COLOURS] + [self.lines[1]]
        self.legend = ax_ab.legend(
            handles,
            [f"{k} (default)" for k in SCHEDULE_COLOURS] + ["yours"],
            frameon=False,
            fontsize=8,
            loc="lower left",
        )
        blank = np.zeros(tuple(self.image.shape[1:]))
        self.image_axes = [fig.add_subplot(bottom[0, i]) for i in range(n)]
        self.ims = []
        for ax in self.image_axes:
            self.ims.append(ax.imshow(blank, cmap="gray", vmin=0, vmax=1))
            ax.set_xticks([])
            ax.set_yticks([])
        self.image_axes[0].set_ylabel("x_t", rotation=0, labelpad=14)
        self.suptitle = fig.suptitle("", fontsize=12)
        self.fig = fig

    # -- interaction
    def _params(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "T": self.T.value,
            "beta_start": self.beta_start.value,
            "beta_end": self.beta_end.value,
            "s": self.s.value,
            "tau": self.tau.value,
        }

    def _on_change(self, change: dict[str, object]) -> None:
        self.redraw()

    def update(self, **values: object) -> None:
        """Set controls from code, e.g. ``update(kind="cosine", T=500)``, then redraw once."""
        names = {"kind", "T", "beta_start", "beta_end", "s", "tau"}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; choose from {sorted(names)}.")
        for name in values:  # silence observers while several values change
            getattr(self, name).unobserve(self._on_change, names="value")
        try:
            for name, value in values.items():
                getattr(self, name).value = value
        finally:
            for name in values:
                getattr(self, name).observe(self._on_change, names="value")
        self.redraw()

    def redraw(self) -> None:
        """Rebuild the schedule from the controls and update the figure's data in place."""
        start = time.perf_counter()
        params = self._params()
        kind = str(params["kind"])
        for control, used_by in (
            (self.beta_start, "linear"),
            (self.beta_end, "linear"),
            (self.s, "cosine"),
            (self.tau, "sigmoid"),
        ):
            control.layout.display = None if kind == used_by else "none"
        try:
            schedule = make_schedule(**params)  # type: ignore[arg-type]
        except ValueError as error:  # show the library's message, keep the last good plot
            self.error = str(error)
            self.status.value = (
                f"<span style='color:#b00020'><b>Not a valid schedule:</b> {error}</span>"
            )
            return
        self.error = None
        T = schedule.T
        t = np.arange(T + 1)
        for ref_kind, lines in self.ref_lines.items():
            self._set_curves(lines, t, make_schedule(ref_kind, T=T))  # type: ignore[arg-type]
        colour = SCHEDULE_COLOURS[kind]
        self._set_curves(self.lines, t, schedule)
        for line in (*self.lines, self.legend.legend_handles[-1]):
            line.set_color(colour)
        ax_beta, ax_ab, ax_snr = self.axes
        for ax in self.axes:
            ax.set_xlim(0, T)
        betas = schedule.betas[1:].numpy()
        top = max(float(betas.max()), 0.02)
        ax_beta.set_ylim(0, 1.08 * min(top, 1.0))

        summary = summarize_schedule(schedule)
        t_half = summary.t_half
        for line in self.half_lines:
            line.set_xdata([t_half, t_half])
            line.set_visible(t_half <= T)
        self.half_text.set_position((min(t_half, T) + 0.01 * T, 9))
        self.half_text.set_text(f"log-SNR = 0\nat t={t_half}" if t_half <= T else "")
        if summary.t_pure_noise <= T:
            self.noise_band.set_x(summary.t_pure_noise)
            self.noise_band.set_width(T - summary.t_pure_noise)
            self.noise_text.set_position(((summary.t_pure_noise + T) / 2, 0.62))
            self.noise_text.set_text(f"pure noise:\n{summary.pure_noise_fraction:.0%} of steps")
        else:
            self.noise_band.set_width(0)
            self.noise_text.set_text("")

        ts = evenly_spaced_timesteps(T, self.n_images)
        imgs = _noised_images(self.image, self.noise, schedule, ts)
        for ax, im, img, step in zip(self.image_axes, self.ims, imgs, ts, strict=True):
            im.set_data(img)
            ab = schedule.alpha_bars[step].item()
            ax.set_title(f"t={step}\n" + r"$\bar\alpha$" + f"={ab:.3f}", fontsize=9)
        self.suptitle.set_text(
            f"{kind} schedule, T={T}: signal and noise are equal at t={t_half} "
            f"({t_half / T:.0%} of the way)"
            if t_half <= T
            else f"{kind} schedule, T={T}: log-SNR never reaches 0 (x_T is not pure noise!)"
        )
        self.image_widget.value = render_png(self.fig, dpi=self.dpi)
        elapsed = time.perf_counter() - start
        self.redraw_times.append(elapsed)
        warn = (
            " <b>alpha_bar_T is far from 0: x_T is not pure noise, sampling from N(0, I) "
            "would start in the wrong place.</b>"
            if summary.alpha_bar_T > 0.05
            else ""
        )
        self.status.value = (
            f"<span style='color:#333'>{html.escape(str(summary).strip())} &nbsp;|&nbsp; "
            f"redrawn in {1000 * elapsed:.0f} ms.{warn}</span>"
        )

    def _set_curves(self, lines: list, t: np.ndarray, schedule: NoiseSchedule) -> None:
        beta_line, ab_line, snr_line = lines
        beta_line.set_data(t[1:], schedule.betas[1:].numpy())
        ab_line.set_data(t, schedule.alpha_bars.numpy())
        snr_line.set_data(t[1:], schedule.log_snr[1:].clamp(-12, 12).numpy())

    def time_redraws(self, repeats: int = 5) -> float:
        """Median seconds per redraw over a few different settings (for the lesson's claim)."""
        settings = [
            {"kind": "linear", "T": 1000},
            {"kind": "cosine", "T": 1000},
            {"kind": "sigmoid", "T": 500},
            {"kind": "linear", "T": 300},
            {"kind": "cosine", "T": 2000},
        ]
        before = len(self.redraw_times)
        for i in range(repeats):
            self.update(**settings[i % len(settings)])
        times = sorted(self.redraw_times[before:])
        self.update(kind="linear", T=1000)
        return times[len(times) // 2] if times else math.nan
