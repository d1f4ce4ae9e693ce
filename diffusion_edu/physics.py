"""The physics behind the name: random walks, the heat equation, and the noising walk.

Lesson 01 ("ink in water") simulates what happens to a drop of ink, two ways:

* **particles**: every ink particle does a random walk. In each time step ``dt`` each of its
  coordinates moves by ``sqrt(2 D dt) * eps`` with ``eps ~ N(0, 1)``, so after time ``t`` its
  displacement has variance ``2 D t`` per coordinate (Einstein 1905, "the mean square
  displacement grows linearly with time"). ``D`` is the diffusion coefficient.
* **concentration**: the density ``c(x, t)`` of many such particles obeys the heat (diffusion)
  equation ``dc/dt = D * laplacian(c)`` (Fick's second law). Started from a point it is a
  Gaussian of variance ``2 D t``: the heat kernel.

Then the bridge to diffusion *models*: adding Gaussian noise to a pixel value step after step
is the same random walk, and the forward process of DDPM is that walk with a shrink,

    x_t = sqrt(1 - beta_t) * x_{t-1} + sqrt(beta_t) * eps        (DDPM, Eq. 2; see ``q_step``)

whose variance settles at 1 instead of growing without bound. :func:`noise_walk` runs either
walk and :func:`noise_walk_moments` gives the exact mean and variance of both.

Units: positions and times are in arbitrary units (think millimetres and seconds); only the
combination ``2 D t`` matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from diffusion_edu.forward import q_step
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "RandomWalk",
    "random_walk",
    "random_walk_variance",
    "ink_variance",
    "heat_equation",
    "heat_kernel",
    "concentration_variance",
    "NoiseWalk",
    "noise_walk",
    "noise_walk_moments",
    "ks_distance_to_normal",
    "markov_coefficients",
]


# ----------------------------------------------------------------------------- particles
@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class RandomWalk:
    """Positions of many particles over time.

    Attributes:
        positions: ``(n_steps + 1, n_particles, dim)``; index 0 is the start.
        D: the diffusion coefficient used.
        dt: the time between two saved positions.
    """

    positions: torch.Tensor
    D: float
    dt: float

    @property
    def n_steps(self) -> int:
        return self.positions.shape[0] - 1

    @property
    def times(self) -> torch.Tensor:
        """``(n_steps + 1,)`` times ``0, dt, 2 dt, ...`` in float64."""
        return torch.arange(self.n_steps + 1, dtype=torch.float64) * self.dt

    def variance(self) -> torch.Tensor:
        """Measured variance per coordinate at each time, averaged over coordinates.

        ``(n_steps + 1,)``. For a walk started at a point this estimates ``2 D t``.
        """
        return self.positions.var(dim=1).mean(dim=-1)  # (n_steps + 1,)

    def with_D(self, D: float) -> RandomWalk:
        """The same walk (same random kicks) with another diffusion coefficient.

        Every displacement is ``sqrt(2 D dt) * eps``, so changing D only rescales the
        displacements from the start by ``sqrt(D_new / D)``: no need to simulate again.
        """
        if not (math.isfinite(D) and D > 0):
            raise ValueError(f"D must be a positive number, got {D!r}.")
        start = self.positions[:1]
        scaled = start + (self.positions - start) * math.sqrt(D / self.D)
        return RandomWalk(positions=scaled, D=D, dt=self.dt)


def random_walk(
    n_particles: int,
    n_steps: int,
    D: float = 1.0,
    dt: float = 1.0,
    dim: int = 2,
    drop_radius: float = 0.0,
    generator: torch.Generator | None = None,
) -> RandomWalk:
    """Brownian motion of ``n_particles`` ink particles, ``n_steps`` steps of length ``dt``.

    Each step, each coordinate moves by ``sqrt(2 D dt) * eps``, ``eps ~ N(0, 1)``
    (the Euler-Maruyama step of ``dX = sqrt(2 D) dW``), so the displacement after time ``t``
    has variance ``2 D t`` per coordinate.

    Args:
        n_particles: how many particles (more = smoother statistics).
        n_steps: how many time steps.
        D: diffusion coefficient (> 0).
        dt: time step (> 0).
        dim: 1, 2 or 3 spatial dimensions.
        drop_radius: particles start uniformly in a disc (ball) of this radius around the
            origin; 0 starts them all at the origin.
        generator: a seeded ``torch.Generator`` for reproducible walks.

    Returns:
        :class:`RandomWalk` with positions ``(n_steps + 1, n_particles, dim)`` in float32.
    """
    if n_particles < 2 or n_steps < 1:
        raise ValueError(
            f"need n_particles >= 2 and n_steps >= 1, got {n_particles} and {n_steps}."
        )
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}.")
    for name, value in (("D", D), ("dt", dt)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if drop_radius < 0:
        raise ValueError(f"drop_radius must be >= 0, got {drop_radius!r}.")
    start = torch.zeros(n_particles, dim)  # (N, dim)
    if drop_radius > 0:
        # Uniform in a ball: a random direction times radius * U^(1/dim).
        direction = torch.randn(n_particles, dim, generator=generator)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        radius = drop_radius * torch.rand(n_particles, 1, generator=generator) ** (1.0 / dim)
        start = direction * radius
    kicks = torch.randn(n_steps, n_particles, dim, generator=generator)  # (n_steps, N, dim)
    kicks = kicks * math.sqrt(2.0 * D * dt)
    positions = torch.cat([start[None], start[None] + kicks.cumsum(dim=0)])  # (n_steps+1, N, dim)
    return RandomWalk(positions=positions, D=float(D), dt=float(dt))


def random_walk_variance(n_steps: int | torch.Tensor, sigma: float) -> float | torch.Tensor:
    """Variance of a 1-D random walk started at 0 after ``n_steps`` steps of std ``sigma``.

    The steps are independent, and variances of independent variables add:
    ``Var(eps_1 + ... + eps_n) = n * sigma**2``. (The *standard deviation* grows like sqrt(n).)
    """
    return n_steps * sigma**2


def ink_variance(t: float | torch.Tensor, D: float) -> float | torch.Tensor:
    """Einstein's relation: the spread of a drop grows as ``Var = 2 D t`` per coordinate."""
    return 2.0 * D * t


# ----------------------------------------------------------------------------- concentration
def heat_equation(
    c0: torch.Tensor,
    times: Sequence[float] | torch.Tensor,
    D: float = 1.0,
    dx: float = 1.0,
    max_courant: float = 0.2,
) -> torch.Tensor:
    """Solve the diffusion equation ``dc/dt = D * laplacian(c)`` on a 1-D or 2-D grid.

    Explicit finite differences (FTCS): one sub-step of length ``dt`` is

        c <- c + D dt / dx**2 * (sum over axes of c[i+1] - 2 c[i] + c[i-1])

    The walls of the container let nothing through (zero-flux boundaries), so the total
    amount of ink ``sum(c) * dx**dim`` is conserved exactly. Stability needs
    ``D dt / dx**2 <= 1 / (2 dim)``; sub-steps are chosen so that it is at most
    ``max_courant``. Away from the walls each sub-step adds exactly ``2 D dt`` to the variance
    of the ink's distribution, as the continuous equation does.

    Args:
        c0: initial concentration, ``(n,)`` or ``(H, W)``; use float64 for exact bookkeeping.
        times: increasing times ``>= 0`` at which to return the field.
        D: diffusion coefficient (> 0).
        dx: grid spacing (> 0).
        max_courant: the largest ``D dt / dx**2`` allowed (<= 1 / (2 dim)).

    Returns:
        ``(len(times), *c0.shape)``, the field at each requested time.
    """
    if c0.ndim not in (1, 2):
        raise ValueError(f"c0 must be 1-D (n,) or 2-D (H, W), got shape {tuple(c0.shape)}.")
    dim = c0.ndim
    if not (0 < max_courant <= 1.0 / (2 * dim)):
        raise ValueError(
            f"max_courant must be in (0, {1 / (2 * dim)}] for a {dim}-D grid (explicit finite "
            f"differences blow up beyond that), got {max_courant!r}."
        )
    if not (math.isfinite(D) and D > 0 and math.isfinite(dx) and dx > 0):
        raise ValueError(f"D and dx must be positive numbers, got D={D!r}, dx={dx!r}.")
    times_t = torch.as_tensor(times, dtype=torch.float64).flatten()
    if times_t.numel() == 0 or times_t.min() < 0 or (times_t.diff() < 0).any():
        raise ValueError("times must be a non-empty increasing sequence of numbers >= 0.")

    c = c0.clone()
    out, now = [], 0.0
    for target in times_t.tolist():
        interval = target - now
        n_sub = max(1, math.ceil(interval * D / (max_courant * dx**2))) if interval > 0 else 0
        if n_sub:
            r = D * (interval / n_sub) / dx**2  # Courant number, <= max_courant
            for _ in range(n_sub):
                c = c + r * _no_flux_laplacian(c)
        now = target
        out.append(c.clone())
    return torch.stack(out)  # (len(times), *shape)


def _no_flux_laplacian(c: torch.Tensor) -> torch.Tensor:
    """``sum over axes of c[i+1] - 2 c[i] + c[i-1]`` (grid units), with closed walls.

    Written as fluxes between neighbouring cells: what flows from cell i+1 into cell i leaves
    cell i+1, so the total is conserved exactly; nothing flows through the outer walls.
    """
    lap = torch.zeros_like(c)
    for axis in range(c.ndim):
        n = c.shape[axis]
        flux = c.narrow(axis, 1, n - 1) - c.narrow(axis, 0, n - 1)  # into cell i from i+1
        lap.narrow(axis, 0, n - 1).add_(flux)
        lap.narrow(axis, 1, n - 1).sub_(flux)
    return lap


def heat_kernel(x: torch.Tensor, t: float, D: float = 1.0, mass: float = 1.0) -> torch.Tensor:
    """The 1-D heat kernel: the exact solution started from ``mass`` at the origin.

    ``c(x, t) = mass / sqrt(4 pi D t) * exp(-x**2 / (4 D t))``, a Gaussian of variance 2 D t.
    """
    if t <= 0:
        raise ValueError(f"t must be > 0 (at t = 0 the kernel is a point), got {t!r}.")
    var = 2.0 * D * t
    return mass * torch.exp(-(x**2) / (2 * var)) / math.sqrt(2 * math.pi * var)


def concentration_variance(c: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """Spread of a 1-D ``(n,)`` or 2-D ``(H, W)`` concentration: its variance per axis, averaged.

    The concentration is treated as a distribution of ink over the grid (normalised by its
    total), centred on the grid; compare with ``2 D t`` (plus the initial spread).
    """
    dim = c.ndim
    total = c.sum()
    per_axis = []
    for axis in range(dim):
        n = c.shape[axis]
        x = (torch.arange(n, dtype=c.dtype) - (n - 1) / 2) * dx
        marginal = c.sum(dim=tuple(a for a in range(dim) if a != axis)) if dim > 1 else c
        mean = (marginal * x).sum() / total
        per_axis.append((marginal * (x - mean) ** 2).sum() / total)
    return torch.stack(per_axis).mean()


# ----------------------------------------------------------------------------- noise walks
@dataclass(frozen=True, eq=False)
class NoiseWalk:
    """States of a noising walk at the saved steps.

    Attributes:
        ts: ``(K,)`` LongTensor of the saved steps (0 = the start x_0).
        states: ``(K, *x0.shape)``, ``states[k]`` is x at step ``ts[k]``.
        shrink: True for the DDPM forward process, False for the plain random walk.
    """

    ts: torch.Tensor
    states: torch.Tensor
    shrink: bool


def noise_walk(
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    shrink: bool = True,
    save_at: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> NoiseWalk:
    """Add Gaussian noise to ``x0`` step after step, t = 1..T, with or without the shrink.

    * ``shrink=False``, the plain random walk:  ``x_t = x_{t-1} + sqrt(beta_t) eps``.
      Its variance grows as ``Var(x_0) + beta_1 + ... + beta_t``, without bound.
    * ``shrink=True``, DDPM's forward process (Eq. 2, via :func:`~diffusion_edu.q_step`):
      ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps``. Its variance settles at 1.

    Each step uses only the previous state and fresh noise: a Markov chain.

    Args:
        x0: the start, ``(B, ...)`` with a batch dimension first (e.g. ``(B, 1, 28, 28)``).
        schedule: gives beta_1..beta_T.
        shrink: see above.
        save_at: steps to keep (default: every step 0..T). Keeping fewer saves memory.
        generator: a seeded ``torch.Generator`` (on the CPU) for reproducible noise.

    Returns:
        :class:`NoiseWalk` with ``states`` of shape ``(len(save_at), *x0.shape)``.
    """
    keep = list(range(schedule.T + 1)) if save_at is None else sorted({int(t) for t in save_at})
    if not keep:
        raise ValueError("save_at is empty: name at least one step to keep, e.g. [schedule.T].")
    if keep[0] < 0 or keep[-1] > schedule.T:
        raise ValueError(f"save_at must hold steps in 0..{schedule.T}, got {keep[0]}..{keep[-1]}.")
    keep_set = set(keep)
    # Every sample shares the same t, so the batch can go through q_step as ONE sample of
    # x0.numel() values: same numbers, and no per-sample lookup of the schedule each step.
    x = x0.reshape(1, -1)  # (1, B * C * H * W)
    saved = [x.clone()] if 0 in keep_set else []
    for t in range(1, keep[-1] + 1):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if shrink:
            x = q_step(x, t, schedule, noise)
        else:
            x = x + math.sqrt(schedule.betas[t].item()) * noise
        if t in keep_set:
            saved.append(x.clone())
    states = torch.stack(saved).reshape(len(keep), *x0.shape)  # (K, B, ...)
    return NoiseWalk(ts=torch.tensor(keep, dtype=torch.long), states=states, shrink=shrink)


def noise_walk_moments(
    schedule: NoiseSchedule, mean0: float = 0.0, var0: float = 0.0, shrink: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance of a noising walk's value at every step t = 0..T.

    Start with mean ``mean0`` and variance ``var0``. Variances of independent terms add, and
    scaling by ``a`` multiplies a variance by ``a**2``:

    * plain walk:  mean_t = mean0,                     var_t = var0 + beta_1 + ... + beta_t
    * shrinking:   mean_t = sqrt(alpha_bar_t) mean0,   var_t = alpha_bar_t var0 + 1 - alpha_bar_t

    (the second is DDPM Eq. 4 averaged over x_0). Returns two float64 tensors of length T+1.
    """
    if shrink:
        mean = schedule.sqrt_alpha_bars * mean0
        var = schedule.alpha_bars * var0 + (1.0 - schedule.alpha_bars)
    else:
        mean = torch.full_like(schedule.betas, float(mean0))
        var = var0 + schedule.betas.cumsum(dim=0)
    return mean, var


# ----------------------------------------------------------------------------- statistics
def ks_distance_to_normal(samples: torch.Tensor) -> float:
    """Kolmogorov-Smirnov statistic of ``samples`` against N(0, 1).

    ``max_x |F_empirical(x) - Phi(x)|``: 0 for a perfect match; for n truly normal samples it
    is typically about ``0.87 / sqrt(n)`` (the median of Kolmogorov's distribution / sqrt(n)).
    """
    x = samples.detach().flatten().to(torch.float64).sort().values
    n = x.numel()
    if n == 0:
        raise ValueError("need at least one sample.")
    phi = torch.special.ndtr(x)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n - phi
    lower = phi - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(upper, lower).max())


def markov_coefficients(
    x_before_prev: torch.Tensor, x_prev: torch.Tensor, x_t: torch.Tensor
) -> tuple[float, float]:
    """Least-squares fit ``x_t ~ a * x_prev + b * x_before_prev``; returns ``(a, b)``.

    For the forward chain x_t depends on the past only through x_{t-1} (the Markov property),
    so ``a ~ sqrt(alpha_t)`` and ``b ~ 0``: once you know x_{t-1}, x_{t-2} tells you nothing more.
    """
    design = torch.stack([x_prev.flatten(), x_before_prev.flatten()], dim=1).double()  # (n, 2)
    target = x_t.flatten().double()[:, None]  # (n, 1)
    solution = torch.linalg.lstsq(design, target).solution.flatten()
    return float(solution[0]), float(solution[1])
