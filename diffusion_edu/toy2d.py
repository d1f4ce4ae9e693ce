"""A 2-D playground for the reverse process: point clouds, a tiny MLP noise predictor, scores.

Images have 784 dimensions; a spiral has 2. Everything a diffusion model does to MNIST it does
here too (forward noising, noise estimation, iterative denoising), but each "image" is one
point in the plane, so we can *see* the whole distribution and the model's field of arrows.

* :func:`make_spiral`, :func:`make_moons`, :func:`make_toy_data`: the data sets, seeded.
* :class:`ToyNoisePredictor` (in :mod:`diffusion_edu.models.toy_mlp`): ``model(x_t, t,
  labels=None) -> eps_hat`` for 2-D points, the same calling convention as the U-Net, so the
  library's loop and samplers work on it unchanged.
* :func:`train_toy_steps` / :func:`train_toy`: DDPM training (Algorithm 1) with the library's
  one loop (:class:`~diffusion_edu.Trainer`) and the toy's recipe, :func:`toy_train_config`.
* :func:`eps_to_score`, :func:`score_field`, :func:`exact_score`: the score-based view,
  ``grad_x log q(x_t) = -eps / sqrt(1 - alpha_bar_t)`` (Song et al. 2021, Eq. 7-8 with
  Tweedie's formula; Luo 2022, "Understanding Diffusion Models", Eq. 151).
* :func:`nearest_data_distance`: how close generated points land to the data;
  :func:`inner_turn_fraction`: whether they land in the spiral's proportions.
* :func:`make_moons_labelled` and ``ToyMLPConfig(num_classes=2)``: a class-conditional toy
  (the label is the "prompt"), trained with label dropout so classifier-free guidance works.
* :func:`train_and_sample_toy`, :func:`hyperparameter_sweep`: one seeded run (train, sample,
  measure) and a grid of them over learning rate and batch size.
* :func:`add_outliers`, :func:`fraction_within`, :func:`copy_fraction`: data quality and
  memorisation (garbage in, garbage out; too little data and the model copies it).
* :func:`ideal_noise_prediction_error`: the noise-prediction error of the best possible
  model at each t, from :func:`exact_score` (lesson 08).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from diffusion_edu.forward import as_timesteps, coef, q_sample
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer, TrainingDivergedError, TrainStep
from diffusion_edu.metrics import NoiseErrorCurve, noise_error_timesteps
from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule, make_schedule
from diffusion_edu.training import DiffusionLoss

__all__ = [
    "ToyDataName",
    "make_spiral",
    "make_moons",
    "make_moons_labelled",
    "make_toy_data",
    "ToyMLPConfig",
    "ToyNoisePredictor",
    "toy_train_config",
    "train_toy_steps",
    "train_toy",
    "eps_to_score",
    "score_field",
    "exact_score",
    "nearest_data_distance",
    "inner_turn_fraction",
    "sample_points",
    "ToyScheduleName",
    "ToyRunResult",
    "HyperparameterSweep",
    "train_and_sample_toy",
    "hyperparameter_sweep",
    "add_outliers",
    "fraction_within",
    "copy_fraction",
    "ideal_noise_prediction_error",
]

ToyDataName = Literal["spiral", "moons"]
ToyScheduleName = Literal["linear", "cosine"]


# ----------------------------------------------------------------------------- data
def make_spiral(n: int = 2000, noise: float = 0.03, seed: int = 0) -> torch.Tensor:
    """``n`` points on a two-turn spiral, shape ``(n, 2)``, inside roughly [-1, 1]^2.

    Radius grows with angle: ``r = theta / (4 pi)`` for ``theta`` in ``[pi/2, 4 pi]``, plus
    Gaussian jitter of standard deviation ``noise``.
    """
    _check_n(n)
    g = torch.Generator().manual_seed(seed)
    theta = math.pi / 2 + (4 * math.pi - math.pi / 2) * torch.rand(n, generator=g)  # (n,)
    r = theta / (4 * math.pi)
    points = torch.stack([r * theta.cos(), r * theta.sin()], dim=1)  # (n, 2)
    return points + noise * torch.randn(n, 2, generator=g)


def make_moons(n: int = 2000, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Two interleaving half circles (scikit-learn's "two moons"), shape ``(n, 2)``.

    Centred and scaled to lie inside roughly [-1, 1]^2; Gaussian jitter of std ``noise``.
    """
    return make_moons_labelled(n, noise, seed)[0]


def make_moons_labelled(
    n: int = 2000, noise: float = 0.05, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two moons with their class: ``(points (n, 2), labels (n,))``.

    Label 0 is the upper moon, label 1 the lower one; the points are those of
    :func:`make_moons` with the same arguments.
    """
    _check_n(n)
    g = torch.Generator().manual_seed(seed)
    angle = math.pi * torch.rand(n, generator=g)  # (n,)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, angle.cos(), 1.0 - angle.cos())
    y = torch.where(upper, angle.sin(), 0.5 - angle.sin())
    points = torch.stack([x - 0.5, y - 0.25], dim=1) / 1.5  # (n, 2), centred, in [-1, 1]
    labels = (~upper).long()  # 0: upper moon, 1: lower moon
    return points + noise * torch.randn(n, 2, generator=g), labels


def make_toy_data(name: ToyDataName = "spiral", n: int = 2000, seed: int = 0) -> torch.Tensor:
    """The named 2-D data set: ``"spiral"`` or ``"moons"``, shape ``(n, 2)``."""
    if name == "spiral":
        return make_spiral(n, seed=seed)
    if name == "moons":
        return make_moons(n, seed=seed)
    raise ValueError(f"name must be 'spiral' or 'moons', got {name!r}.")


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of points) must be an integer >= 1, got {n!r}.")


# ----------------------------------------------------------------------------- training
def toy_train_config(
    steps: int = 2000, batch_size: int = 256, lr: float = 1e-2, seed: int = 0
) -> TrainConfig:
    """The toy's recipe for the one training loop (:class:`~diffusion_edu.TrainConfig`).

    Plain Adam (AdamW without weight decay) at ``lr``, no warm-up, cosine decay to 10% of
    ``lr``; no gradient clipping and no EMA (the model samples from its own weights), float32,
    and no stop on a large loss (lesson 05 *wants* to show what a too-large learning rate
    does; NaN still stops training).
    """
    return TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=0, min_lr=0.1 * lr,
        grad_clip=0.0, ema_decay=None, seed=seed, precision="fp32", max_loss=math.inf,
    )  # fmt: skip


def train_toy_steps(
    model: nn.Module,
    data: torch.Tensor,
    schedule: NoiseSchedule,
    config: TrainConfig | None = None,
    progress: bool = True,
    labels: torch.Tensor | None = None,
    cond_dropout: float = 0.1,
    desc: str = "training",
) -> Iterator[TrainStep]:
    """Train on the CPU with the library's one loop, yielding a record after every step.

    DDPM training (Ho et al. 2020, Algorithm 1) by :class:`~diffusion_edu.Trainer` with
    :class:`~diffusion_edu.training.DiffusionLoss` and :func:`toy_train_config`'s recipe:

    repeat:
        1. x_0 ~ data,  t ~ Uniform{1..T},  eps ~ N(0, I)
        2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (Eq. 4)
        3. gradient step on || eps - eps_theta(x_t, t) ||^2                   (Eq. 14)

    ``labels`` (N,): the class of each data point, for a conditional model (one with a
    ``null_label``); each batch's labels are dropped to "no label" with probability
    ``cond_dropout`` (classifier-free guidance training). Seeded by ``config.seed`` (weights
    are not re-initialised: seed before building the model). The model is left in eval mode.
    ``desc`` labels the progress bar (what is being trained).
    """
    config = config or toy_train_config()
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (N, ...) with N >= 1, got {tuple(data.shape)}.")
    batches = TensorBatches(data, *([] if labels is None else [labels]))
    loss = DiffusionLoss(schedule, cond_dropout=cond_dropout)
    trainer = Trainer(
        model, loss, batches, config, "cpu", verbose=False, progress=progress, desc=desc
    )
    try:
        yield from trainer.run()
    finally:
        model.eval()


def train_toy(
    model: nn.Module,
    data: torch.Tensor,
    schedule: NoiseSchedule,
    config: TrainConfig | None = None,
    progress: bool = True,
    labels: torch.Tensor | None = None,
    cond_dropout: float = 0.1,
) -> list[float]:
    """Run :func:`train_toy_steps` to the end and return the loss of every step."""
    steps = train_toy_steps(model, data, schedule, config, progress, labels, cond_dropout)
    return [record.loss for record in steps]


# ----------------------------------------------------------------------------- scores
def eps_to_score(
    eps_hat: torch.Tensor, t: int | torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Turn a noise estimate into a score estimate: ``s(x_t) = -eps_hat / sqrt(1 - alpha_bar_t)``.

    Why: with x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, Tweedie's formula gives
    ``grad_x log q(x_t) = -E[eps | x_t] / sqrt(1 - alpha_bar_t)`` (Luo 2022, Eq. 151; Song et
    al. 2021, "Score-Based Generative Modeling through SDEs", Sec. 3.3). So a model that
    predicts the noise is also a model of the score: "diffusion probabilistic model" and
    "score-based generative model" are two names for the same thing.
    """
    t = as_timesteps(t, eps_hat.shape[0], schedule, low=1)
    return -eps_hat / coef(schedule.sqrt_one_minus_alpha_bars, t, eps_hat)


@torch.no_grad()
def score_field(
    model: nn.Module,
    schedule: NoiseSchedule,
    t: int,
    lim: float = 1.5,
    n: int = 21,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's score ``-eps_hat / sqrt(1 - alpha_bar_t)`` on an ``n x n`` grid at step t.

    Returns ``(points, scores)``, both ``(n * n, 2)``: where each arrow starts and where it
    points (towards higher density of x_t: back towards the data).
    """
    axis = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (n*n, 2)
    eps_hat = model(points, torch.full((points.shape[0],), t, dtype=torch.long))
    return points, eps_to_score(eps_hat, t, schedule)


def exact_score(
    x_t: torch.Tensor, t: int, data: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """The true score of q(x_t) when the data are the finite set of points ``data``.

    Then q(x_t) = (1/N) sum_i N(x_t; sqrt(alpha_bar_t) x0_i, (1 - alpha_bar_t) I), a Gaussian
    mixture, and its score is ``sum_i w_i (sqrt(alpha_bar_t) x0_i - x_t) / (1 - alpha_bar_t)``
    with softmax weights w_i (the posterior probability that x_t came from x0_i). This is what
    a perfect noise predictor would give through :func:`eps_to_score`.
    """
    ab = schedule.alpha_bars[t].to(x_t.dtype)
    means = ab.sqrt() * data.to(x_t.dtype)  # (N, 2)
    sq_dist = torch.cdist(x_t, means).pow(2)  # (B, N)
    w = torch.softmax(-sq_dist / (2 * (1 - ab)), dim=1)  # (B, N)
    return (w @ means - x_t) / (1 - ab)  # (B, 2)


def inner_turn_fraction(points: torch.Tensor) -> float:
    """The share of ``points`` (N, 2) on the spiral's inner turn: within radius 0.5 of the
    centre. :func:`make_spiral` puts ``(2 pi - pi/2) / (4 pi - pi/2) = 3/7`` (43%) of its points
    there (angle below 2 pi), so a sampler that gets the spiral's proportions right gives about
    that; one that lands on the spiral but in the wrong proportions does not (lesson 12)."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {tuple(points.shape)}.")
    return (points.float().norm(dim=1) < 0.5).float().mean().item()


def nearest_data_distance(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Mean Euclidean distance from each sample to its nearest data point (lower is better).

    Half of a Chamfer distance: it says whether samples land *on* the data, not whether they
    cover all of it.
    """
    return torch.cdist(samples.float(), data.float()).min(dim=1).values.mean().item()


# ----------------------------------------------------------------------------- sampling
def sample_points(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int | None = None,
    labels: Sequence[int] | torch.Tensor | None = None,
    guidance: float = 1.0,
    seed: int | None = 0,
) -> torch.Tensor:
    """Samples ``(n, 2)`` from a 2-D toy model (DDPM; Euler for a flow model), *not* clipped.

    :func:`diffusion_edu.sample` with ``shape=(2,)`` and ``clip_x0=False`` (the points are not
    pixels: they live outside [-1, 1]).
    """
    return sample(
        model, schedule, n=n, labels=labels, guidance=guidance, seed=seed, shape=(2,),
        clip_x0=False, progress=False,
    )  # fmt: skip


# ----------------------------------------------------------------------------- hyperparameters
@dataclass(frozen=True)
class ToyRunResult:
    """One seeded run of :func:`train_and_sample_toy`: its settings and what came out.

    Attributes:
        lr, batch_size, schedule, T, steps: the hyperparameters of the run.
        losses: the loss of every training step.
        samples: ``(n_samples, 2)`` points drawn with DDPM sampling after training.
        distance: :func:`nearest_data_distance` of the samples to the training data (lower is
            better; ``inf`` if sampling blew up to NaN/inf).
        seconds: wall-clock time of the training run.
    """

    lr: float
    batch_size: int
    schedule: str
    T: int
    steps: int
    losses: tuple[float, ...]
    samples: torch.Tensor
    distance: float
    seconds: float

    @property
    def label(self) -> str:
        """A short description for a plot title, e.g. ``"lr=1e-02, batch=256"``."""
        return f"lr={self.lr:.0e}, batch={self.batch_size}"


@dataclass(frozen=True)
class HyperparameterSweep:
    """The results of :func:`hyperparameter_sweep`, one per (lr, batch_size), lr-major order."""

    lrs: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    results: tuple[ToyRunResult, ...]

    def get(self, lr: float, batch_size: int) -> ToyRunResult:
        """The run with this learning rate and batch size."""
        for r in self.results:
            if math.isclose(r.lr, lr) and r.batch_size == batch_size:
                return r
        raise KeyError(f"no run with lr={lr} and batch_size={batch_size} in this sweep.")


def train_and_sample_toy(
    data: torch.Tensor,
    *,
    lr: float = 1e-2,
    batch_size: int = 256,
    schedule: ToyScheduleName = "cosine",
    T: int = 100,
    steps: int = 500,
    n_samples: int = 500,
    seed: int = 0,
    model_config: ToyMLPConfig | None = None,
) -> ToyRunResult:
    """Train a fresh :class:`ToyNoisePredictor` on ``data``, sample from it, and measure.

    Everything is seeded by ``seed`` (weights, batches, noise, sampling), so two calls with
    the same arguments give the same result and two settings differ only by their settings.
    The model has ``T`` steps of the named ``schedule`` (a linear one is rescaled so that its
    betas suit a chain of T steps: ``scale_to_T`` in :meth:`NoiseSchedule.linear`). The loss
    may grow huge with a too-large learning rate (training goes on, as the lesson wants to
    show); if it becomes NaN, training stops and ``distance`` is ``inf``.
    """
    if schedule not in ("linear", "cosine"):
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}.")
    noise_schedule = make_schedule(schedule, T=T, scale_to_T=True)
    config = model_config or ToyMLPConfig()
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's random state is kept
        torch.manual_seed(seed)
        model = ToyNoisePredictor(dataclasses.replace(config, T=T))
    start = time.perf_counter()
    train_config = toy_train_config(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    losses: list[float] = []
    diverged = False
    try:
        for record in train_toy_steps(model, data, noise_schedule, train_config, False):
            losses.append(record.loss)
    except TrainingDivergedError:  # NaN: the samples of the last good weights are shown
        diverged = True
    seconds = time.perf_counter() - start
    samples = sample_points(model, noise_schedule, n=n_samples, seed=seed)
    finite = bool(torch.isfinite(samples).all()) and not diverged
    distance = nearest_data_distance(samples, data) if finite else math.inf
    return ToyRunResult(
        lr=lr,
        batch_size=batch_size,
        schedule=schedule,
        T=T,
        steps=steps,
        losses=tuple(losses),
        samples=samples,
        distance=distance,
        seconds=seconds,
    )


def hyperparameter_sweep(
    data: torch.Tensor,
    lrs: Sequence[float] = (1e-4, 1e-2, 3e-1),
    batch_sizes: Sequence[int] = (16, 256),
    *,
    steps: int = 300,
    schedule: ToyScheduleName = "cosine",
    T: int = 100,
    n_samples: int = 500,
    seed: int = 0,
) -> HyperparameterSweep:
    """:func:`train_and_sample_toy` for every (learning rate, batch size) pair, same seed.

    A grid search, the simplest way to choose hyperparameters: every run starts from the same
    initial weights and sees the same random numbers, so only the setting differs.
    """
    if not lrs or not batch_sizes:
        raise ValueError("give at least one learning rate and one batch size.")
    results = tuple(
        train_and_sample_toy(
            data,
            lr=lr,
            batch_size=bs,
            schedule=schedule,
            T=T,
            steps=steps,
            n_samples=n_samples,
            seed=seed,
        )
        for lr in lrs
        for bs in batch_sizes
    )
    return HyperparameterSweep(tuple(lrs), tuple(batch_sizes), results)


# ----------------------------------------------------------------------------- data quality
def add_outliers(
    data: torch.Tensor, fraction: float = 0.3, lim: float = 1.5, seed: int = 0
) -> torch.Tensor:
    """A copy of ``data`` with a ``fraction`` of its points replaced by uniform junk.

    The replaced points are drawn uniformly in ``[-lim, lim]^2``: "bad data", such as
    mislabelled or corrupted examples scraped along with the good ones.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}.")
    g = torch.Generator().manual_seed(seed)
    n_bad = round(fraction * data.shape[0])
    idx = torch.randperm(data.shape[0], generator=g)[:n_bad]
    out = data.clone()
    out[idx] = (2 * torch.rand(n_bad, data.shape[1], generator=g) - 1) * lim
    return out


def fraction_within(samples: torch.Tensor, points: torch.Tensor, radius: float) -> float:
    """Fraction of ``samples`` within distance ``radius`` of their nearest point in ``points``.

    ``(1/N) sum_i 1[min_j ||s_i - p_j|| < radius]``.
    """
    d = torch.cdist(samples.float(), points.float()).min(dim=1).values  # (N,)
    return (d < radius).float().mean().item()


def copy_fraction(
    samples: torch.Tensor, train: torch.Tensor, fresh: torch.Tensor, percentile: float = 5.0
) -> float:
    """Memorisation test: fraction of samples closer to the training set than fresh data is.

    tau = the ``percentile``-th percentile of the distances from *fresh* points (drawn from
    the same distribution, never trained on) to their nearest training point; the result is
    ``fraction_within(samples, train, tau)``. A model that makes new points gives about
    percentile/100 (5%); one that copies its training points gives ~100%. The same check as
    check 1 of :func:`diffusion_edu.metrics.memorisation_report` for MNIST digits.
    """
    d_fresh = torch.cdist(fresh.float(), train.float()).min(dim=1).values
    tau = torch.quantile(d_fresh, percentile / 100.0).item()
    return fraction_within(samples, train, tau)


# ----------------------------------------------------------------------------- the best possible
@torch.no_grad()
def ideal_noise_prediction_error(
    data: torch.Tensor,
    schedule: NoiseSchedule,
    timesteps: Sequence[int] | None = None,
    n: int = 2000,
    seed: int = 0,
) -> NoiseErrorCurve:
    """The noise-prediction error of the *best possible* model of ``data``, at each t.

    The data are taken as the distribution itself (N points, each with probability 1/N).
    The best eps_hat in mean squared error is the posterior mean E[eps | x_t], which
    :func:`exact_score` gives in closed form: eps_hat = -sqrt(1 - alpha_bar_t) * score
    (:func:`eps_to_score` backwards). Its error is what no network can beat; a trained
    model's curve (:func:`~diffusion_edu.metrics.noise_prediction_error`) lies above it.

    ``n`` clean points are drawn from ``data`` (with replacement, seeded); each gets one noise
    draw, the same at every t. Returns a :class:`~diffusion_edu.metrics.NoiseErrorCurve`
    (timesteps default: :func:`~diffusion_edu.metrics.noise_error_timesteps`).
    """
    if not isinstance(data, torch.Tensor) or data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"data must be points (N, D) with N >= 1, got {_shape_of(data)}.")
    _check_n(n)
    ts = noise_error_timesteps(schedule.T, timesteps)
    g = torch.Generator().manual_seed(seed)
    data = data.to(torch.float64)
    x0 = data[torch.randint(0, data.shape[0], (n,), generator=g)]  # (n, D)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)  # (n, D)
    eps_mse, x0_mse = [], []
    for t in ts:
        x_t = q_sample(x0, t, schedule, eps)
        b = schedule.sqrt_one_minus_alpha_bars[t]
        eps_hat = -b * exact_score(x_t, t, data, schedule)  # E[eps | x_t]
        x0_hat = (x_t - b * eps_hat) / schedule.sqrt_alpha_bars[t]  # E[x0 | x_t]
        eps_mse.append(float((eps_hat - eps).pow(2).mean()))
        x0_mse.append(float((x0_hat - x0).pow(2).mean()))
    return NoiseErrorCurve(
        timesteps=tuple(ts),
        eps_mse=tuple(eps_mse),
        x0_mse=tuple(x0_mse),
        snr=tuple(float(schedule.snr[t]) for t in ts),
        n=n,
        repeats=1,
    )


def _shape_of(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__
