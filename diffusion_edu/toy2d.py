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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from diffusion_edu.forward import as_timesteps, coef, q_sample
from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "ToyDataName",
    "make_spiral",
    "make_moons",
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
]

ToyDataName = Literal["spiral", "moons"]


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
    _check_n(n)
    g = torch.Generator().manual_seed(seed)
    angle = math.pi * torch.rand(n, generator=g)  # (n,)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, angle.cos(), 1.0 - angle.cos())
    y = torch.where(upper, angle.sin(), 0.5 - angle.sin())
    points = torch.stack([x - 0.5, y - 0.25], dim=1) / 1.5  # (n, 2), centred, in [-1, 1]
    return points + noise * torch.randn(n, 2, generator=g)


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
    """

    hidden: int = 128
    depth: int = 3
    time_dim: int = 32
    fourier_features: int = 6
    T: int = 100

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1 or self.T < 1 or self.fourier_features < 0:
            raise ValueError(f"hidden, depth and T must be >= 1, got {self}.")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be an even number >= 2, got {self.time_dim}.")


class ToyNoisePredictor(nn.Module):
    """A small MLP ``eps_theta(x_t, t)`` for 2-D points: ``model(x_t, t, labels=None)``.

    Input: the point ``x_t`` ``(B, 2)`` and the sinusoidal embedding of ``t`` (as in the U-Net,
    so the network knows how noisy its input is). Output: ``eps_hat`` ``(B, 2)``, its estimate
    of the noise that was added. ``labels`` is accepted (and must be None) so that the
    samplers can call every model the same way.
    """

    def __init__(self, config: ToyMLPConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ToyMLPConfig()
        layers: list[nn.Module] = []
        width = 2 + 4 * config.fourier_features + config.time_dim
        # Frequencies of the coordinate features: pi/2 * (1, 2, 4, ...).
        freqs = (math.pi / 2) * 2.0 ** torch.arange(config.fourier_features)
        self.register_buffer("freqs", freqs, persistent=False)
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    def forward(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if labels is not None:
            raise ValueError("ToyNoisePredictor is unconditional: call it with labels=None.")
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
        return self.net(torch.cat([x_t, features, emb.to(x_t.dtype)], dim=1))  # (B, 2)


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ToyTrainConfig:
    """The training run: ``steps`` Adam updates on batches of ``batch_size`` examples.

    ``num_threads``: CPU threads while training (1 suits the tiny 2-D MLP, whose matrix
    products are too small to split; None leaves PyTorch's setting alone).
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-2
    seed: int = 0
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"steps, batch_size and lr must be positive, got {self}.")


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
) -> Iterator[ToyTrainRecord]:
    """DDPM training (Ho et al. 2020, Algorithm 1), yielding a record after every step.

    Written for the 2-D toy, but nothing in it is 2-D: ``data`` may be ``(N, 2)`` points or
    ``(N, C, H, W)`` images, and ``model`` any ``(x_t, t) -> eps_hat`` (lesson 06 uses it for
    a few seconds of U-Net training).

    repeat:
        1. x_0 ~ data,  t ~ Uniform{1..T},  eps ~ N(0, I)
        2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (Eq. 4)
        3. gradient step on || eps - eps_theta(x_t, t) ||^2                   (Eq. 14)

    Seeded by ``config.seed`` (weights are not re-initialised: seed before building the model).
    The learning rate decays by cosine annealing to 10% over the run.
    """
    config = config or ToyTrainConfig()
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"data must have shape (N, ...) with N >= 1, got {tuple(data.shape)}.")
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
        yield from _train_loop(model, data, schedule, config, g, optimizer, scheduler, progress)
    finally:
        torch.set_num_threads(threads)
        model.eval()


def _train_loop(
    model: nn.Module,
    data: torch.Tensor,
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
        t = torch.randint(1, schedule.T + 1, (config.batch_size,), generator=g)  # 1..T
        eps = torch.randn(x0.shape, generator=g).to(x0)
        x_t = q_sample(x0, t, schedule, eps)
        loss = F.mse_loss(model(x_t, t.to(x0.device)), eps)
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
) -> list[float]:
    """Run :func:`train_toy_steps` to the end and return the loss of every step."""
    return [r.loss for r in train_toy_steps(model, data, schedule, config, progress)]


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
