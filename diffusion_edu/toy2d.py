"""A 2-D playground for the reverse process: point clouds, a tiny MLP noise predictor, scores.

Images have 784 dimensions; a spiral has 2. Everything a diffusion model does to MNIST it does
here too (forward noising, noise estimation, iterative denoising), but each "image" is one
point in the plane, so we can *see* the whole distribution and the model's field of arrows.

* :func:`make_spiral`, :func:`make_moons`, :func:`make_toy_data`: the data sets, seeded.
* :class:`ToyNoisePredictor`: ``model(x_t, t, labels=None) -> eps_hat`` for 2-D points, the
  same calling convention as the U-Net, so the library's samplers work on it unchanged.
* :func:`train_toy_steps` / :func:`train_toy`: the DDPM training loop (Algorithm 1), small
  and seeded.
* :func:`eps_to_score`, :func:`score_field`, :func:`exact_score`: the score-based view,
  ``grad_x log q(x_t) = -eps / sqrt(1 - alpha_bar_t)`` (Song et al. 2021, Eq. 7-8 with
  Tweedie's formula; Luo 2022, "Understanding Diffusion Models", Eq. 151).
* :func:`nearest_data_distance`: how close generated points land to the data.
* :func:`make_moons_labelled` and ``ToyMLPConfig(num_classes=2)``: a class-conditional toy
  (the label is the "prompt"), trained with label dropout so classifier-free guidance works.
* :func:`train_and_sample_toy`, :func:`hyperparameter_sweep`: one seeded run (train, sample,
  measure) and a grid of them over learning rate and batch size.
* :func:`add_outliers`, :func:`fraction_within`, :func:`copy_fraction`: data quality and
  memorisation (garbage in, garbage out; too little data and the model copies it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_edu.forward import as_timesteps, coef
from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import diffusion_loss, drop_labels

__all__ = [
    "ToyDataName",
    "make_spiral",
    "make_moons",
    "make_moons_labelled",
    "make_toy_data",
    "toy_schedule",
    "ToyMLPConfig",
    "ToyNoisePredictor",
    "ToyTrainConfig",
    "ToyTrainRecord",
    "train_toy_steps",
    "train_toy",
    "eps_to_score",
    "score_field",
    "exact_score",
    "nearest_data_distance",
    "sample_points",
    "ToyScheduleName",
    "ToyRunResult",
    "HyperparameterSweep",
    "train_and_sample_toy",
    "hyperparameter_sweep",
    "add_outliers",
    "fraction_within",
    "copy_fraction",
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


def toy_schedule(T: int = 100) -> NoiseSchedule:
    """The schedule the 2-D lesson uses: cosine (Nichol & Dhariwal 2021) with T = 100 steps.

    Two dimensions need far fewer steps than an image; the cosine schedule spreads them
    evenly between "data" and "noise" (lesson 04).
    """
    return NoiseSchedule.cosine(T=T)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of points) must be an integer >= 1, got {n!r}.")


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ToyMLPConfig:
    """Size of the tiny noise predictor.

    Attributes:
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        time_dim: size of the sinusoidal time embedding.
        fourier_features: how many frequencies (pi/2, pi, 2 pi, ...) of sin/cos features of
            each coordinate to feed in besides x itself; 0 feeds x alone. A plain MLP on raw
            coordinates learns smooth functions first and blurs the spiral's arms together;
            these features let it draw sharp curves within a short training run (Tancik et al.
            2020, "Fourier features let networks learn high frequency functions").
        T: the number of diffusion steps the model will see (t is divided by T before
            embedding, so the embedding's frequencies suit any T).
        num_classes: number of class labels to condition on (the "prompt"), or None for an
            unconditional model. A conditional model has one extra learned label, the "no
            label" class ``model.null_label`` (= num_classes), as the U-Net does.
        label_dim: size of the learned label embedding (conditional models only).
    """

    hidden: int = 128
    depth: int = 3
    time_dim: int = 32
    fourier_features: int = 6
    T: int = 100
    num_classes: int | None = None
    label_dim: int = 16

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1 or self.T < 1 or self.fourier_features < 0:
            raise ValueError(f"hidden, depth and T must be >= 1, got {self}.")
        if self.num_classes is not None and (self.num_classes < 1 or self.label_dim < 1):
            raise ValueError(f"num_classes and label_dim must be >= 1 (or None), got {self}.")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be an even number >= 2, got {self.time_dim}.")


class ToyNoisePredictor(nn.Module):
    """A small MLP ``eps_theta(x_t, t)`` for 2-D points: ``model(x_t, t, labels=None)``.

    Input: the point ``x_t`` ``(B, 2)`` and the sinusoidal embedding of ``t`` (as in the U-Net,
    so the network knows how noisy its input is). Output: ``eps_hat`` ``(B, 2)``, its estimate
    of the noise that was added.

    ``labels``: for an unconditional model it must be None (accepted so the samplers can call
    every model the same way). With ``ToyMLPConfig(num_classes=K)`` it is a LongTensor ``(B,)``
    of class ids in 0..K, where K = ``model.null_label`` means "no label" (and None means
    "no label" for the whole batch); a learned embedding of the label joins the input, the
    way a text encoder's output joins Stable Diffusion's U-Net.
    """

    def __init__(self, config: ToyMLPConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ToyMLPConfig()
        layers: list[nn.Module] = []
        width = 2 + 4 * config.fourier_features + config.time_dim
        # One extra embedding row: the learned "no label" class for classifier-free guidance.
        self.label_emb = (
            nn.Embedding(config.num_classes + 1, config.label_dim)
            if config.num_classes is not None
            else None
        )
        width += config.label_dim if self.label_emb is not None else 0
        # Frequencies of the coordinate features: pi/2 * (1, 2, 4, ...).
        freqs = (math.pi / 2) * 2.0 ** torch.arange(config.fourier_features)
        self.register_buffer("freqs", freqs, persistent=False)
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    @property
    def null_label(self) -> int | None:
        """The class id that means "no label" (None for an unconditional model)."""
        return self.config.num_classes

    def forward(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if labels is not None and self.label_emb is None:
            raise ValueError(
                "This ToyNoisePredictor is unconditional: call it with labels=None "
                "(or build it with ToyMLPConfig(num_classes=...))."
            )
        if x_t.ndim != 2 or x_t.shape[1] != 2:
            raise ValueError(f"x_t must have shape (B, 2), got {tuple(x_t.shape)}.")
        B = x_t.shape[0]
        if isinstance(t, int):
            t = torch.full((B,), t, device=x_t.device)
        t = t.to(x_t.device).expand(B) if t.ndim == 0 else t.to(x_t.device)
        # Scale t to 0..1000 whatever T is, so the embedding's frequencies fit the range.
        emb = sinusoidal_embedding(t.float() * (1000.0 / self.config.T), self.config.time_dim)
        angles = x_t[:, :, None] * self.freqs.to(x_t)  # (B, 2, F)
        features = torch.cat([angles.sin(), angles.cos()], dim=2).flatten(1)  # (B, 4F)
        inputs = [x_t, features, emb.to(x_t.dtype)]
        if self.label_emb is not None:
            inputs.append(self.label_emb(self._check_labels(labels, B, x_t.device)).to(x_t.dtype))
        return self.net(torch.cat(inputs, dim=1))  # (B, 2)

    def _check_labels(
        self, labels: torch.Tensor | None, batch: int, device: torch.device
    ) -> torch.Tensor:
        null = self.config.num_classes
        assert null is not None
        if labels is None:
            return torch.full((batch,), null, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device)
        if labels.shape != (batch,) or labels.dtype != torch.long:
            raise ValueError(
                f"labels must be a LongTensor of shape ({batch},), got {tuple(labels.shape)} "
                f"{labels.dtype}."
            )
        if labels.numel() and (labels.min() < 0 or labels.max() > null):
            raise ValueError(f"labels must lie in 0..{null} ({null} = no label).")
        return labels


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ToyTrainConfig:
    """The training run: ``steps`` Adam updates on batches of ``batch_size`` examples.

    ``num_threads``: CPU threads while training (1 suits the tiny 2-D MLP, whose matrix
    products are too small to split; None leaves PyTorch's setting alone).
    ``label_dropout``: when training on labels, the probability p_uncond of replacing each
    label by the model's "no label" class (Ho & Salimans 2022, Algorithm 1), so that the same
    model also learns eps_theta(x_t, t, no label), which guidance needs.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-2
    seed: int = 0
    num_threads: int | None = 1
    label_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"steps, batch_size and lr must be positive, got {self}.")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}.")


@dataclass(frozen=True)
class ToyTrainRecord:
    """One training step: its index (0-based) and the batch's loss ||eps - eps_hat||^2."""

    step: int
    loss: float


def train_toy_steps(
    model: nn.Module,
    data: torch.Tensor,
    schedule: NoiseSchedule,
    config: ToyTrainConfig | None = None,
    progress: bool = True,
    labels: torch.Tensor | None = None,
) -> Iterator[ToyTrainRecord]:
    """DDPM training (Ho et al. 2020, Algorithm 1), yielding a record after every step.

    Written for the 2-D toy, but nothing in it is 2-D: ``data`` may be ``(N, 2)`` points or
    ``(N, C, H, W)`` images, and ``model`` any ``(x_t, t) -> eps_hat`` (lesson 06 uses it for
    a few seconds of U-Net training).

    repeat:
        1. x_0 ~ data,  t ~ Uniform{1..T},  eps ~ N(0, I)
        2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (Eq. 4)
        3. gradient step on || eps - eps_theta(x_t, t) ||^2                   (Eq. 14)

    ``labels`` (N,): the class of each data point, for a conditional model (one with a
    ``null_label``); each batch's labels are dropped to "no label" with probability
    ``config.label_dropout`` (classifier-free guidance training).

    Seeded by ``config.seed`` (weights are not re-initialised: seed before building the model).
    The learning rate decays by cosine annealing to 10% over the run.
    """
    config = config or ToyTrainConfig()
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (N, ...) with N >= 1, got {tuple(data.shape)}.")
    if labels is not None:
        if getattr(model, "null_label", None) is None:
            raise ValueError("labels were given but the model is unconditional (no null_label).")
        if labels.shape != (data.shape[0],):
            raise ValueError(
                f"labels must have shape ({data.shape[0]},), got {tuple(labels.shape)}."
            )
    g = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    # A 2-D MLP is so small that splitting each matrix product across threads costs more than
    # it saves (several times slower on a busy 2-core laptop), so by default train on one.
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.steps, eta_min=config.lr * 0.1
    )
    model.train()
    try:
        yield from _train_loop(
            model, data, labels, schedule, config, g, optimizer, scheduler, progress
        )
    finally:
        torch.set_num_threads(threads)
        model.eval()


def _train_loop(
    model: nn.Module,
    data: torch.Tensor,
    labels: torch.Tensor | None,
    schedule: NoiseSchedule,
    config: ToyTrainConfig,
    g: torch.Generator,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: bool,
) -> Iterator[ToyTrainRecord]:
    for step in tqdm(range(config.steps), desc="training the 2-D toy", disable=not progress):
        idx = torch.randint(0, data.shape[0], (config.batch_size,), generator=g)
        x0 = data[idx]  # (B, 2) points or (B, C, H, W) images
        y = None
        if labels is not None:  # the "prompt", sometimes replaced by "no label"
            y = drop_labels(labels[idx], model.null_label, config.label_dropout, g)
        loss = diffusion_loss(model, x0, schedule, labels=y, generator=g)  # Algorithm 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        yield ToyTrainRecord(step=step, loss=loss.item())


def train_toy(
    model: nn.Module,
    data: torch.Tensor,
    schedule: NoiseSchedule,
    config: ToyTrainConfig | None = None,
    progress: bool = True,
    labels: torch.Tensor | None = None,
) -> list[float]:
    """Run :func:`train_toy_steps` to the end and return the loss of every step."""
    return [r.loss for r in train_toy_steps(model, data, schedule, config, progress, labels)]


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
    """DDPM samples ``(n, 2)`` from a 2-D toy model, *not* clipped to [-1, 1].

    :func:`diffusion_edu.sample` with ``shape=(2,)`` and ``clip_x0=False`` (the points are not
    pixels: they live outside [-1, 1]). Runs on one CPU thread, like training (the MLP's matrix
    products are too small to split).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return sample(
            model,
            schedule,
            n=n,
            labels=labels,
            guidance=guidance,
            seed=seed,
            shape=(2,),
            clip_x0=False,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)


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


def _make_schedule(name: str, T: int) -> NoiseSchedule:
    if name == "cosine":
        return NoiseSchedule.cosine(T=T)
    if name == "linear":
        # Ho et al.'s betas 1e-4..0.02 were chosen for T = 1000; scale them so that a short
        # chain still ends in noise (beta_T * T = 20, as in DDPM).
        scale = 1000 / T
        return NoiseSchedule.linear(
            T=T, beta_start=min(1e-4 * scale, 0.1), beta_end=min(0.02 * scale, 0.9)
        )
    raise ValueError(f"schedule must be 'linear' or 'cosine', got {name!r}.")


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
    betas suit a chain of T steps; see :meth:`NoiseSchedule.linear`).
    """
    noise_schedule = _make_schedule(schedule, T)
    torch.manual_seed(seed)
    config = model_config or ToyMLPConfig()
    model = ToyNoisePredictor(ToyMLPConfig(**{**config.__dict__, "T": T}))
    start = time.perf_counter()
    train_config = ToyTrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    losses = train_toy(model, data, noise_schedule, train_config, progress=False)
    seconds = time.perf_counter() - start
    samples = sample_points(model, noise_schedule, n=n_samples, seed=seed)
    finite = bool(torch.isfinite(samples).all())
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
