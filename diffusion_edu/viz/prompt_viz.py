"""Pictures and widgets for lesson 09 (prompts and guidance).

Everything here draws what the core computes: the samplers (:func:`~diffusion_edu.sample`),
the score of lesson 05 (:func:`~diffusion_edu.toy2d.eps_to_score`), the tokenizer and the
attribute functions of :mod:`diffusion_edu.text`, a text model's cross-attention weights
(``model.cross_attention_maps``) and the classifier's verdicts.

* :func:`guided_scores`, :func:`plot_guided_score_field`: what the guidance scale w does to
  the score field of lesson 05's labelled 2-D toy.
* :func:`plot_guidance_grid`: digits from the same noise at several w, one row per w.
* :func:`plot_guidance_curve`, :func:`plot_guidance_intervals`: the measured guidance record
  (``data/results/guidance.json``).
* :func:`plot_prompt_grid`: several prompts from the same noises, each digit with its measured
  stroke width and slant.
* :func:`plot_attribute_map`: the measured stroke width and slant of real digits, the
  thresholds that turn them into words, and example captions.
* :func:`attention_over_steps`, :func:`plot_cross_attention`: which pixels attend to which
  word, at several steps of one sampling run.
* :func:`prompt_divergence`, :func:`plot_prompt_divergence`: two prompts from the same noise,
  step by step: where do they part?
* :func:`prompt_widget`: type a prompt, move w, keep or change the noise.
"""

from __future__ import annotations

import html
import json
import math
import textwrap
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import nn

from diffusion_edu.classifier import classifier_predictions
from diffusion_edu.data import require_data_file
from diffusion_edu.samplers import Trajectory, sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.text import (
    BOLD_ABOVE,
    LEFT_BELOW,
    RIGHT_ABOVE,
    THIN_BELOW,
    UPRIGHT_WITHIN,
    PromptError,
    prompt_tokens,
    slant,
    stroke_thickness,
    tokenize,
    vocabulary_text,
)
from diffusion_edu.toy2d import eps_to_score
from diffusion_edu.viz.plots import (
    AMBER,
    FIGURE_WIDTH,
    INK_BLUE,
    RED,
    SLATE,
    TEAL,
    LessonFigure,
    make_grid,
)
from diffusion_edu.viz.widgets import LivePlot, WidgetView

__all__ = [
    "guided_scores",
    "plot_guided_score_field",
    "plot_guidance_grid",
    "GUIDANCE_RESULTS_FILE",
    "GuidanceRun",
    "GuidanceRecord",
    "load_guidance_record",
    "plot_guidance_curve",
    "plot_guidance_intervals",
    "plot_prompt_grid",
    "plot_attribute_map",
    "AttentionRun",
    "attention_over_steps",
    "plot_cross_attention",
    "PromptDivergence",
    "prompt_divergence",
    "plot_prompt_divergence",
    "prompt_following_table",
    "PromptExplorer",
    "prompt_widget",
]

NoisePredictor = Callable[..., torch.Tensor]
CLASS_COLOURS = (TEAL, AMBER)  # the two moons: lesson 05's colours
ARROW_CMAP = "viridis"
ATTENTION_CMAP = "magma"
TOY_LIM = 1.6


def _panel(ax: Axes, image: torch.Tensor, title: str = "") -> None:
    ax.imshow(make_grid(image[None] if image.ndim == 3 else image), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- the score field
@torch.no_grad()
def guided_scores(
    model: nn.Module,
    schedule: NoiseSchedule,
    t: int,
    label: int,
    guidance: Sequence[float] = (3.0,),
    lim: float = TOY_LIM,
    n: int = 17,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scores of a labelled 2-D toy model on an ``n x n`` grid at step ``t``.

    With ``s = -eps_hat / sqrt(1 - alpha_bar_t)`` (lesson 05; Song et al. 2021, Sec. 3.3), the
    guided estimate ``eps_uncond + w (eps_cond - eps_uncond)`` is the score
    ``s_uncond + w (s_cond - s_uncond)`` (Ho & Salimans 2022, Sec. 3.2): the unconditional
    score plus w times the gradient of an *implicit classifier*, ``grad log p(c | x_t) =
    s_cond - s_uncond`` (Bayes: p(c | x) is proportional to p(x | c) / p(x)).

    Returns ``(points (n*n, 2), scores)``, where ``scores`` has ``"w = 0"`` (unconditional),
    ``"classifier"`` (s_cond - s_uncond), ``"w = 1"`` (conditional) and ``"w = <g>"`` for each
    ``g`` in ``guidance``, each ``(n*n, 2)``.
    """
    null = getattr(model, "null_label", None)
    if null is None:
        raise ValueError("the model has no 'no label' class (null_label): train it with labels.")
    if not 1 <= t <= schedule.T:
        raise ValueError(f"t must be in 1..{schedule.T}, got {t}.")
    axis = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (n*n, 2)
    t_batch = torch.full((points.shape[0],), t, dtype=torch.long)
    eps_cond = model(points, t_batch, torch.full_like(t_batch, label))
    eps_uncond = model(points, t_batch, torch.full_like(t_batch, null))
    s_cond, s_uncond = eps_to_score(eps_cond, t, schedule), eps_to_score(eps_uncond, t, schedule)
    scores = {"w = 0": s_uncond, "classifier": s_cond - s_uncond, "w = 1": s_cond}
    for w in guidance:
        scores[f"w = {w:g}"] = s_uncond + w * (s_cond - s_uncond)
    return points, scores


def plot_guided_score_field(
    model: nn.Module,
    schedule: NoiseSchedule,
    data: torch.Tensor,
    labels: torch.Tensor,
    label: int,
    t: int,
    guidance: float = 3.0,
) -> Figure:
    """Four score fields of a labelled 2-D toy at step ``t`` (arrows of unit length, colour =
    log10 of the length, one scale for all four): unconditional (w = 0), the implicit
    classifier's gradient ``s_cond - s_uncond``, conditional (w = 1) and guided (w =
    ``guidance``). The data sit underneath, the requested class in colour."""
    points, scores = guided_scores(model, schedule, t, label, (guidance,))
    names = ["w = 0", "classifier", "w = 1", f"w = {guidance:g}"]
    titles = {
        "w = 0": "w = 0: unconditional score s_uncond",
        "classifier": "s_cond - s_uncond: the implicit\nclassifier's grad log p(c | x_t)",
        "w = 1": "w = 1: conditional score s_cond",
        f"w = {guidance:g}": f"w = {guidance:g}: s_uncond + {guidance:g} (s_cond - s_uncond)",
    }
    lengths = {k: scores[k].norm(dim=1).clamp(min=1e-8) for k in names}
    logs = torch.cat([lengths[k].log10() for k in names])
    norm = Normalize(vmin=float(logs.min()), vmax=float(logs.max()))
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 1.0, 8.2), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    quiver = None
    for ax, name in zip(axes, names, strict=True):
        for c in sorted(int(v) for v in labels.unique()):
            mask = labels == c
            ax.scatter(data[mask, 0], data[mask, 1], s=2, alpha=0.45 if c == label else 0.15,
                       color=CLASS_COLOURS[c % 2] if c == label else SLATE)  # fmt: skip
        unit = (scores[name] / lengths[name][:, None]).numpy()
        quiver = ax.quiver(points[:, 0], points[:, 1], unit[:, 0], unit[:, 1],
                           lengths[name].log10().numpy(), cmap=ARROW_CMAP, norm=norm,
                           scale=24, width=0.006)  # fmt: skip
        ax.set_xlim(-TOY_LIM, TOY_LIM)
        ax.set_ylim(-TOY_LIM, TOY_LIM)
        ax.set_aspect("equal")
        ax.set_xlabel("x_t[0]")
        ax.set_ylabel("x_t[1]")
        ax.set_title(titles[name], fontsize=10)
    fig.colorbar(quiver, ax=axes, shrink=0.6, label="log10 |score|")
    ab = schedule.alpha_bars[t].item()
    fig.suptitle(f"Guidance in the score field: label {label} (coloured moon), t = {t} "
                 f"(alpha_bar_t = {ab:.2f})")  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- guidance grid
def plot_guidance_grid(
    images_by_w: Mapping[float, torch.Tensor],
    asked: Sequence[int] | None = None,
    title: str = "The same starting noise at several guidance scales w",
) -> Figure:
    """One row of digits per guidance scale w (all rows from the same x_T), each image
    captioned with the digit the classifier reads (``asked``: the digits asked for, to mark
    the right ones "ok")."""
    if not images_by_w:
        raise ValueError("give at least one row: {w: images (N, 1, H, W)}.")
    sizes = {v.shape[0] for v in images_by_w.values()}
    if len(sizes) != 1:
        raise ValueError(f"every row needs the same number of images, got {sorted(sizes)}.")
    n = sizes.pop()
    if asked is not None and len(asked) != n:
        raise ValueError(f"{len(asked)} asked digits for rows of {n} images.")
    cell = min(0.95, (FIGURE_WIDTH - 1.0) / n)
    rows = len(images_by_w)
    fig = LessonFigure(figsize=(cell * n + 1.0, (cell + 0.3) * rows + 0.6))
    axes = fig.subplots(rows, n, squeeze=False)
    for r, (w, images) in enumerate(images_by_w.items()):
        reads = classifier_predictions(images.cpu()).tolist()
        for c in range(n):
            ax = axes[r, c]
            _panel(ax, images[c].cpu())
            ok = asked is None or reads[c] == asked[c]
            ax.set_xlabel(f"reads {reads[c]}", fontsize=8, color="black" if ok else RED)
        axes[r, 0].set_ylabel(f"w = {w:g}", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the record
GUIDANCE_RESULTS_FILE = "results/guidance.json"


@dataclass(frozen=True)
class GuidanceRun:
    """One scored run of ``scripts/measure_guidance.py``: n class-balanced digits sampled with
    one setting and seed, and what they scored (class agreement; Frechet distance against the
    500 held-out digits, and its ratio to the real-vs-real floor at the same n)."""

    setting: str
    sampler: str
    steps: int
    guidance: float
    guidance_interval: tuple[int, int] | None
    eta: float
    seed: int
    n: int
    class_agreement: float
    frechet_distance: float
    fd_over_floor: float
    meets_goal: bool
    model_calls_per_image: int
    seconds_per_image: float

    @classmethod
    def from_json(cls, run: Mapping[str, Any]) -> GuidanceRun:
        interval = run.get("guidance_interval")
        fields = {k: run[k] for k in cls.__dataclass_fields__ if k != "guidance_interval"}
        return cls(guidance_interval=None if interval is None else (int(interval[0]),
                   int(interval[1])), **fields)  # fmt: skip


@dataclass(frozen=True)
class GuidanceRecord:
    """``data/results/guidance.json``: every run, the real-vs-real floor (``floor``: n, mean,
    low, high of its draws), the goal, and how and where it was measured."""

    runs: tuple[GuidanceRun, ...]
    floor: Mapping[str, float]
    goal: str
    commands: tuple[str, ...]
    machine: str
    date: str
    notes: tuple[str, ...] = ()

    def curve(self, sampler: str = "ddim", steps: int = 50) -> list[GuidanceRun]:
        """The full-guidance runs (no interval, eta 0) of one sampler, by increasing w."""
        runs = [r for r in self.runs if r.sampler == sampler and r.steps == steps
                and r.guidance_interval is None and r.eta == 0.0]  # fmt: skip
        return sorted(runs, key=lambda r: (r.guidance, r.seed))

    def matching(self, **settings: Any) -> list[GuidanceRun]:
        """The runs whose setting has these values, e.g. ``matching(**info.recommended)``
        (``sample()``'s keyword arguments; a missing ``guidance_interval`` means None)."""
        wanted = {"guidance_interval": None, "eta": 0.0, **settings}
        if wanted["guidance_interval"] is not None:
            wanted["guidance_interval"] = tuple(wanted["guidance_interval"])
        return [r for r in self.runs
                if all(getattr(r, k) == v for k, v in wanted.items() if hasattr(r, k))]  # fmt: skip


def load_guidance_record(path: str | Path | None = None) -> GuidanceRecord:
    """The guidance measurements of ``scripts/measure_guidance.py`` (lesson 09), from
    ``data/results/guidance.json`` (the library's data helper finds it) or ``path``."""
    if path is None:
        path = require_data_file(
            GUIDANCE_RESULTS_FILE,
            "measure it again with scripts/measure_guidance.py --curve --grid",
        )
    try:
        record = json.loads(Path(path).read_text())
        return GuidanceRecord(
            runs=tuple(GuidanceRun.from_json(r) for r in record["runs"]),
            floor=dict(record["frechet_floor"]),
            goal=record.get("goal", ""),
            commands=tuple(record.get("commands", ())),
            machine=record.get("machine", ""),
            date=record.get("date", ""),
            notes=tuple(record.get("notes", ())),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(f"{path}: not a guidance results file ({error}).") from None


def _mean_by(runs: Sequence[GuidanceRun], key: Callable[[GuidanceRun], Any]) -> dict:
    """Runs grouped by ``key``: {key: (mean agreement, mean FD, mean FD/floor, runs)}."""
    groups: dict[Any, list[GuidanceRun]] = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return {
        k: (float(np.mean([r.class_agreement for r in g])),
            float(np.mean([r.frechet_distance for r in g])),
            float(np.mean([r.fd_over_floor for r in g])), g)
        for k, g in groups.items()
    }  # fmt: skip


def _setting_label(run: GuidanceRun) -> str:
    where = "every step" if run.guidance_interval is None else "t in ({}, {}]".format(
        *run.guidance_interval)  # fmt: skip
    return f"w = {run.guidance:g}, {where}"


def plot_guidance_curve(
    record: GuidanceRecord,
    recommended: Mapping[str, Any] | None = None,
    sampler: str = "ddim",
    steps: int = 50,
) -> Figure:
    """Class agreement and Frechet distance against the guidance scale w (guidance at every
    step), with the goal lines, the real-vs-real floor as a band, and the ``recommended``
    setting (``sample()``'s keyword arguments) as a star: the fidelity/diversity trade-off."""
    curve = _mean_by(record.curve(sampler, steps), lambda r: r.guidance)
    if not curve:
        raise ValueError(f"the record has no full-guidance runs of {sampler}-{steps}.")
    ws = sorted(curve)
    agree = [100 * curve[w][0] for w in ws]
    fd = [curve[w][1] for w in ws]
    floor = record.floor
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 0.3, 3.7), layout="constrained")
    ax_a, ax_f = fig.subplots(1, 2)
    ax_a.plot(ws, agree, color=INK_BLUE, marker="o", label="guidance at every step")
    ax_a.axhline(99, color=RED, lw=1, ls="--", label="goal: >= 99%")
    ax_a.set_ylabel("class agreement (%)")
    ax_f.axhspan(floor["low"], floor["high"], color=SLATE, alpha=0.25, lw=0,
                 label=f"real vs real ({floor['n']} digits, range)")  # fmt: skip
    ax_f.axhline(floor["mean"], color=SLATE, lw=1)
    ax_f.axhline(1.25 * floor["mean"], color=RED, lw=1, ls="--", label="goal: <= 1.25x floor")
    ax_f.plot(ws, fd, color=INK_BLUE, marker="o", label="guidance at every step")
    ax_f.set_ylabel("Frechet distance (log scale)")
    ax_f.set_yscale("log")  # w = 0 lands many times further away than the rest
    low, high = min(fd + [floor["low"]]) * 0.8, max(fd) * 1.2
    ticks = [v for v in (0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10) if low <= v <= high]
    ax_f.set_yticks(ticks, [f"{v:g}" for v in ticks])
    ax_f.minorticks_off()
    if recommended:
        runs = record.matching(**recommended)
        if runs:
            a, f, _, _ = _mean_by(runs, lambda r: 0)[0]
            w = float(recommended.get("guidance", 1.0))
            style = dict(marker="*", s=220, color=AMBER, edgecolors="black", zorder=6,
                         label=f"recommended: {_setting_label(runs[0])}")  # fmt: skip
            ax_a.scatter([w], [100 * a], **style)
            ax_f.scatter([w], [f], **style)
    for ax in (ax_a, ax_f):
        ax.set_xlabel("guidance scale w (the course's; 1 = plain conditional)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, frameon=False)
    n = record.curve(sampler, steps)[0].n
    fig.suptitle(f"Guidance on the shipped digit model: {n} digits per point, {sampler.upper()}-"
                 f"{steps}")  # fmt: skip
    return fig


def plot_guidance_intervals(
    record: GuidanceRecord,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: Sequence[float] | None = None,
    recommended: Mapping[str, Any] | None = None,
) -> Figure:
    """The measured settings of one sampler as points: class agreement (x) against Frechet
    distance over the floor (y), full guidance (circles, labelled by w) and guidance in an
    interval (triangles, one colour per w), with the goal region shaded.

    ``guidance``: the scales w to show (default: those measured with an interval, w = 1 (plain
    conditional sampling) for reference, and every full-guidance w in between with at least 90%
    class agreement). ``recommended`` (``sample()``'s keyword arguments): its run is drawn as a
    star, whatever its sampler.
    """
    runs = [r for r in record.runs if r.sampler == sampler and r.steps == steps and r.eta == 0.0]
    if guidance is None:
        guided = {r.guidance for r in runs if r.guidance_interval is not None}
        top = max(guided, default=1.0)
        near = {r.guidance for r in runs if r.guidance_interval is None
                and 1.0 <= r.guidance <= top and r.class_agreement >= 0.9}  # fmt: skip
        guidance = sorted(guided | near | {1.0})
    runs = [r for r in runs if r.guidance in set(guidance)]
    if not runs:
        raise ValueError(f"the record has no runs of {sampler}-{steps} at w in {list(guidance)}.")
    groups = _mean_by(runs, lambda r: (r.guidance, r.guidance_interval))
    ws = sorted({w for w, _ in groups})
    colours = dict(zip(ws, [SLATE, INK_BLUE, TEAL, AMBER, RED, "#6a4c93", "#2a9d8f", "#e76f51",
                            "#264653"] * 2, strict=False))  # fmt: skip
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 0.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(1.25, color=RED, lw=1, ls="--", label="goal: FD <= 1.25x floor")
    ax.axvline(99, color=RED, lw=1, ls=":", label="goal: agreement >= 99%")
    ax.axhline(1.0, color=SLATE, lw=1, label="the floor (real vs real)")
    for (w, interval), (a, _, ratio, _) in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ())
    ):
        if interval is None:
            ax.scatter([100 * a], [ratio], marker="o", s=45, color=colours[w], edgecolors="black",
                       zorder=4)  # fmt: skip
            ax.annotate(f"w = {w:g}", (100 * a, ratio), fontsize=7.5, xytext=(4, -9),
                        textcoords="offset points")  # fmt: skip
        else:
            ax.scatter([100 * a], [ratio], marker="^", s=40, color=colours[w], zorder=4)
            ax.annotate("({}, {}]".format(*interval), (100 * a, ratio), fontsize=6.5,
                        xytext=(3, 3), textcoords="offset points", color=colours[w])  # fmt: skip
    low = min(0.95, min(ratio for _, _, ratio, _ in groups.values()) - 0.05)
    ax.fill_between([99, 100.3], low, 1.25, color=TEAL, alpha=0.12, lw=0, label="the goal")
    ax.set_xlim(right=100.3)
    chosen = record.matching(**recommended) if recommended else []
    if chosen:
        a, _, ratio, _ = _mean_by(chosen, lambda r: 0)[0]
        ax.scatter([100 * a], [ratio], marker="*", s=260, color=AMBER, edgecolors="black", zorder=6,
                   label=f"recommended: {chosen[0].setting}")  # fmt: skip
    for w in ws:
        if any(iv is not None for gw, iv in groups if gw == w):
            ax.scatter([], [], marker="^", color=colours[w], label=f"w = {w:g} in an interval")
    ax.set_xlabel("class agreement (%)")
    ax.set_ylabel("Frechet distance / real-vs-real floor")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left")
    fig.suptitle(f"Guidance everywhere (circles) or only for t in (t_lo, t_hi] (triangles): "
                 f"{sampler.upper()}-{steps}")  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- prompts
def plot_prompt_grid(
    images_by_prompt: Mapping[str, torch.Tensor],
    title: str = "Prompts (columns) from the same starting noises (rows)",
) -> Figure:
    """One column per prompt (its images ``(N, 1, H, W)``, row i from the same noise in every
    column), each image captioned with its measured stroke width and slant
    (:func:`~diffusion_edu.text.stroke_thickness`, :func:`~diffusion_edu.text.slant`)."""
    if not images_by_prompt:
        raise ValueError("give at least one prompt: {prompt: images (N, 1, H, W)}.")
    sizes = {v.shape[0] for v in images_by_prompt.values()}
    if len(sizes) != 1:
        raise ValueError(f"every prompt needs the same number of images, got {sorted(sizes)}.")
    rows, cols = sizes.pop(), len(images_by_prompt)
    cell = min(1.15, (FIGURE_WIDTH - 0.3) / cols)
    fig = LessonFigure(figsize=(cell * cols + 0.3, (cell + 0.3) * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, (prompt, images) in enumerate(images_by_prompt.items()):
        widths, slants = stroke_thickness(images).tolist(), slant(images).tolist()
        axes[0, c].set_title(textwrap.fill(prompt, 13), fontsize=8.5)
        for r in range(rows):
            ax = axes[r, c]
            ax.imshow(make_grid(images[r : r + 1].cpu(), pad=0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{widths[r]:.1f} px, {slants[r]:+.2f}", fontsize=7)
    fig.suptitle(f"{title}\n(under each digit: its measured stroke width and slant)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- attributes
def plot_attribute_map(
    images: torch.Tensor,
    examples: Sequence[int],
    captions: Sequence[str],
) -> Figure:
    """Left: stroke width against slant of every digit in ``images`` (the library's
    :func:`~diffusion_edu.text.stroke_thickness` and :func:`~diffusion_edu.text.slant`), with
    the thresholds that name them; right: the digits ``examples`` (indices) with ``captions``
    (one per example), marked on the left by their number."""
    if len(examples) != len(captions):
        raise ValueError(f"{len(examples)} examples but {len(captions)} captions.")
    widths, slants = stroke_thickness(images), slant(images)
    fig = LessonFigure(figsize=(FIGURE_WIDTH, 4.4))
    grid = fig.add_gridspec(2, 2 + math.ceil(len(examples) / 2), width_ratios=[2.3, 2.3] + [1] *
                            math.ceil(len(examples) / 2), wspace=0.35)  # fmt: skip
    ax = fig.add_subplot(grid[:, :2])
    ax.scatter(slants, widths, s=3, color=SLATE, alpha=0.5)
    for x in (LEFT_BELOW, -UPRIGHT_WITHIN, UPRIGHT_WITHIN, RIGHT_ABOVE):
        ax.axvline(x, color=INK_BLUE, lw=0.8, ls="--")
    for y in (THIN_BELOW, BOLD_ABOVE):
        ax.axhline(y, color=RED, lw=0.8, ls="--")
    low_w, high_w = float(widths.min()), float(widths.max())
    ax.set_ylim(min(low_w, THIN_BELOW) - 0.3, max(high_w, BOLD_ABOVE) + 0.6)
    ax.set_xlim(
        min(float(slants.min()), LEFT_BELOW) - 0.1, max(float(slants.max()), RIGHT_ABOVE) + 0.1
    )
    words_at = ax.get_xaxis_transform()  # x in data, y in axes fractions: the top edge
    for x, word in ((LEFT_BELOW - 0.2, "leaning\nleft"), (0.0, "up-\nright"),
                    (RIGHT_ABOVE + 0.2, "leaning\nright")):  # fmt: skip
        ax.text(x, 0.98, word, ha="center", va="top", fontsize=8, color=INK_BLUE,
                transform=words_at)  # fmt: skip
    side = ax.get_yaxis_transform()  # x in axes fractions, y in data: the left edge
    ax.text(0.02, THIN_BELOW - 0.05, "thin", va="top", fontsize=8, color=RED, transform=side)
    ax.text(0.02, BOLD_ABOVE + 0.05, "bold", va="bottom", fontsize=8, color=RED, transform=side)
    for k, i in enumerate(examples):
        ax.scatter([slants[i]], [widths[i]], s=60, color=AMBER, edgecolors="black", zorder=5)
        ax.annotate(str(k + 1), (float(slants[i]), float(widths[i])), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("slant (columns per row; > 0 leans right)")
    ax.set_ylabel("stroke width (pixels)")
    ax.set_title(f"{len(images)} digits, measured", fontsize=10)
    cols = math.ceil(len(examples) / 2)
    for k, (i, text) in enumerate(zip(examples, captions, strict=True)):
        sub = fig.add_subplot(grid[k // cols, 2 + k % cols])
        _panel(sub, images[i])
        sub.set_title(textwrap.fill(f"{k + 1}: {text}", 14), fontsize=7.5)
    fig.suptitle("From pixels to words: stroke width and slant, measured, then named")
    return fig


# ----------------------------------------------------------------------------- cross-attention
@dataclass(frozen=True)
class AttentionRun:
    """One sampling run of a text model, and its cross-attention at a few of its steps.

    Attributes:
        prompt: the prompt; ``words``: its tokens as the model sees them (``<start>`` first,
            no padding).
        timesteps: the steps t looked at, from noisy to clean.
        x_ts: ``(S, 1, H, W)`` the noisy image x_t at each of them.
        x0_hats: ``(S, 1, H, W)`` the model's guess of the clean image there.
        maps: ``(S, len(words), H, W)`` the attention each pixel pays to each word, averaged
            over the chosen cross-attention layers (upsampled to the image's size); at every
            pixel they sum to 1 over the words.
        image: ``(1, H, W)`` the finished sample.
    """

    prompt: str
    words: tuple[str, ...]
    timesteps: tuple[int, ...]
    x_ts: torch.Tensor
    x0_hats: torch.Tensor
    maps: torch.Tensor
    image: torch.Tensor


@torch.no_grad()
def attention_over_steps(
    model: nn.Module,
    schedule: NoiseSchedule,
    prompt: str,
    timesteps: Sequence[int],
    seed: int = 0,
    steps: int = 50,
    guidance: float = 1.0,
    layers: Sequence[str] | None = None,
) -> AttentionRun:
    """Sample one image for ``prompt`` (DDIM, ``steps`` steps) and look at its cross-attention
    at the run's steps nearest to each of ``timesteps``.

    ``model.cross_attention_maps(x_t, t, tokens)`` gives ``{layer: (B, L, h, w)}``; the maps
    of ``layers`` (default: every layer) are upsampled to the image's size and averaged.
    """
    words = ("<start>", *prompt_tokens(prompt))
    tokens = tokenize(prompt)  # (1, L)
    run = sample(model, schedule, cond=tokens, sampler="ddim", steps=steps, guidance=guidance,
                 seed=seed, return_trajectory=True, progress=False)  # fmt: skip
    assert isinstance(run, Trajectory)
    visited = run.timesteps[:-1]  # the t of each step (0 is the end)
    chosen = sorted({min(visited, key=lambda s: abs(s - t)) for t in timesteps}, reverse=True)
    size = run.xs.shape[-2:]
    device = next(model.parameters()).device
    x_ts, x0_hats, maps = [], [], []
    for t in chosen:
        i = visited.index(t)
        x_t = run.xs[i]  # (1, C, H, W)
        per_layer = model.cross_attention_maps(x_t.to(device), t, tokens.to(device))
        names = list(per_layer) if layers is None else list(layers)
        unknown = [n for n in names if n not in per_layer]
        if unknown:
            raise ValueError(
                f"no cross-attention layer {unknown}; the model has {list(per_layer)}."
            )
        upsampled = [
            torch.nn.functional.interpolate(per_layer[n][:, : len(words)].float().cpu(),
                                            size=size, mode="bilinear", align_corners=False)
            for n in names
        ]  # fmt: skip
        maps.append(torch.stack(upsampled).mean(dim=0)[0])  # (len(words), H, W)
        x_ts.append(x_t[0])
        x0_hats.append(run.x0_hats[i][0])
    return AttentionRun(
        prompt=prompt, words=words, timesteps=tuple(chosen), x_ts=torch.stack(x_ts),
        x0_hats=torch.stack(x0_hats), maps=torch.stack(maps), image=run.images[0].cpu(),
    )  # fmt: skip


def plot_cross_attention(run: AttentionRun, show: str = "x0_hat") -> Figure:
    """One row per step: the image (``show``: ``"x0_hat"``, the model's guess of the clean
    digit, or ``"x_t"``), then the attention map of each word, with the finished digit's
    outline drawn over every map. One colour scale for all maps."""
    if show not in ("x0_hat", "x_t"):
        raise ValueError(f"show must be 'x0_hat' or 'x_t', got {show!r}.")
    images = run.x0_hats if show == "x0_hat" else run.x_ts
    rows, cols = len(run.timesteps), len(run.words) + 1
    cell = min(1.45, (FIGURE_WIDTH - 1.6) / cols)
    fig = LessonFigure(figsize=(cell * cols + 1.2, (cell + 0.3) * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    vmax = float(run.maps.max())
    outline = run.image[0].numpy()  # (H, W) in [-1, 1]: the finished digit, for contours
    im = None
    for r, t in enumerate(run.timesteps):
        _panel(axes[r, 0], images[r], f"t = {t}: {show.replace('_hat', ' guess')}")
        for c, word in enumerate(run.words):
            ax = axes[r, c + 1]
            im = ax.imshow(run.maps[r, c].numpy(), cmap=ATTENTION_CMAP, vmin=0, vmax=vmax)
            ax.contour(outline, levels=[0.0], colors="white", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"'{word}'", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.7, label="attention weight")
    fig.suptitle(f"Which pixels read which word: '{run.prompt}' (white: the finished digit's "
                 "outline)")  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- two prompts
@dataclass(frozen=True)
class PromptDivergence:
    """How far apart two sampling runs from the same x_T are, step by step.

    Attributes:
        timesteps: ``[T, ..., 0]``, the t of each entry of ``x_t`` (0: the finished images).
        x_t: root-mean-square pixel difference of the two runs' x_t (0 at t = T: the same
            noise), one per timestep.
        x0_hat: the same for the two guesses of the clean image, one per step
            (at ``timesteps[:-1]``).
    """

    timesteps: tuple[int, ...]
    x_t: tuple[float, ...]
    x0_hat: tuple[float, ...]

    @property
    def halfway_t(self) -> int:
        """The first timestep (from T down) at which the x_t paths are at least half as far
        apart as the finished images."""
        final = self.x_t[-1]
        return next(t for t, d in zip(self.timesteps, self.x_t, strict=True) if d >= 0.5 * final)


def prompt_divergence(a: Trajectory, b: Trajectory, index: int = 0) -> PromptDivergence:
    """Compare image ``index`` of two runs that took the same steps (e.g. two prompts from the
    same x_T): the RMS difference of their x_t and of their x0_hat at every step (images in
    [-1, 1])."""
    if a.timesteps != b.timesteps:
        raise ValueError("the two runs must take the same steps (same sampler and steps).")

    def rms(u: torch.Tensor, v: torch.Tensor) -> tuple[float, ...]:
        return tuple((u[:, index] - v[:, index]).pow(2).flatten(1).mean(dim=1).sqrt().tolist())

    return PromptDivergence(tuple(a.timesteps), rms(a.xs, b.xs), rms(a.x0_hats, b.x0_hats))


def plot_prompt_divergence(
    a: Trajectory, b: Trajectory, prompt_a: str, prompt_b: str, n: int = 7, index: int = 0
) -> Figure:
    """Two runs from the same x_T under two prompts: their x0_hat at ``n`` shared steps (top
    two rows) and, below, how far apart their x_t and their x0_hat are at every step."""
    d = prompt_divergence(a, b, index)
    ts = list(d.timesteps[:-1])
    keep = sorted({round(v) for v in np.linspace(0, len(ts) - 1, n)})
    cell = min(1.2, (FIGURE_WIDTH - 1.0) / len(keep))
    fig = LessonFigure(figsize=(cell * len(keep) + 1.0, 2 * cell + 2.8), layout="constrained")
    grid = fig.add_gridspec(3, len(keep), height_ratios=[cell, cell, 2.0])
    for row, (run, name) in enumerate(((a, prompt_a), (b, prompt_b))):
        for c, i in enumerate(keep):
            ax = fig.add_subplot(grid[row, c])
            _panel(ax, run.x0_hats[i, index], f"t = {ts[i]}" if row == 0 else "")
            if c == 0:
                ax.set_ylabel(name.replace(" leaning", "\nleaning"), fontsize=8)
    ax = fig.add_subplot(grid[2, :])
    ax.plot(ts, d.x0_hat, color=INK_BLUE, marker="o", ms=3, label="the guesses x0_hat")
    ax.plot(d.timesteps, d.x_t, color=RED, marker="o", ms=3, label="the noisy images x_t")
    ax.axvline(d.halfway_t, color=SLATE, ls="--", lw=1,
               label=f"x_t half as far apart as at the end (t = {d.halfway_t})")  # fmt: skip
    ax.set_xlim(max(d.timesteps), 0)
    ax.set_xlabel("timestep t (sampling runs from left to right)")
    ax.set_ylabel("RMS difference")
    ax.set_ylim(0, max(max(d.x_t), max(d.x0_hat), 1e-3) * 1.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.suptitle("Two prompts from the same noise: the guesses x0_hat (rows) and how far apart "
                 "the runs are")  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- the record
def prompt_following_table(record: Mapping[str, Any]) -> str:
    """The prompt-following measurements of a text model as a printed table.

    ``record``: a shipped model's record (``pretrained_info("mnist-text").record``, whose
    "prompt_following" key holds them) or the result of
    :func:`~diffusion_edu.prompt_following.measure_prompt_following` itself.
    """
    scores = record.get("prompt_following", record)
    try:
        digit, thick, lean = scores["digit"], scores["thickness"], scores["slant"]
        lines = [
            f"sampling: {scores.get('sampling', {})}, {scores['samples_per_prompt']} samples per "
            "prompt",
            f"{'what is asked':<34} {'measured':>9}   how",
            f"{'the digit':<34} {digit['class_agreement']:9.1%}   class agreement over "
            f"{digit['samples']} samples ({digit['prompts']})",
            f"{'bold vs thin: wider stroke':<34} {thick['bold_wider_stroke']:9.1%}   of "
            f"{thick['pairs']} pairs from the same noise (mean width {thick['mean_width_thin_px']}"
            f" -> {thick['mean_width_bold_px']} px)",
            f"{'bold vs thin: more ink':<34} {thick['bold_more_ink']:9.1%}   of the same pairs",
            f"{'right vs left: leans further right':<34} "
            f"{lean['right_leans_further_right']:9.1%}   of {lean['pairs']} pairs (mean slant "
            f"{lean['mean_slant_left']:+} -> {lean['mean_slant_right']:+})",
        ]
        held = scores.get("held_out", {})
        if held:
            lines.append("held-out combinations (never in training):")
            lines.append(f"  {'prompt':<30} {'digit':>7} {'thickness':>10} {'slant':>7} "
                         f"{'all words':>10}")  # fmt: skip
            for prompt, h in held.items():
                lines.append(
                    f"  {prompt:<30} {h['class_agreement']:7.0%} "
                    f"{h['thickness_pairs_right_way']:10.0%} {h['slant_pairs_right_way']:7.0%} "
                    f"{h['measured_words_match']:10.0%}"
                )
            lines.append("  (digit: class agreement; thickness / slant: pairs against the prompt "
                         "with that word flipped,\n  same noise, going the right way; all words: "
                         "samples whose measured words are exactly the prompt's)")  # fmt: skip
        by_guidance = record.get("prompt_following_by_guidance", {})
        if by_guidance:
            lines.append("by guidance scale w (same prompts and noises):")
            lines.append(f"  {'w':>4} {'digit':>7} {'bold wider':>11} {'right leans right':>18}")
            for w, r in by_guidance.items():
                lines.append(f"  {w:>4} {r['class_agreement']:7.1%} {r['bold_wider_stroke']:11.0%} "
                             f"{r['right_leans_further_right']:18.0%}")  # fmt: skip
        if "goals" in record:
            goals = ", ".join(f"{k} >= {v:g}" for k, v in record["goals"].items())
            lines.append(f"goals: {goals}; recommended: {record.get('recommended')}")
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a prompt-following record (missing {error}).") from None
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the widget
class PromptExplorer(WidgetView):
    """Type a prompt, move the guidance scale, keep or change the starting noise.

    A :class:`~diffusion_edu.viz.widgets.LivePlot` draws ``n`` samples of the prompt (DDIM,
    quick preview first); a line above it lists the vocabulary, and a message line answers a
    prompt the tokenizer refuses (the picture then says it was not drawn), never with a
    traceback.

    Attributes:
        live: the LivePlot (``live.controls["prompt" | "guidance" | "same_noise"]``).
        message: the HTML line that answers an unknown word.
        widget: the whole thing.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: NoiseSchedule,
        prompt: str,
        n: int,
        steps: int,
        guidance: float,
        preview_steps: int,
        seed: int,
    ) -> None:
        if n < 1 or steps < 1 or preview_steps < 1:
            raise ValueError(f"n, steps and preview_steps must be >= 1, got {n}, {steps}, "
                             f"{preview_steps}.")  # fmt: skip
        self.model, self.schedule, self.n, self.seed = model, schedule, n, seed
        self.steps, self.preview_steps = steps, preview_steps
        shape = (n, 1, 28, 28)
        self._shared = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        self.vocabulary = widgets.HTML(
            f"<small><b>Words the model knows</b>: {html.escape(vocabulary_text())}</small>"
        )
        self.message = widgets.HTML(layout=widgets.Layout(min_height="1.4em"))
        text = widgets.Text(value=prompt, description="prompt", continuous_update=False,
                            layout=widgets.Layout(width="330px"))  # fmt: skip
        text.observe(self._check_prompt, names="value")  # before the LivePlot's own observer
        controls = {
            "prompt": text,
            "guidance": widgets.FloatSlider(value=guidance, min=0.0, max=6.0, step=0.5,
                                            description="guidance w", continuous_update=False),
            "same_noise": widgets.Checkbox(value=True, description="same noise for every prompt",
                                           indent=False),
        }  # fmt: skip
        self._check_prompt({"new": prompt})
        self.live = LivePlot(self._draw, controls, preview=self._preview)
        self.widget = widgets.VBox([self.vocabulary, self.message, self.live.widget])

    def _check_prompt(self, change: Mapping[str, object]) -> None:
        try:
            prompt_tokens(str(change["new"]))
        except PromptError as error:
            self.message.value = f"<span style='color:#d1495b'>{html.escape(str(error))}</span>"
        else:
            self.message.value = ""

    def _noise(self, prompt: str, same_noise: bool) -> torch.Tensor:
        if same_noise:
            return self._shared
        key = " ".join(prompt_tokens(prompt))  # the same words, the same noise
        g = torch.Generator().manual_seed(self.seed + zlib.crc32(key.encode()))
        return torch.randn(self._shared.shape, generator=g)

    def _preview(self, values: dict) -> dict:
        return {**values, "preview": True}

    def _draw(
        self, prompt: str, guidance: float, same_noise: bool, preview: bool = False
    ) -> Figure:
        try:
            tokens = tokenize(prompt).expand(self.n, -1)  # (n, L): one copy per image
        except PromptError as error:
            reason = str(error).split(" The words")[0]  # the vocabulary is in the line above
            return _message_figure(f"'{prompt}' was not drawn: {reason}", guidance)
        steps = min(self.steps, self.preview_steps) if preview else self.steps
        images = sample(self.model, self.schedule, cond=tokens, x_T=self._noise(prompt, same_noise),
                        sampler="ddim", steps=steps, guidance=guidance, seed=self.seed,
                        progress=False).cpu()  # fmt: skip
        noise = "the same noise for every prompt" if same_noise else "this prompt's own noise"
        if preview:
            title = f"quick preview (DDIM-{steps}): drawing the full picture..."
        else:
            reads = classifier_predictions(images).tolist()
            width, lean = stroke_thickness(images).mean().item(), slant(images).mean().item()
            common = max(set(reads), key=reads.count)
            title = (f"'{prompt}', w = {guidance:g}, DDIM-{steps}, {noise}\nthe classifier reads "
                     f"{common} in {reads.count(common)}/{len(reads)}; mean stroke width "
                     f"{width:.2f} px, mean slant {lean:+.2f}")  # fmt: skip
        return _image_row(images, title)


def _image_row(images: torch.Tensor, title: str) -> Figure:
    n = images.shape[0]
    width = min(FIGURE_WIDTH, 0.95 * n + 0.3)
    height = width / n + 0.75
    fig = LessonFigure(figsize=(width, height))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.7 / height))
    ax.imshow(make_grid(images, nrow=n), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    fig.suptitle(title, fontsize=9.5, y=0.995, va="top")
    return fig


def _message_figure(text: str, guidance: float) -> Figure:
    fig = LessonFigure(figsize=(FIGURE_WIDTH - 1.5, 1.6))
    fig.text(0.02, 0.5, textwrap.fill(text + f" (guidance w = {guidance:g})", 110),
             va="center", fontsize=9, color=RED)  # fmt: skip
    return fig


def prompt_widget(
    model: nn.Module,
    schedule: NoiseSchedule,
    prompt: str = "a bold seven leaning right",
    n: int = 8,
    steps: int = 20,
    guidance: float = 2.0,
    preview_steps: int = 4,
    seed: int = 0,
) -> PromptExplorer:
    """A text box for the prompt (with the vocabulary above it), a guidance slider and a "same
    noise" checkbox over ``n`` samples of the prompt (DDIM with ``steps`` steps, a
    ``preview_steps`` preview first). Same noise on: every prompt starts from the same ``n``
    starting noises, so changing a word shows what that word changes; off: each prompt gets
    noise of its own (the same again whenever the same words come back)."""
    return PromptExplorer(model, schedule, prompt, n, steps, guidance, preview_steps, seed)
