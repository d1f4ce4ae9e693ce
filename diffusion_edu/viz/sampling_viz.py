"""Pictures for lesson 08 (sampling): what generation costs against what it buys, and where
in t the noise is hard to predict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from diffusion_edu.metrics import NoiseErrorCurve, SamplingCost, SamplingCostSweep
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.plots import AMBER, FIGURE_WIDTH, INK_BLUE, RED, SLATE, TEAL, LessonFigure

__all__ = ["SAMPLER_COLORS", "plot_sampling_cost", "plot_noise_prediction_error"]

# One colour per sampler, the same in every figure of the lesson.
SAMPLER_COLORS: dict[str, str] = {"ddpm": RED, "ddim": INK_BLUE, "dpm-solver++": TEAL}
_LABELS = {"ddpm": "DDPM (ancestral)", "ddim": "DDIM (eta 0)", "dpm-solver++": "DPM-Solver++(2M)"}


def plot_sampling_cost(
    results: SamplingCostSweep | Sequence[SamplingCost],
    highlight: Sequence[tuple[str, int]] = (),
) -> Figure:
    """Three panels against the number of steps (log axis), one line per sampler: seconds
    per image, class agreement, and Frechet distance with the real-vs-real floor as a band.

    Args:
        results: :func:`~diffusion_edu.metrics.load_sampling_cost`'s sweep, or a list of
            :class:`~diffusion_edu.metrics.SamplingCost`.
        highlight: ``(sampler, steps)`` runs to ring in every panel, e.g.
            ``[("dpm-solver++", 15), ("ddim", 50)]``.
    """
    costs = tuple(results.costs if isinstance(results, SamplingCostSweep) else results)
    if not costs:
        raise ValueError("no results to plot: give a sweep or a non-empty list of SamplingCost.")
    runs = {(c.sampler, c.steps): c for c in costs}
    missing = [h for h in highlight if tuple(h) not in runs]
    if missing:
        raise ValueError(f"cannot highlight {missing}: no such (sampler, steps) in the results.")
    samplers = list(dict.fromkeys(c.sampler for c in costs))
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 0.1, 3.6), layout="constrained")
    ax_time, ax_agree, ax_fd = fig.subplots(1, 3, sharex=True)
    floor = float(np.mean([c.frechet_floor for c in costs]))
    low = min(c.frechet_floor_low for c in costs)
    high = max(c.frechet_floor_high for c in costs)
    ax_fd.axhspan(low, high, color=SLATE, alpha=0.25, lw=0, label="real vs real (range)")
    ax_fd.axhline(floor, color=SLATE, lw=1, ls="--")
    for name in samplers:
        mine = sorted((c for c in costs if c.sampler == name), key=lambda c: c.steps)
        steps = [c.steps for c in mine]
        style = dict(color=SAMPLER_COLORS.get(name, AMBER), marker="o", ms=4, lw=1.5,
                     label=_LABELS.get(name, name))  # fmt: skip
        ax_time.plot(steps, [c.seconds_per_image for c in mine], **style)
        ax_agree.plot(steps, [100 * c.class_agreement for c in mine], **style)
        ax_fd.plot(steps, [c.frechet_distance for c in mine], **style)
    for sampler, k in highlight:
        c = runs[(sampler, k)]
        ring = dict(s=140, facecolors="none", edgecolors=AMBER, linewidths=2, zorder=5)
        ax_time.scatter([k], [c.seconds_per_image], **ring)
        ax_agree.scatter([k], [100 * c.class_agreement], **ring)
        ax_fd.scatter([k], [c.frechet_distance], **ring)
    ax_time.set_yscale("log")
    for ax in (ax_time, ax_agree, ax_fd):
        ax.set_xscale("log")
        ax.set_xlabel("steps (log scale)")
        ax.grid(alpha=0.3, which="both", lw=0.5)
    ax_time.set(ylabel="seconds per image (log)", title="Cost")
    ax_agree.set(ylabel="class agreement (%)", title="Legible as the digit asked for?")
    ax_fd.set(
        ylabel="Frechet distance (lower: more like real)", title="Like real digits, as a set?"
    )
    ax_time.legend(fontsize=8, loc="upper left")
    ax_fd.legend(fontsize=8, loc="upper right")
    n = "/".join(str(k) for k in sorted({c.n for c in costs}))
    guidance = "/".join(f"{g:g}" for g in sorted({c.guidance for c in costs}))
    fig.suptitle(f"What sampling costs and what it buys ({n} digits, guidance {guidance})")
    return fig


def plot_noise_prediction_error(
    curve: NoiseErrorCurve,
    ideal: NoiseErrorCurve | None = None,
    schedule: NoiseSchedule | None = None,
    label: str = "model",
    ideal_label: str = "best possible",
) -> Figure:
    """Where is the noise hard to predict? The eps error against t, and the same error as an
    error of x0 (``eps_mse = SNR * x0_mse``), with the best possible curve if given.

    ``schedule`` adds a top axis with the noise level sqrt(1 - alpha_bar_t) of x_t.
    """
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 0.1, 3.5), layout="constrained")
    ax_eps, ax_x0 = fig.subplots(1, 2)
    curves = [(curve, label, INK_BLUE, "-")]
    if ideal is not None:
        curves.append((ideal, ideal_label, TEAL, "--"))
    for c, name, color, ls in curves:
        ax_eps.plot(c.timesteps, c.eps_mse, color=color, ls=ls, marker="o", ms=3, label=name)
        ax_x0.plot(c.timesteps, c.x0_mse, color=color, ls=ls, marker="o", ms=3, label=name)
    ax_eps.axhline(1.0, color=SLATE, lw=1, ls=":", label="eps_hat = 0 (knows nothing)")
    ax_eps.set(xlabel="timestep t (more noise ->)", ylabel="mean (eps_hat - eps)^2",
               title="Error in the predicted noise", ylim=(0, 1.1))  # fmt: skip
    ax_x0.set_yscale("log")
    ax_x0.set(xlabel="timestep t (more noise ->)", ylabel="mean (x0_hat - x0)^2 (log)",
              title="The same error, as an error of x0 = eps error / SNR")  # fmt: skip
    ax_eps.legend(fontsize=8)
    ax_x0.legend(fontsize=8)
    if schedule is not None:
        t = np.arange(schedule.T + 1)
        noise = schedule.sqrt_one_minus_alpha_bars.numpy()  # increasing in t
        top = ax_eps.secondary_xaxis(
            "top",
            functions=(lambda x: np.interp(x, t, noise), lambda s: np.interp(s, noise, t)),
        )
        top.set_xticks([0.1, 0.5, 0.9, 0.99])
        top.set_xlabel("noise level sqrt(1 - alpha_bar_t)", fontsize=8)
    fig.suptitle("Where is the noise hard to predict?")
    return fig
