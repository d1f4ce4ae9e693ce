"""The continuous-time view (lesson 12): the forward process as a stochastic differential
equation, sampling from a score with Langevin dynamics, the reverse SDE, the probability-flow
ODE, and how straight a sampler's paths are.

Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), "Score-Based Generative Modeling
through Stochastic Differential Equations" (ICLR), write noising as an SDE in a continuous time
tau in [0, 1]::

    dx = f(x, tau) dtau + g(tau) dW                          (Eq. 5)

DDPM's chain ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z`` is a discretisation of the
**variance-preserving SDE** (VP-SDE, their Eq. 11)::

    dx = -1/2 beta(tau) x dtau + sqrt(beta(tau)) dW

and with a constant beta this is the Ornstein-Uhlenbeck process: a random walk with a pull
back to 0 of strength beta / 2 (lesson 01's shrinking walk). :class:`VPSDE` builds it from any
:class:`~diffusion_edu.NoiseSchedule` so that its marginals at tau = t / T are *exactly* DDPM's
closed form (Eq. 4 of Ho et al. 2020): mean ``sqrt(alpha_bar_t) x_0``, variance
``1 - alpha_bar_t``.

Running time backwards needs only the score ``grad_x log p_tau(x)`` (Anderson 1982; Song et al.
2021, Eq. 6), and the course's noise predictor gives it: ``score = -eps / sqrt(1 - alpha_bar)``
(:func:`diffusion_edu.toy2d.eps_to_score`)::

    reverse SDE:           dx = [f - g^2 score] dtau + g dW_bar       (Eq. 6)
    probability-flow ODE:  dx = [f - 1/2 g^2 score] dtau              (Eq. 13)

Both carry noise to data with the same marginals p_tau; the ODE is deterministic.
:func:`reverse_sde_step` and :func:`probability_flow_step` are their Euler(-Maruyama) steps in
tau, and :func:`solve_reverse` runs either from tau = 1 to 0. The library's samplers are other,
better discretisations of the same two equations: ancestral DDPM sampling of the reverse SDE,
DDIM (eta = 0) and ``sampler="heun"`` of the ODE (:mod:`diffusion_edu.samplers`).

Before SDEs, Song & Ermon (2019), "Generative Modeling by Estimating Gradients of the Data
Distribution" (NeurIPS), sampled with **Langevin dynamics** (their Eq. 4), which needs nothing
but a score: :func:`langevin_dynamics` at one noise level, :func:`annealed_langevin` from high
noise to low (their Algorithm 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from diffusion_edu.forward import as_timesteps
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import eps_to_score

__all__ = [
    "VPSDE",
    "euler_maruyama",
    "langevin_dynamics",
    "annealed_langevin",
    "model_score",
    "reverse_sde_step",
    "probability_flow_step",
    "solve_reverse",
    "path_straightness",
]

Score = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class VPSDE:
    """The variance-preserving SDE ``dx = -1/2 beta(tau) x dtau + sqrt(beta(tau)) dW`` whose
    marginals at tau = t / T are those of ``schedule`` (Song et al. 2021, Eq. 11).

    ``beta(tau)`` is piecewise constant: on the t-th of T equal pieces of [0, 1] it is
    ``-T log(1 - beta_t)``, so that ``exp(-integral_0^{t/T} beta) = prod (1 - beta_i) =
    alpha_bar_t`` exactly. For DDPM's small betas that is about ``T beta_t``: the linear
    schedule (1e-4 ... 0.02, T = 1000) gives beta(tau) from 0.1 to 20, the paper's
    beta_min and beta_max (Sec. 3.4 and App. B).
    """

    schedule: NoiseSchedule

    def beta(self, tau: float | torch.Tensor) -> torch.Tensor:
        """beta(tau), float64, for tau in [0, 1] (at a piece's right end: that piece's value)."""
        tau = torch.as_tensor(tau, dtype=torch.float64)
        if not bool(((tau >= 0) & (tau <= 1)).all()):
            raise ValueError(f"tau must lie in [0, 1] (0 = data, 1 = noise), got {tau}.")
        T = self.schedule.T
        # the piece tau lies in, t - 1 < tau T <= t (a rounding error of 1e-9 does not move it)
        t = (tau * T - 1e-9).ceil().clamp(1, T).long()
        return -T * torch.log1p(-self.schedule.betas[t])

    def drift(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """f(x, tau) = -1/2 beta(tau) x: the pull towards 0."""
        return -0.5 * self.beta(tau).item() * x

    def diffusion(self, tau: float) -> float:
        """g(tau) = sqrt(beta(tau)): how much noise per unit of time."""
        return math.sqrt(self.beta(tau).item())

    def marginal(self, tau: float) -> tuple[float, float]:
        """``(mean coefficient, standard deviation)`` of x_tau given x_0: ``x_tau ~
        N(m x_0, s^2 I)`` with ``m = exp(-1/2 B)``, ``s^2 = 1 - exp(-B)``, ``B = integral_0^tau
        beta`` (Song et al. 2021, Eq. 29). At tau = t / T: ``sqrt(alpha_bar_t)`` and
        ``sqrt(1 - alpha_bar_t)``."""
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must lie in [0, 1], got {tau}.")
        T = self.schedule.T
        full = math.floor(tau * T)  # whole pieces below tau
        B = -torch.log1p(-self.schedule.betas[1 : full + 1]).sum().item()
        if full < T:
            B += (tau * T - full) * -math.log1p(-self.schedule.betas[full + 1].item())
        return math.exp(-0.5 * B), math.sqrt(-math.expm1(-B))


def _check_steps(steps: object, what: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{what} must be a whole number >= 1, got {steps!r}.")
    return steps


def euler_maruyama(
    sde: VPSDE,
    x0: torch.Tensor,
    steps: int,
    tau_end: float = 1.0,
    generator: torch.Generator | None = None,
    keep_path: bool = False,
) -> torch.Tensor:
    """Simulate the forward SDE from ``x0`` (tau = 0) to ``tau_end`` with ``steps`` equal
    Euler-Maruyama steps of size ``dtau = tau_end / steps``::

        x <- x + f(x, tau) dtau + g(tau) sqrt(dtau) z,    z ~ N(0, I)

    One step of size 1 / T is ``x (1 - beta'/2) + sqrt(beta') z`` with beta' = -log(1 - beta_t)
    (about beta_t): DDPM's ``sqrt(1 - beta_t) x + sqrt(beta_t) z`` up to terms of order beta^2.
    Returns x at ``tau_end``, or with ``keep_path`` every state ``(steps + 1, *x0.shape)``.
    """
    _check_steps(steps)
    if not 0.0 < tau_end <= 1.0:
        raise ValueError(f"tau_end must lie in (0, 1], got {tau_end!r}.")
    dtau = tau_end / steps
    x, path = x0, [x0]
    for i in range(steps):
        tau = (i + 1) * dtau  # the piece this step crosses (its right end: beta is constant there)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + sde.drift(x, tau) * dtau + sde.diffusion(tau) * math.sqrt(dtau) * z
        if keep_path:
            path.append(x)
    return torch.stack(path) if keep_path else x


def langevin_dynamics(
    score: Score,
    x: torch.Tensor,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
    keep_path: bool = False,
) -> torch.Tensor:
    """Langevin dynamics (Song & Ermon 2019, Eq. 4): ``steps`` times

        x <- x + (step_size / 2) score(x) + sqrt(step_size) z,    z ~ N(0, I)

    Uphill on log p plus noise: as step_size -> 0 and steps -> infinity the samples follow p
    wherever they start. With a finite step the stationary spread is slightly too wide: for
    p = N(mu, s^2) the variance is ``s^2 / (1 - step_size / (4 s^2))``.
    """
    _check_steps(steps)
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a number > 0, got {step_size!r}.")
    path = [x]
    for _ in range(steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + 0.5 * step_size * score(x) + math.sqrt(step_size) * z
        if keep_path:
            path.append(x)
    return torch.stack(path) if keep_path else x


def model_score(
    model: nn.Module | Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    t: int,
    cond: torch.Tensor | None = None,
) -> Score:
    """The score of q(x_t) that an eps model implies, as a function of x alone:
    ``x -> -model(x, t) / sqrt(1 - alpha_bar_t)`` (:func:`~diffusion_edu.toy2d.eps_to_score`)."""
    t = int(as_timesteps(t, 1, schedule, low=1)[0])

    @torch.no_grad()
    def score(x: torch.Tensor) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        return eps_to_score(model(x, tt, cond), tt, schedule)

    return score


def annealed_langevin(
    model: nn.Module | Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x: torch.Tensor,
    levels: Sequence[int],
    steps_per_level: int,
    step_size: float,
    generator: torch.Generator | None = None,
    keep_path: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) with an eps model's score.

    For each noise level t in ``levels`` (decreasing), ``steps_per_level`` Langevin steps on
    q(x_t) with step ``alpha_t = step_size * (1 - alpha_bar_t) / (1 - alpha_bar_{t_last})``:
    the paper's ``epsilon * sigma_i^2 / sigma_L^2`` with the noise variance 1 - alpha_bar_t of
    the VP path in place of sigma_i^2, so the step is ``step_size`` at the last (smallest)
    level and larger where the noise is large.
    """
    levels = [int(t) for t in levels]
    if not levels or any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ValueError(
            f"levels must be a non-empty, strictly decreasing list of t, got {levels}."
        )
    for t in levels:
        as_timesteps(t, 1, schedule, low=1)
    _check_steps(steps_per_level, "steps_per_level")
    last = 1.0 - schedule.alpha_bars[levels[-1]].item()
    path = [x]
    for t in levels:
        alpha = step_size * (1.0 - schedule.alpha_bars[t].item()) / last
        run = langevin_dynamics(model_score(model, schedule, t), x, alpha, steps_per_level,
                                generator, keep_path=True)  # fmt: skip
        x = run[-1]
        if keep_path:
            path.extend(run[1:])
    return torch.stack(path) if keep_path else x


def reverse_sde_step(
    score: torch.Tensor,
    x: torch.Tensor,
    tau: float,
    dtau: float,
    sde: VPSDE,
    noise: torch.Tensor,
) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse SDE (Song et al. 2021, Eq. 6), tau -> tau - dtau::

    x <- x - [f(x, tau) - g(tau)^2 score] dtau + g(tau) sqrt(dtau) noise
    """
    g2 = sde.beta(tau).item()
    return x - (sde.drift(x, tau) - g2 * score) * dtau + math.sqrt(g2 * dtau) * noise


def probability_flow_step(
    score: torch.Tensor, x: torch.Tensor, tau: float, dtau: float, sde: VPSDE
) -> torch.Tensor:
    """One Euler step of the probability-flow ODE (Song et al. 2021, Eq. 13), tau -> tau - dtau::

    x <- x - [f(x, tau) - 1/2 g(tau)^2 score] dtau
    """
    return x - (sde.drift(x, tau) - 0.5 * sde.beta(tau).item() * score) * dtau


@torch.no_grad()
def solve_reverse(
    model: nn.Module | Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    steps: int,
    ode: bool,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Carry ``x_T`` from tau = 1 to 0 in ``steps`` equal steps with an eps model's score:
    :func:`probability_flow_step` (``ode=True``) or :func:`reverse_sde_step` (``ode=False``).

    Returns the path ``(steps + 1, *x_T.shape)``, x_T first. The score at tau comes from the
    model at t = ceil(tau T) (the piece of the schedule tau lies in).
    """
    _check_steps(steps)
    sde, T = VPSDE(schedule), schedule.T
    dtau = 1.0 / steps
    x, path = x_T, [x_T]
    for i in range(steps, 0, -1):
        tau = i * dtau
        t = min(T, max(1, math.ceil(tau * T - 1e-9)))
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        score = eps_to_score(model(x, tt, cond), tt, schedule).to(x.dtype)
        if ode:
            x = probability_flow_step(score, x, tau, dtau, sde)
        else:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = reverse_sde_step(score, x, tau, dtau, sde, z)
        path.append(x)
    return torch.stack(path)


def path_straightness(path: torch.Tensor) -> torch.Tensor:
    """How straight each sample's path is: ``|x_end - x_start| / sum_k |x_{k+1} - x_k|``.

    ``path`` is ``(S + 1, B, ...)`` (a trajectory's ``xs``); returns ``(B,)`` in (0, 1]:
    1 for a straight line, smaller the more it bends or wanders.
    """
    if not isinstance(path, torch.Tensor) or path.ndim < 2 or path.shape[0] < 2:
        raise ValueError(
            "path must be a tensor (S + 1, B, ...) of at least two states, e.g. "
            f"sample(..., return_trajectory=True).xs; got {getattr(path, 'shape', type(path))}."
        )
    flat = path.flatten(2) if path.ndim > 2 else path.unsqueeze(-1)
    length = (flat[1:] - flat[:-1]).norm(dim=-1).sum(dim=0)
    chord = (flat[-1] - flat[0]).norm(dim=-1)
    return chord / length.clamp(min=1e-12)
