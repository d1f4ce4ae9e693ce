"""The reverse process: one DDPM, DDIM, DPM-Solver++, Euler or Heun step, and one sampling loop.

A sampler needs a trained network: any callable ``model(x_t, t, cond) -> prediction``. The
samplers never import a concrete model, so a tiny MLP, the U-Net or a DiT all work. What the
network predicts (``model.prediction``: the noise eps by default, or x_0, v, or a flow
velocity) is turned into the pair (x0_hat, eps_hat) by
:func:`diffusion_edu.targets.split_prediction`, and the steps below use that pair.

Notation (code name -> paper symbol), shared by the steps:

=================  ======================================================  ===============
code               meaning                                                 paper
=================  ======================================================  ===============
``x_t``            the current noisy sample                                x_t
``eps_hat``        the model's estimate of the noise in x_t                epsilon_theta(x_t, t)
``x0_hat``         the clean image that eps_hat implies                    "predicted x_0"
``alpha_bar_t``    ``schedule.alpha_bars[t]``                              alpha_bar_t
``sigma``          standard deviation of the fresh noise added             sigma_t
=================  ======================================================  ===============

Which sampler for which model: ``"ddpm"``, ``"ddim"`` and ``"dpm-solver++"`` for models on the
diffusion path (eps, x0, v); ``"euler"`` for flow models, which live on the straight path of
:mod:`diffusion_edu.targets`; ``"heun"`` (a second-order ODE solver, :func:`heun_step`) for both.

Guidance: classifier-free guidance (``guidance``, Ho & Salimans 2022), optionally only in an
interval of noise levels (``guidance_interval``, Kynkaanniemi et al. 2024), and autoguidance
by a weaker version of the model (``guide_model`` and ``autoguidance``, Karras et al. 2024).

The same loop (:func:`sample_steps`) also starts part-way, from a noised real image:
:func:`sdedit` ("img2img"). :func:`slerp` interpolates between two starting noises.

Latent diffusion (Rombach et al. 2022): a model with ``decode_latents`` (a
:class:`~diffusion_edu.models.LatentDiffusion`) is sampled in its latent space, of shape
``model.latent_shape``, without clipping (latents are not in [-1, 1]); :func:`sample` and
:func:`sdedit` then decode the final latents to pixels and clip those. A trajectory keeps the
latents (``xs``, ``x0_hats``) and holds the decoded pixels in ``images``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from diffusion_edu.device import cpu_threads, threads_for
from diffusion_edu.forward import as_timesteps, check_same_shape, coef, q_posterior, q_sample
from diffusion_edu.models.common import decodes_latents, null_condition, unwrap
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import (
    path_coefficients,
    predict_eps_from_x0,
    predict_x0_from_eps,
    prediction_of,
    split_prediction,
)

__all__ = [
    "SAMPLERS",
    "DEFAULT_STEPS",
    "ddpm_step",
    "ddim_step",
    "dpm_solver_pp_step",
    "euler_step",
    "heun_step",
    "ode_derivative",
    "ddim_timesteps",
    "sampling_timesteps",
    "model_calls",
    "plan_sampling",
    "check_guidance_interval",
    "step_guidance",
    "guided_prediction",
    "sample",
    "sample_steps",
    "sdedit",
    "slerp",
    "SampleStep",
    "Trajectory",
]

NoisePredictor = Callable[..., torch.Tensor]
Sampler = Literal["ddpm", "ddim", "dpm-solver++", "euler", "heun"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm-solver++", "euler", "heun")
DEFAULT_STEPS = 50  # the number of steps of every sampler but DDPM's when none is given


def ddpm_step(
    eps_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    variance: Literal["posterior", "beta"] = "posterior",
    clip_x0: bool = False,
) -> torch.Tensor:
    """One step of ancestral sampling, x_t -> x_{t-1}. DDPM, Algorithm 2, line 4.

    1. mean = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_hat)   (Eq. 11)
    2. sigma_t^2 = beta_tilde_t (``variance="posterior"``) or beta_t (``"beta"``); the paper
       reports that both give similar results (Section 3.2).
    3. x_{t-1} = mean + sigma_t * noise, except at t = 1 where no noise is added.

    With ``clip_x0=True`` the implied x0_hat is clipped to [-1, 1] first and the mean is taken
    from the posterior q(x_{t-1} | x_t, x0_hat) (Eq. 7). Without clipping the two are equal.
    ``noise=None`` draws fresh N(0, I) noise.
    """
    check_same_shape(x_t, eps_hat, "x_t", "eps_hat")
    if variance not in ("posterior", "beta"):
        raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}.")
    t = as_timesteps(t, x_t.shape[0], schedule, low=1)
    if clip_x0:
        x0_hat = predict_x0_from_eps(x_t, t, eps_hat, schedule).clamp(-1.0, 1.0)
        mean, _ = q_posterior(x0_hat, x_t, t, schedule)
    else:
        scale = coef(schedule.betas / schedule.sqrt_one_minus_alpha_bars.clamp(min=1e-20), t, x_t)
        mean = (x_t - scale * eps_hat) / coef(schedule.alphas.sqrt(), t, x_t)
    var = schedule.posterior_variance if variance == "posterior" else schedule.betas
    sigma = coef(var.sqrt(), t, x_t)
    sigma = sigma * (t > 1).to(sigma).view_as(sigma)  # no noise on the last step (t = 1)
    if noise is None:
        noise = torch.randn_like(x_t)
    check_same_shape(x_t, noise, "x_t", "noise")
    return mean + sigma * noise


def _step_timesteps(
    t: int | torch.Tensor, t_prev: int | torch.Tensor, batch: int, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, t_prev)`` as ``(B,)`` LongTensors, checked: 1 <= t <= T, 0 <= t_prev < t."""
    t = as_timesteps(t, batch, schedule, low=1)
    t_prev = as_timesteps(t_prev, batch, schedule, low=0, what="t_prev")
    if (t_prev >= t).any():
        raise ValueError(
            f"t_prev must be smaller than t (sampling runs from T down to 0), "
            f"got t={t.tolist()[:4]} and t_prev={t_prev.tolist()[:4]}."
        )
    return t, t_prev


def ddim_step(
    eps_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: bool = False,
) -> torch.Tensor:
    """One DDIM step, x_t -> x_{t_prev} for any earlier ``t_prev``. DDIM (Song et al. 2021), Eq. 12.

    1. x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t)     "predicted x_0"
    2. sigma = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
                   * sqrt(1 - alpha_bar_t / alpha_bar_prev)                    (Eq. 16)
    3. x_prev = sqrt(alpha_bar_prev) x0_hat                                    "predicted x_0" part
               + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat                    "direction to x_t"
               + sigma * noise                                                 random noise

    ``eta = 0`` is deterministic (DDIM proper); ``eta = 1`` with ``t_prev = t - 1`` is DDPM with
    the posterior variance. ``t_prev = 0`` returns x0_hat (alpha_bar_0 = 1).
    With ``clip_x0=True``, x0_hat is clipped to [-1, 1] and eps_hat re-derived from it.
    """
    check_same_shape(x_t, eps_hat, "x_t", "eps_hat")
    if not (eta >= 0.0):
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta!r}.")
    t, t_prev = _step_timesteps(t, t_prev, x_t.shape[0], schedule)
    x0_hat = predict_x0_from_eps(x_t, t, eps_hat, schedule)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_hat = predict_eps_from_x0(x_t, t, x0_hat, schedule)
    alpha_bar_t = coef(schedule.alpha_bars, t, x_t)
    alpha_bar_prev = coef(schedule.alpha_bars, t_prev, x_t)
    sigma = (
        eta
        * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)).sqrt()
        * (1 - alpha_bar_t / alpha_bar_prev).sqrt()
    )
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0.0).sqrt() * eps_hat
    x_prev = alpha_bar_prev.sqrt() * x0_hat + direction
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(x_t)
        check_same_shape(x_t, noise, "x_t", "noise")
        x_prev = x_prev + sigma * noise
    return x_prev


def dpm_solver_pp_step(
    x0_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor,
    schedule: NoiseSchedule,
    x0_hat_last: torch.Tensor | None = None,
    t_last: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """One DPM-Solver++(2M) step, x_t -> x_{t_prev}: Lu et al. 2022, "DPM-Solver++", Algorithm 2.

    DDIM is a first-order solver of the probability-flow ODE. Written with the model's data
    prediction x0_hat and the time variable lambda = log(alpha / sigma) (half the log-SNR),
    the ODE's solution over one step is exact up to one integral of x0_hat over lambda
    (Sec. 4.1). DDIM holds x0_hat constant across the step; DPM-Solver++(2M) lets it vary
    linearly in lambda, taking the slope from the x0_hat of the step before (Sec. 4.2,
    "multistep": no extra model call). First order -> second order: over a run of N steps
    the error falls like 1/N^2 instead of 1/N (``tests/test_samplers.py`` measures both on
    Gaussian data; on the shipped U-Net, whose clipped x0_hat is far from smooth, the gain
    is small: docs/performance.md, "Issue 11").

    =================  ==============================================  ===================
    code               meaning                                          paper (Algorithm 2)
    =================  ==============================================  ===================
    ``t``              the current timestep                             t_{i-1}
    ``t_prev``         the timestep to step to (smaller: less noise)     t_i
    ``t_last``         the timestep of the step before (larger)         t_{i-2}
    ``x0_hat``         the model's x_0 at (x_t, t)                      x_theta(x_{t_{i-1}})
    ``x0_hat_last``    the model's x_0 one step earlier, at t_last      x_theta(x_{t_{i-2}})
    ``alpha``          ``sqrt(alpha_bar)``                              alpha_t
    ``sigma``          ``sqrt(1 - alpha_bar)``                          sigma_t
    ``lam``            ``log(alpha / sigma) = log_snr / 2``             lambda_t
    ``h``, ``h_last``  this step's and the last step's size in lambda   h_i, h_{i-1}
    =================  ==============================================  ===================

    1. h = lambda_{t_prev} - lambda_t
    2. first order (``x0_hat_last=None``; Algorithm 2's first step):  D = x0_hat
    3. second order (Algorithm 2's loop): r = h_last / h with h_last = lambda_t - lambda_{t_last},
       D = (1 + 1 / (2 r)) x0_hat - 1 / (2 r) x0_hat_last
    4. x_prev = (sigma_prev / sigma_t) x_t - alpha_prev (exp(-h) - 1) D

    The first-order step is exactly DDIM with eta = 0: alpha_prev (1 - exp(-h)) =
    alpha_prev - alpha_t sigma_prev / sigma_t, so x_prev = alpha_prev x0_hat + sigma_prev eps_hat.

    The last step, to ``t_prev = 0`` (no noise: sigma = 0, lambda = infinity), is always first
    order and returns x0_hat: there h is infinite, and so would be the linear extrapolation of
    x0_hat. (The authors' code and diffusers' ``DPMSolverMultistepScheduler`` also drop to
    first order at the end: ``lower_order_final``.)

    ``t``, ``t_prev``, ``t_last`` are ints or LongTensors ``(B,)`` with ``t_last > t > t_prev``.
    Clipping: pass an already clipped x0_hat (``sample_steps`` does with ``clip_x0``; the
    paper's thresholding acts on x0_hat in the same way).
    """
    check_same_shape(x_t, x0_hat, "x_t", "x0_hat")
    t, t_prev = _step_timesteps(t, t_prev, x_t.shape[0], schedule)
    if (x0_hat_last is None) != (t_last is None):
        raise ValueError(
            "give both x0_hat_last and t_last (second order) or neither (first order, = DDIM)."
        )
    alpha, sigma = schedule.sqrt_alpha_bars, schedule.sqrt_one_minus_alpha_bars
    lam = schedule.log_snr / 2  # lambda_t = log(alpha_t / sigma_t); lam[0] = +inf
    h = lam[t_prev] - lam[t]  # (B,) float64; +inf on the final step to t_prev = 0
    D = x0_hat
    if x0_hat_last is not None:
        check_same_shape(x_t, x0_hat_last, "x_t", "x0_hat_last")
        t_last = as_timesteps(t_last, x_t.shape[0], schedule, low=1, what="t_last")  # type: ignore[arg-type]
        if (t_last <= t).any():
            raise ValueError(
                f"t_last (the step before) must be larger than t, got t_last="
                f"{t_last.tolist()[:4]} and t={t.tolist()[:4]}."
            )
        h_last = lam[t] - lam[t_last]  # (B,)
        half_over_r = torch.where(t_prev == 0, 0.0, h / (2 * h_last))  # 1 / (2 r); 0: first order
        # D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_last
        D = x0_hat + _per_sample(half_over_r, x_t) * (x0_hat - x0_hat_last)
    sigma_ratio = _per_sample(sigma[t_prev] / sigma[t], x_t)  # 0 when t_prev = 0
    one_minus_exp = _per_sample(alpha[t_prev] * -torch.expm1(-h), x_t)  # alpha_prev (1 - e^-h)
    return sigma_ratio * x_t + one_minus_exp * D


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) float64 values as (B, 1, ...) in ``like``'s dtype and device, to broadcast."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))


def euler_step(
    velocity: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    T: int,
    clip_x0: bool = False,
) -> torch.Tensor:
    """One Euler step of a flow model, x_s -> x_{s_prev} with s = t / T (Lipman et al. 2023,
    in the course's direction of time: s = 0 is the data, s = 1 pure noise).

    On the straight path ``x_s = (1 - s) x_0 + s eps`` the model predicts the velocity
    ``u = dx_s/ds = eps - x_0``; stepping back in time, ``x_{s_prev} = x_s + (s_prev - s) u``.
    With ``clip_x0=True`` the x_0 it implies (``x_s - s u``) is clipped to [-1, 1] first and
    the step lands on the straight line between that x_0 and the implied noise.
    """
    check_same_shape(x_t, velocity, "x_t", "velocity")
    if not (0 <= t_prev < t <= T):
        raise ValueError(f"need 0 <= t_prev < t <= T={T}, got t={t} and t_prev={t_prev}.")
    s, s_prev = t / T, t_prev / T
    if not clip_x0:
        return x_t + (s_prev - s) * velocity
    x0_hat = (x_t - s * velocity).clamp(-1.0, 1.0)
    eps_hat = (x_t - (1 - s) * x0_hat) / s
    return (1 - s_prev) * x0_hat + s_prev * eps_hat


def ode_derivative(x0_hat: torch.Tensor, eps_hat: torch.Tensor, flow: bool) -> torch.Tensor:
    """The slope an ODE sampler follows, from the model's ``(x0_hat, eps_hat)`` at one point.

    * ``flow=True`` (the straight path ``x_s = (1 - s) x_0 + s eps``, time s = t / T):
      ``dx/ds = eps_hat - x0_hat``, the velocity (Lipman et al. 2023, Sec. 4.1).
    * ``flow=False`` (the diffusion path, any of eps / x0 / v): the probability-flow ODE written
      in ``y = x / sqrt(1 - alpha_bar)`` and ``rho = sqrt(alpha_bar / (1 - alpha_bar))`` (the
      square root of the SNR), where it reads ``dy / drho = x0_hat``. It is the DDIM paper's
      Eq. 14, ``d x_bar = eps d sigma`` with ``x_bar = x / sqrt(alpha_bar)`` and ``sigma = 1 /
      rho`` (Song, Meng & Ermon 2021, Sec. 4.3), with y = x_bar / sigma: ``dy = (eps sigma -
      x_bar) d sigma / sigma^2 = -x0 d sigma / sigma^2 = x0 d rho``. Euler's method on either
      form is DDIM with eta = 0. This one keeps Heun's method well behaved at pure noise, where
      sigma is huge (2 x 10^4 at the cosine schedule's t = T) and rho is near 0; DPM-Solver++
      chose the data prediction x0 for the same reason (Lu et al. 2022, Sec. 3).
    """
    check_same_shape(x0_hat, eps_hat, "x0_hat", "eps_hat")
    return eps_hat - x0_hat if flow else x0_hat


def heun_step(
    slope: torch.Tensor,
    slope_next: torch.Tensor | None,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    schedule: NoiseSchedule,
    flow: bool,
) -> torch.Tensor:
    """One step of Heun's method (the explicit trapezoidal rule), x_t -> x_{t_prev}.

    Euler's method follows the slope at the start of the step. Heun's first takes that Euler
    step (the "predictor"), asks the model for the slope where it landed (``slope_next``, at
    ``t_prev``), and then steps from x_t again along the *average* of the two slopes (the
    "corrector"): second order, so over N steps the error falls like 1/N^2 instead of 1/N, for
    two model calls per step instead of one (Karras et al. 2022, "Elucidating the Design Space
    of Diffusion-Based Generative Models", Sec. 3 and Algorithm 1; there, as here, the step to
    zero noise stays an Euler step, ``slope_next=None``: the model is never asked at t = 0).

    ``slope``, ``slope_next``: :func:`ode_derivative` at (x_t, t) and at the Euler point.
    ``flow=True``: the step is in s = t / T on the straight path; ``flow=False``: in rho on the
    diffusion path's probability-flow ODE (with one slope this is exactly :func:`ddim_step`).
    """
    check_same_shape(x_t, slope, "x_t", "slope")
    if not (0 <= t_prev < t <= schedule.T):
        raise ValueError(f"need 0 <= t_prev < t <= T={schedule.T}, got t={t} and t_prev={t_prev}.")
    if slope_next is not None:
        check_same_shape(x_t, slope_next, "x_t", "slope_next")
        slope = (slope + slope_next) / 2
    if flow:
        return x_t + (t_prev - t) / schedule.T * slope
    a, a_prev = schedule.sqrt_alpha_bars[t].item(), schedule.sqrt_alpha_bars[t_prev].item()
    b, b_prev = (schedule.sqrt_one_minus_alpha_bars[i].item() for i in (t, t_prev))
    # x_prev = b_prev (y + (rho_prev - rho) slope) with y = x / b, rho = a / b; written so that
    # t_prev = 0 (b_prev = 0, rho_prev infinite) lands on the slope, x0_hat
    return (b_prev / b) * x_t + (a_prev - b_prev * a / b) * slope


def ddim_timesteps(T: int, steps: int, t_start: int | None = None) -> list[int]:
    """``steps + 1`` evenly spaced, strictly decreasing timesteps from ``t_start`` (default T)
    down to 0 (DDIM's tau, Sec. 4.2)."""
    t_start = T if t_start is None else t_start
    if isinstance(steps, bool) or not isinstance(steps, int) or not (1 <= steps <= t_start):
        limit = f"T={T}" if t_start == T else f"t_start={t_start}"
        raise ValueError(f"steps must be an integer in 1..{limit}, got {steps!r}.")
    return torch.linspace(t_start, 0, steps + 1, dtype=torch.float64).round().long().tolist()


def _check_t_start(T: int, t_start: int | None) -> int:
    if t_start is None:
        return T
    if isinstance(t_start, bool) or not isinstance(t_start, int) or not (1 <= t_start <= T):
        raise ValueError(
            f"t_start must be a whole number in 1..T={T} (the timestep the run starts from), "
            f"got {t_start!r}."
        )
    return t_start


def sampling_timesteps(
    sampler: str, T: int, steps: int | None = None, t_start: int | None = None
) -> list[int]:
    """The timesteps ``[t_start, ..., 0]`` a sampler visits; checks ``sampler`` and ``steps``.

    ``t_start`` (default T: a full run from pure noise) starts part-way, as :func:`sdedit` does.
    ``"ddpm"`` visits every timestep (DDPM's Algorithm 2); ``"ddim"``, ``"dpm-solver++"`` and
    ``"euler"`` take ``steps`` evenly spaced ones: ``steps`` is the number of steps (model
    evaluations, twice that with guidance) *this run* takes, at most ``t_start``. Its default
    keeps the step size of a full run of :data:`DEFAULT_STEPS`: ``round(50 * t_start / T)``
    steps (at least 1), so a run from ``t_start = T/2`` takes 25.

    DPM-Solver++ uses the same evenly spaced timesteps as DDIM, so that a comparison at equal
    steps compares the solvers alone. Spacing them evenly in log-SNR instead (the DPM-Solver
    papers' other choice) gave the same class agreement and Frechet distance on the shipped
    model (docs/performance.md, "Issue 11").
    """
    if sampler not in SAMPLERS:
        names = ", ".join(map(repr, SAMPLERS))
        raise ValueError(f"sampler must be one of {names}, got {sampler!r}.")
    full = t_start is None or t_start == T
    t_start = _check_t_start(T, t_start)
    span = f"T={T}" if full else f"t_start={t_start}"
    if sampler == "ddpm":
        if steps not in (None, t_start):
            raise ValueError(
                f"DDPM sampling takes all {span} steps; got steps={steps}. For fewer steps use "
                "sampler='ddim' (eta=1.0 gives DDPM-like noise)."
            )
        return list(range(t_start, -1, -1))
    if steps is not None and not (
        isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= t_start
    ):
        raise ValueError(f"steps must be a whole number in 1..{span}, got {steps!r}.")
    if steps is None:
        steps = max(1, round(min(DEFAULT_STEPS, T) * t_start / T))
    return ddim_timesteps(T, steps, t_start)


def model_calls(
    sampler: str,
    T: int,
    steps: int | None = None,
    guidance: float = 1.0,
    guidance_interval: Sequence[int] | None = None,
) -> int:
    """Network evaluations per image of a full run: what a sample costs.

    One per step (two for a guided step: conditional and unconditional, :func:`step_guidance`);
    Heun asks the model again at the end of every step but the last (:func:`heun_step`).
    With autoguidance (``sample(..., guide_model=..., autoguidance=w)``) the guide is called
    as many times again, on the same inputs.
    """
    timesteps = sampling_timesteps(sampler, T, steps)
    interval = check_guidance_interval(guidance_interval, T)

    def calls(t: int) -> int:
        return 1 if step_guidance(t, guidance, interval) == 1.0 else 2

    total = sum(calls(t) for t in timesteps[:-1])
    if sampler == "heun":
        total += sum(calls(t) for t in timesteps[1:-1])  # the corrector, at every t_prev > 0
    return total


def plan_sampling(
    model: NoisePredictor,
    T: int,
    sampler: str | None = None,
    steps: int | None = None,
    t_start: int | None = None,
) -> tuple[Sampler, list[int]]:
    """``(sampler, timesteps)`` for this model: checks that they fit, with a clear error.

    ``sampler=None`` picks ``"ddpm"``, or ``"euler"`` for a flow model.
    """
    prediction = prediction_of(model)
    sampler = sampler or ("euler" if prediction == "flow" else "ddpm")
    timesteps = sampling_timesteps(sampler, T, steps, t_start)
    _check_sampler(sampler, prediction)
    return sampler, timesteps  # type: ignore[return-value]


def _check_sampler(sampler: str, prediction: str) -> None:
    if prediction == "flow" and sampler not in ("euler", "heun"):
        raise ValueError(
            f"this model predicts a flow velocity (prediction='flow'), which sampler={sampler!r} "
            "cannot use: sample it with sampler='euler' or 'heun'."
        )
    if prediction != "flow" and sampler == "euler":
        raise ValueError(
            f"sampler='euler' follows a flow model's velocity, but this model predicts "
            f"{prediction!r}: use sampler='ddim', 'dpm-solver++', 'heun' or 'ddpm'."
        )


# ----------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class SampleStep:
    """One step of a sampling run, for watching or animating it."""

    index: int  # 0 for the first step
    t: int  # the timestep x_t was at
    t_prev: int  # the timestep the step moved to
    x_t: torch.Tensor  # (B, C, H, W) before the step
    x0_hat: torch.Tensor  # (B, C, H, W) the model's guess of the clean image
    x_prev: torch.Tensor  # (B, C, H, W) after the step
    guidance: float = 1.0  # the guidance scale w this step used (1: conditional only)


@dataclass(frozen=True)
class Trajectory:
    """What ``sample(..., return_trajectory=True)`` (or ``sdedit``) returns."""

    images: torch.Tensor  # (B, C, H, W), final samples in [-1, 1] (a latent model's: decoded)
    timesteps: list[int]  # [T (or t_start), ..., 0]: the timestep of each entry of xs
    xs: torch.Tensor  # (S + 1, B, C, H, W): x_T (or x_{t_start}), ..., x_0 on the CPU (or latents)
    x0_hats: torch.Tensor  # (S, B, C, H, W): predicted x_0 at each step, on the CPU


GuidanceInterval = tuple[int, int]


def check_guidance_interval(
    guidance_interval: Sequence[int] | None, T: int
) -> GuidanceInterval | None:
    """``guidance_interval`` checked and returned as ``(t_lo, t_hi)``, or None (guide every step).

    It must be a pair of whole numbers with ``0 <= t_lo < t_hi <= T``; the guided steps are
    those whose timestep t has ``t_lo < t <= t_hi`` (see :func:`step_guidance`).
    """
    if guidance_interval is None:
        return None
    if isinstance(guidance_interval, (str, bytes)) or not isinstance(guidance_interval, Sequence):
        raise ValueError(
            f"guidance_interval must be a pair (t_lo, t_hi) of timesteps, or None for every "
            f"step; got {guidance_interval!r}."
        )
    if len(guidance_interval) != 2:
        raise ValueError(
            f"guidance_interval must be a pair (t_lo, t_hi): two timesteps, got "
            f"{len(guidance_interval)} values {tuple(guidance_interval)!r}."
        )
    lo, hi = guidance_interval
    for name, value in (("t_lo", lo), ("t_hi", hi)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(
                f"guidance_interval's {name} must be a whole number (a timestep in 0..T={T}), "
                f"got {value!r}."
            )
    lo, hi = int(lo), int(hi)
    if not 0 <= lo < hi <= T:
        raise ValueError(
            f"guidance_interval=(t_lo, t_hi) needs 0 <= t_lo < t_hi <= T={T} (guidance at the "
            f"steps with t_lo < t <= t_hi), got ({lo}, {hi})."
        )
    return lo, hi


def step_guidance(t: int, guidance: float, guidance_interval: GuidanceInterval | None) -> float:
    """The guidance scale w of the step from timestep ``t``: ``guidance`` where
    ``t_lo < t <= t_hi`` (every step when ``guidance_interval`` is None), else 1.

    Guidance in a limited interval (Kynkaanniemi et al. 2024, "Applying Guidance in a Limited
    Interval Improves Sample and Distribution Quality in Diffusion Models", NeurIPS): a
    constant guidance weight over the whole chain is "clearly harmful toward the beginning of
    the chain (high noise levels), largely unnecessary toward the end (low noise levels), and
    only beneficial in the middle" (abstract). The paper's reading: at high noise, guidance
    drags the samples of a class towards a few of its coarse layouts (less variety, a worse
    FID); at low noise the layout is settled and the guided and conditional predictions
    nearly agree, so guiding there only costs a second model call. So they guide only at
    noise levels sigma in (sigma_lo, sigma_hi], with EDM's sigma = sqrt((1 - alpha_bar) /
    alpha_bar), which grows with t: a sigma interval is a timestep interval. Their guided
    prediction is D_u + w (D_c - D_u), the course's w. Settings: EDM2-XXL on ImageNet-512,
    FID 1.81 -> 1.40 (Table 1; the authors' code guides with w = 2 the 6 of 32 steps from
    sigma = 1.61 down to 0.28); DiT-XL/2 with w = 2.5 at sigma in (0.34, 1.02] (Table 1);
    Stable Diffusion XL at sigma in (0.28, 5.42], half of the steps. On the shipped digit
    model's cosine schedule (T = 1000), sigma = 0.28, 0.34, 1.02, 1.61 and 5.42 fall at
    t = 167, 202, 502, 643 and 882.

    Outside the interval the step uses the plain conditional prediction (w = 1): one model
    call instead of two, so a narrower interval is also cheaper.
    """
    if guidance_interval is None:
        return guidance
    lo, hi = guidance_interval
    return guidance if lo < t <= hi else 1.0


def guided_prediction(
    pred_cond: torch.Tensor, pred_uncond: torch.Tensor, guidance: float
) -> torch.Tensor:
    """Classifier-free guidance: ``pred_uncond + guidance * (pred_cond - pred_uncond)``.

    Ho & Salimans (2022), Eq. 6, with the course's w = their w + 1 (as diffusers'
    ``guidance_scale``): w = 1 is the conditional prediction, w = 0 the unconditional one,
    w > 1 extrapolates away from "no condition".
    """
    check_same_shape(pred_cond, pred_uncond, "pred_cond", "pred_uncond")
    return pred_uncond + guidance * (pred_cond - pred_uncond)


def _predict(
    model: NoisePredictor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None,
    guidance: float,
    guide_model: NoisePredictor | None = None,
    autoguidance: float = 1.0,
) -> torch.Tensor:
    """The model's prediction, with classifier-free guidance when ``guidance != 1`` and
    autoguidance when ``autoguidance != 1``.

    pred = pred_uncond + guidance * (pred_cond - pred_uncond)   (Ho & Salimans 2022, as in
    diffusers). Every target is an affine function of eps at a given (x_t, t), so mixing
    predictions mixes the noise estimates the same way.

    Autoguidance (Karras et al. 2024, with ``guide_model`` a weaker version of the model): every
    pass of the model, conditional or not, is replaced by ``guide + autoguidance * (model -
    guide)`` on the same input and condition (the authors' sampler, NVlabs/edm2
    ``generate_images.py``, does the same with denoised images: ``ref_Dx.lerp(Dx, guidance)``).
    Classifier-free guidance, when asked for too, then acts on the autoguided predictions.
    """

    def network(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        pred = model(x, t, c)
        if guide_model is None or autoguidance == 1.0:
            return pred
        return guided_prediction(pred, guide_model(x, t, c).to(pred.dtype), autoguidance)

    if cond is None or guidance == 1.0:
        return network(x_t, t, cond)
    null = null_condition(model, cond)  # type: ignore[arg-type]
    if null is None:  # any callable: two passes, cond=None meaning "no condition"
        pred_cond, pred_uncond = network(x_t, t, cond), network(x_t, t, None)
    else:  # one batched pass: [conditional; unconditional]
        both = network(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null]))
        pred_cond, pred_uncond = both.chunk(2)
    return guided_prediction(pred_cond, pred_uncond, guidance)


def _check_autoguidance(
    model: NoisePredictor, guide_model: NoisePredictor | None, autoguidance: float
) -> None:
    """Check ``guide_model`` and ``autoguidance`` for :func:`sample`, with a clear error.

    Autoguidance needs a guide that predicts the same target from the same inputs: the same
    ``prediction`` (eps, x0, v or flow), the same image shape, and, for a conditional model,
    the same kind of condition (a label model's guide knows the same classes).
    """
    if isinstance(autoguidance, bool) or not isinstance(autoguidance, numbers.Real):
        raise ValueError(f"autoguidance must be a number (1.0 = off), got {autoguidance!r}.")
    if not torch.isfinite(torch.tensor(float(autoguidance))):
        raise ValueError(f"autoguidance must be finite, got {autoguidance!r}.")
    if guide_model is None:
        if autoguidance != 1.0:
            raise ValueError(
                f"autoguidance={autoguidance!r} needs guide_model=...: a weaker version of the "
                "model (smaller or trained for less time, Karras et al. 2024) to guide it; or "
                "leave autoguidance=1.0."
            )
        return
    if guide_model is model:
        raise ValueError(
            "guide_model is the model itself: model - guide would be 0. Give a weaker version "
            "of the model (smaller, or trained for less time)."
        )
    mine, theirs = prediction_of(model), prediction_of(guide_model)
    if mine != theirs:
        raise ValueError(
            f"the model predicts {mine!r} but guide_model predicts {theirs!r}: autoguidance "
            "mixes the two predictions, so give a guide trained for the same target."
        )
    shape, guide_shape = _model_image_shape(model), _model_image_shape(guide_model)
    if shape is not None and guide_shape is not None and shape != guide_shape:
        raise ValueError(
            f"the model draws images of shape {shape} but guide_model {guide_shape}: give a "
            "guide for the same images."
        )
    classes = getattr(getattr(_unwrap_any(model), "config", None), "num_classes", None)
    guide_classes = getattr(getattr(_unwrap_any(guide_model), "config", None), "num_classes", None)
    if classes != guide_classes and classes is not None:
        raise ValueError(
            f"the model knows {classes} classes but guide_model "
            f"{'is unconditional' if guide_classes is None else f'knows {guide_classes}'}: "
            "autoguidance calls the guide with the same labels, so give a guide trained on "
            "the same classes."
        )


def _check_guide_device(guide_model: NoisePredictor | None, device: torch.device) -> None:
    guide_device = _model_device(guide_model) if guide_model is not None else None
    if guide_device is not None and guide_device.type != device.type:
        raise ValueError(
            f"guide_model is on {guide_device} but the sampling runs on {device}: move it with "
            f"guide_model.to({str(device)!r})."
        )


def _unwrap_any(model: object) -> object:
    """:func:`~diffusion_edu.models.common.unwrap` for a module; any other callable as it is."""
    return unwrap(model) if isinstance(model, torch.nn.Module) else model


def sample_steps(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    cond: torch.Tensor | None = None,
    sampler: Sampler | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
    progress: bool = False,
    t_start: int | None = None,
    guidance_interval: Sequence[int] | None = None,
    guide_model: NoisePredictor | None = None,
    autoguidance: float = 1.0,
) -> Iterator[SampleStep]:
    """Run the reverse process from ``x_T``, yielding a :class:`SampleStep` after every step.

    ``sampler="ddpm"`` takes all T steps (DDPM Algorithm 2, posterior variance);
    ``sampler="ddim"`` takes ``steps`` evenly spaced steps with DDIM's ``eta``;
    ``sampler="dpm-solver++"`` takes ``steps`` DPM-Solver++(2M) steps (deterministic);
    ``sampler="euler"`` takes ``steps`` Euler steps along a flow model's velocity;
    ``sampler="heun"`` takes ``steps`` Heun steps (:func:`heun_step`; ``2 * steps - 1`` model
    calls) along a flow model's velocity or a diffusion model's probability-flow ODE.
    None picks ``"ddpm"``, or ``"euler"`` for a flow model.

    ``t_start`` (default T) starts part-way: ``x_T`` is then a noisy sample at ``t_start``
    (what :func:`sdedit` passes), and ``steps`` counts the steps of this shorter run
    (:func:`sampling_timesteps`).

    ``guidance_interval=(t_lo, t_hi)`` guides only the steps whose timestep t has
    ``t_lo < t <= t_hi`` (:func:`step_guidance`); each :class:`SampleStep` says which
    scale it used.

    ``guide_model`` with ``autoguidance != 1`` guides every network pass by a weaker model
    (autoguidance, :func:`_predict`); :func:`_check_autoguidance` checks the pair.
    """
    sampler, timesteps = plan_sampling(model, schedule.T, sampler, steps, t_start)
    interval = check_guidance_interval(guidance_interval, schedule.T)
    _check_autoguidance(model, guide_model, autoguidance)
    prediction = prediction_of(model)
    batch = x_T.shape[0]
    x_t = x_T
    x0_hat_last: torch.Tensor | None = None  # DPM-Solver++(2M)'s memory: the last x0_hat...
    t_last: int | None = None  # ...and its timestep
    pairs = list(zip(timesteps[:-1], timesteps[1:], strict=True))
    for index, (t, t_prev) in enumerate(
        tqdm(pairs, desc=f"{sampler} sampling", disable=not progress)
    ):
        t_batch = torch.full((batch,), t, dtype=torch.long, device=x_t.device)
        w = step_guidance(t, guidance, interval)
        pred = _predict(model, x_t, t_batch, cond, w, guide_model, autoguidance).to(x_t.dtype)
        x0_hat, eps_hat = split_prediction(pred, x_t, t_batch, schedule, prediction)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        if sampler == "ddpm":
            x_prev = ddpm_step(eps_hat, x_t, t, schedule, noise=noise, clip_x0=clip_x0)
        elif sampler == "ddim":
            x_prev = ddim_step(
                eps_hat, x_t, t, t_prev, schedule, eta=eta, noise=noise, clip_x0=clip_x0
            )
        elif sampler == "dpm-solver++":  # x0_hat is already clipped, as the step expects
            x_prev = dpm_solver_pp_step(x0_hat, x_t, t, t_prev, schedule, x0_hat_last, t_last)
            x0_hat_last, t_last = x0_hat, t
        elif sampler == "heun":
            flow = prediction == "flow"
            slope = _slope(x_t, t_batch, x0_hat, eps_hat, schedule, prediction, clip_x0)
            x_prev = heun_step(slope, None, x_t, t, t_prev, schedule, flow)  # Euler: predictor
            if t_prev > 0:  # corrector: the slope where the Euler step landed
                t_next = torch.full_like(t_batch, t_prev)
                w_next = step_guidance(t_prev, guidance, interval)
                pred_next = _predict(
                    model, x_prev, t_next, cond, w_next, guide_model, autoguidance
                ).to(x_t.dtype)
                x0_next, eps_next = split_prediction(
                    pred_next, x_prev, t_next, schedule, prediction
                )
                if clip_x0:
                    x0_next = x0_next.clamp(-1.0, 1.0)
                slope_next = _slope(
                    x_prev, t_next, x0_next, eps_next, schedule, prediction, clip_x0
                )
                x_prev = heun_step(slope, slope_next, x_t, t, t_prev, schedule, flow)
        else:
            x_prev = euler_step(pred, x_t, t, t_prev, schedule.T, clip_x0=clip_x0)
        yield SampleStep(
            index=index, t=t, t_prev=t_prev, x_t=x_t, x0_hat=x0_hat, x_prev=x_prev, guidance=w
        )
        x_t = x_prev


def _slope(
    x_t: torch.Tensor,
    t: torch.Tensor,
    x0_hat: torch.Tensor,
    eps_hat: torch.Tensor,
    schedule: NoiseSchedule,
    prediction: str,
    clipped: bool,
) -> torch.Tensor:
    """:func:`ode_derivative` at (x_t, t); with a clipped x0_hat, eps_hat is re-derived from it
    on the model's path (as DDIM's and Euler's ``clip_x0`` do), so the pair stays consistent."""
    if clipped:
        a, b = path_coefficients(t, schedule, prediction, x_t)  # type: ignore[arg-type]
        eps_hat = (x_t - a * x0_hat) / b
    return ode_derivative(x0_hat, eps_hat, prediction == "flow")


def _model_image_shape(model: NoisePredictor) -> tuple[int, int, int] | None:
    """``(C, H, W)`` the sampler draws for ``model``: a latent model's latent grid, else the
    images of its config (None if it has none)."""
    if decodes_latents(model):
        return tuple(unwrap(model).latent_shape)  # type: ignore[arg-type, union-attr]
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_size") and hasattr(config, "in_channels"):
        return (config.in_channels, config.image_size, config.image_size)
    return None


def _model_device(model: NoisePredictor) -> torch.device | None:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def _condition(
    n: int | None,
    labels: Sequence[int] | torch.Tensor | None,
    cond: torch.Tensor | None,
    prompts: str | Sequence[str] | None = None,
) -> tuple[int | None, torch.Tensor | None]:
    """``(n, cond)`` from ``labels``, ``cond`` or ``prompts``, checked: one condition per image."""
    given = [
        name
        for name, value in (("labels", labels), ("cond", cond), ("prompts", prompts))
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"give one of labels=..., cond=... or prompts=..., not {' and '.join(given)} "
            "(labels and prompts are two kinds of cond)."
        )
    if prompts is not None:
        # The tokenizer sits beside the samplers in the core; imported here, where it is used.
        from diffusion_edu.text import tokenize

        cond = tokenize(prompts)  # (B, PROMPT_LENGTH) token ids; PromptError on unknown words
        if n is not None and n != cond.shape[0]:
            raise ValueError(
                f"n={n} but {cond.shape[0]} prompts were given: give one prompt per image."
            )
    if labels is not None:
        cond = torch.as_tensor(labels, dtype=torch.long)
        if cond.ndim != 1:
            raise ValueError(
                f"labels must be a 1-D list of class ids, got shape {tuple(cond.shape)}."
            )
    if cond is not None:
        if n is not None and n != cond.shape[0]:
            raise ValueError(
                f"n={n} but {cond.shape[0]} labels were given: give one label per image."
            )
        n = cond.shape[0]
    return n, cond


def _seeded_generator(device: torch.device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    return generator


def _run(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    x_start: torch.Tensor,
    cond: torch.Tensor | None,
    sampler: Sampler | None,
    steps: int | None,
    eta: float,
    guidance: float,
    generator: torch.Generator,
    clip_x0: bool,
    progress: bool,
    return_trajectory: bool,
    t_start: int | None = None,
    guidance_interval: GuidanceInterval | None = None,
    guide_model: NoisePredictor | None = None,
    autoguidance: float = 1.0,
) -> torch.Tensor | Trajectory:
    """Run :func:`sample_steps` to the end (model in eval mode, the thread policy), collecting
    the trajectory if asked: what :func:`sample` and :func:`sdedit` share.

    A latent model's run is not clipped (its latents have unit std, not a [-1, 1] range);
    its final latents are decoded to pixels, and ``clip_x0`` clips those.
    """
    latent = decodes_latents(model)
    device = x_start.device
    if cond is not None:
        cond = cond.to(device)
    networks = [m for m in (model, guide_model) if isinstance(m, torch.nn.Module)]
    was_training = [m for m in networks if m.training]
    for network in networks:
        network.eval()
    try:
        with cpu_threads(threads_for(model, device)):  # the thread policy (device.py)
            xs, x0_hats, timesteps = [x_start.cpu()], [], []
            x = x_start
            for step in sample_steps(
                model, schedule, x_start, cond, sampler, steps, eta, guidance, generator,
                clip_x0 and not latent, progress, t_start, guidance_interval, guide_model,
                autoguidance,
            ):  # fmt: skip
                x = step.x_prev
                if return_trajectory:
                    timesteps.append(step.t)
                    xs.append(x.cpu())
                    x0_hats.append(step.x0_hat.cpu())
            if latent:
                x = unwrap(model).decode_latents(x)  # (B, C, H, W) latents -> pixels
    finally:
        for network in was_training:
            network.train()
    images = x.clamp(-1.0, 1.0) if clip_x0 else x  # data in [-1, 1]; other data left as it is
    if not return_trajectory:
        return images
    return Trajectory(
        images=images,
        timesteps=timesteps + [0],
        xs=torch.stack(xs),  # (S + 1, B, C, H, W)
        x0_hats=torch.stack(x0_hats),  # (S, B, C, H, W)
    )


@torch.no_grad()
def sample(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    n: int | None = None,
    labels: Sequence[int] | torch.Tensor | None = None,
    sampler: Sampler | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 1.0,
    seed: int | None = None,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
    shape: tuple[int, ...] | None = None,
    clip_x0: bool = True,
    progress: bool = True,
    cond: torch.Tensor | None = None,
    x_T: torch.Tensor | None = None,
    guidance_interval: Sequence[int] | None = None,
    prompts: str | Sequence[str] | None = None,
    guide_model: NoisePredictor | None = None,
    autoguidance: float = 1.0,
) -> torch.Tensor | Trajectory:
    """Draw new images from a trained noise predictor, starting from pure noise x_T ~ N(0, I).

    Args:
        model: callable ``(x_t, t, cond) -> prediction`` (e.g. :class:`~diffusion_edu.UNet`).
        schedule: the schedule the model was trained with.
        n: how many images (or give ``labels``/``cond``: one image per entry).
        labels: class labels for a class-conditional model, e.g. ``[0, 1, ..., 9]``.
        sampler: ``"ddpm"`` (all T steps), ``"ddim"``, ``"dpm-solver++"``, ``"euler"`` (flow
            models) or ``"heun"`` (``steps`` steps, default :data:`DEFAULT_STEPS`). None:
            ``"ddpm"``, or ``"euler"`` for a flow model.
        eta: DDIM's noise level (0 = deterministic).
        guidance: classifier-free guidance scale w in
            ``eps = eps_uncond + w * (eps_cond - eps_uncond)``; 1.0 is plain conditional sampling.
        guidance_interval: ``(t_lo, t_hi)``: guide (scale ``guidance``) only the steps whose
            timestep t has ``t_lo < t <= t_hi``, and take the plain conditional prediction
            (w = 1, one model call) at the others (Kynkaanniemi et al. 2024; see
            :func:`step_guidance`). None (default): every step.
        guide_model, autoguidance: autoguidance (Karras et al. 2024, "Guiding a Diffusion
            Model with a Bad Version of Itself"): every network pass becomes
            ``guide + autoguidance * (model - guide)``, where ``guide_model`` is a weaker
            version of the model (smaller, or trained for less time), conditioned the same
            way. It costs one pass of the guide per pass of the model. 1.0 (default): off.
            Combines with ``guidance``, which then mixes autoguided predictions.
        seed: same seed, same device -> the same images.
        return_trajectory: also return every x_t and x0_hat (for animations), as a
            :class:`Trajectory`.
        device: where to sample; default: the model's device.
        shape: ``(C, H, W)`` of one image; default: from ``model.config``. For a latent
            model (one with ``decode_latents``): the latents', default ``model.latent_shape``.
        clip_x0: clip the predicted x_0 to [-1, 1] at each step, and the result at the end
            (standard practice for images in [-1, 1]); False for data on another scale,
            e.g. the 2-D points of lesson 05.
        cond: any other condition, one row per image (e.g. token ids ``(n, L)`` of a text
            prompt), instead of ``labels``.
        prompts: text prompts for a text-conditioned model, one image each, e.g.
            ``["a bold seven", "a thin 3 leaning left"]``: the same as
            ``cond=diffusion_edu.text.tokenize(prompts)``. Give one of ``labels``, ``cond``
            and ``prompts``.
        x_T: start from this noise ``(n, C, H, W)`` (a latent model's: latent noise,
            ``(n, *model.latent_shape)``) instead of drawing it (to compare samplers
            from the same start, or to morph between starts); ``seed`` then seeds only the
            fresh noise of the steps (DDPM, DDIM with eta > 0).

    Returns:
        ``(n, C, H, W)`` images (in [-1, 1] with ``clip_x0``), or a :class:`Trajectory`. A
        latent model's are decoded pixels; its trajectory's ``xs`` and ``x0_hats`` are latents.
    """
    if x_T is not None:
        if not isinstance(x_T, torch.Tensor) or x_T.ndim < 2:
            raise ValueError(
                f"x_T must be a tensor of starting noise (n, C, H, W), got "
                f"{tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__}."
            )
        if n is None and labels is None and cond is None and prompts is None:
            n = x_T.shape[0]
    n, cond = _condition(n, labels, cond, prompts)
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"give n >= 1 (how many images) or a list of labels; got n={n!r}.")
    if guidance != 1.0 and cond is None:
        raise ValueError("classifier-free guidance needs labels: pass labels=... or guidance=1.0.")
    interval = check_guidance_interval(guidance_interval, schedule.T)
    _check_autoguidance(model, guide_model, autoguidance)
    if x_T is not None:
        if x_T.shape[0] != n:
            raise ValueError(
                f"x_T holds {x_T.shape[0]} starting noises for {n} images: give one each."
            )
        if shape is not None and tuple(x_T.shape[1:]) != tuple(shape):
            raise ValueError(f"x_T's images are {tuple(x_T.shape[1:])}, but shape={tuple(shape)}.")
        shape = tuple(x_T.shape[1:])
    if shape is None:
        shape = _model_image_shape(model)
        if shape is None:
            raise ValueError("cannot tell the image shape from this model: pass shape=(C, H, W).")
    device = (
        torch.device(device)
        if device is not None
        else (_model_device(model) or torch.device("cpu"))
    )
    _check_guide_device(guide_model, device)
    generator = _seeded_generator(device, seed)
    if x_T is None:
        x_T = torch.randn((n, *shape), generator=generator, device=device)  # (B, C, H, W)
    else:
        x_T = x_T.to(device)
    return _run(
        model, schedule, x_T, cond, sampler, steps, eta, guidance, generator, clip_x0, progress,
        return_trajectory, None, interval, guide_model, autoguidance,
    )  # fmt: skip


@torch.no_grad()
def sdedit(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    t_start: int,
    labels: Sequence[int] | torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    sampler: Sampler = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 1.0,
    seed: int | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    clip_x0: bool = True,
    guidance_interval: Sequence[int] | None = None,
    prompts: str | Sequence[str] | None = None,
    guide_model: NoisePredictor | None = None,
    autoguidance: float = 1.0,
) -> torch.Tensor | Trajectory:
    """Start the reverse process from a noised real image: SDEdit (Meng et al. 2022), "img2img".

    SDEdit, Sec. 3: perturb the guide image with the forward process (the SDE) up to
    an intermediate time, then run the reverse process from there. The noise drowns the
    image's fine detail but not its coarse layout, so the result is a realistic image that
    keeps the guide's overall shape. ``t_start`` sets the trade-off: small keeps the image
    (faithful), ``t_start = T`` ignores it (realistic, but a new image).

    1. eps ~ N(0, I) (seeded);  x_{t_start} = sqrt(alpha_bar) images + sqrt(1 - alpha_bar) eps
       (:func:`~diffusion_edu.q_sample`, DDPM Eq. 4)
    2. the same loop as :func:`sample` (:func:`sample_steps` with ``t_start``), from t_start
       down to 0.

    The paper runs the stochastic reverse SDE (here ``sampler="ddpm"``, or ``"ddim"`` with
    ``eta=1``); the default deterministic DDIM gives the same kind of result in fewer steps.

    A latent model noises and denoises the guides' latents (``model.encode_images``), then
    decodes the result, as Stable Diffusion's img2img does.

    Args:
        images: (B, C, H, W) the guides, in [-1, 1] (e.g. real digits or rough sketches).
        t_start: 0..T. 0 returns the input unchanged (a copy): there is nothing to undo.
        labels, cond, prompts: what to ask for (as in :func:`sample`), one per image.
        steps: the steps *this* run takes from t_start to 0 (its cost in model calls), at
            most t_start; default keeps the step size of a full 50-step run
            (``round(50 * t_start / T)``). ``"ddpm"`` always takes all t_start steps.
        seed: same seed -> the same noise and the same result.
        guidance_interval: ``(t_lo, t_hi)`` in the full run's timesteps (0..T), as in
            :func:`sample`: only the steps of this run with ``t_lo < t <= t_hi`` are guided.
        Other arguments: as in :func:`sample`.

    Returns:
        (B, C, H, W) images (in [-1, 1] with ``clip_x0``), or a :class:`Trajectory` whose
        ``timesteps`` run ``[t_start, ..., 0]``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] < 1:
        raise ValueError(
            "images must be a tensor (B, C, H, W) of guide images with B >= 1, got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}."
        )
    if isinstance(t_start, bool) or not isinstance(t_start, int) or not 0 <= t_start <= schedule.T:
        raise ValueError(
            f"t_start must be a whole number in 0..T={schedule.T} (how far to noise the images "
            f"before denoising them), got {t_start!r}."
        )
    _, cond = _condition(images.shape[0], labels, cond, prompts)
    if guidance != 1.0 and cond is None:
        raise ValueError("classifier-free guidance needs labels: pass labels=... or guidance=1.0.")
    interval = check_guidance_interval(guidance_interval, schedule.T)
    _check_autoguidance(model, guide_model, autoguidance)
    if t_start > 0:  # check sampler and steps before any work
        plan_sampling(model, schedule.T, sampler, steps, t_start)
    device = _model_device(model) or images.device
    _check_guide_device(guide_model, device)
    images = images.to(device)
    if t_start == 0:
        out = images.clone()
        if not return_trajectory:
            return out
        empty = images.new_zeros((0, *images.shape)).cpu()
        return Trajectory(images=out, timesteps=[0], xs=out.cpu()[None], x0_hats=empty)
    generator = _seeded_generator(device, seed)
    # A latent model's data are the guides' latents (its x_0), not their pixels.
    x0 = unwrap(model).encode_images(images) if decodes_latents(model) else images
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    x_start = q_sample(x0, t_start, schedule, noise)  # 1. (B, C, H, W) at t_start
    return _run(
        model, schedule, x_start, cond, sampler, steps, eta, guidance, generator, clip_x0,
        progress, return_trajectory, t_start, interval, guide_model, autoguidance,
    )  # fmt: skip


# ----------------------------------------------------------------------------- noise
def slerp(a: torch.Tensor, b: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two batches of noise, per batch item (flattened).

    Shoemake (1985), as White (2016, "Sampling Generative Networks") recommends for the
    latents of generative models: with omega the angle between a and b,

        slerp(a, b, w) = sin((1 - w) omega) / sin(omega) a + sin(w omega) / sin(omega) b

    Why not lerp ``(1 - w) a + w b``? Gaussian noise in D dimensions lives on a thin shell:
    its norm is almost always close to sqrt(D), and two draws are almost orthogonal. The
    lerp midpoint of two such vectors has norm about sqrt(D) / sqrt(2) = 0.71 sqrt(D): a
    noise the model never saw at t = T (too quiet), so the images in the middle of a lerp
    fade. Slerp follows the shell: every point keeps a norm close to sqrt(D).

    Args:
        a, b: (B, ...) tensors of the same shape, e.g. two x_T batches; each item is
            flattened to one vector.
        weight: in [0, 1] (0 gives a, 1 gives b): a number, or a tensor (B,) with one
            weight per item (e.g. a ``torch.linspace(0, 1, B)`` sweep between two
            expanded noises).

    Returns:
        (B, ...) like ``a``. Where a and b are (nearly) parallel or opposite, the arc is not
        defined and lerp is used.
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("a and b must be tensors (B, ...).")
    check_same_shape(a, b, "a", "b")
    if a.ndim < 1 or a.shape[0] < 1:
        raise ValueError(f"a and b need a batch dimension first, (B, ...), got {tuple(a.shape)}.")
    batch = a.shape[0]
    w = torch.as_tensor(weight, dtype=torch.float64).detach().cpu()
    if w.ndim == 0:
        w = w.expand(batch)
    elif w.shape != (batch,):
        raise ValueError(
            f"weight must be a number or a tensor of shape ({batch},), got shape {tuple(w.shape)}."
        )
    if not (torch.isfinite(w).all() and (w >= 0).all() and (w <= 1).all()):
        raise ValueError(f"weight must lie in [0, 1] (0 gives a, 1 gives b), got {weight!r}.")
    a_flat = a.reshape(batch, -1).to(torch.float64)  # (B, D)
    b_flat = b.reshape(batch, -1).to(torch.float64)  # (B, D)
    norms = a_flat.norm(dim=1) * b_flat.norm(dim=1)  # (B,)
    if (norms == 0).any():
        raise ValueError("slerp needs non-zero vectors: the angle to a zero vector is undefined.")
    w = w.to(a_flat.device)
    omega = ((a_flat * b_flat).sum(dim=1) / norms).clamp(-1.0, 1.0).acos()  # (B,) the angle
    sin_omega = omega.sin()
    flat = sin_omega < 1e-6  # parallel or opposite: fall back to lerp
    safe = torch.where(flat, 1.0, sin_omega)
    weight_a = torch.where(flat, 1 - w, ((1 - w) * omega).sin() / safe)  # (B,)
    weight_b = torch.where(flat, w, (w * omega).sin() / safe)  # (B,)
    out = weight_a[:, None] * a_flat + weight_b[:, None] * b_flat  # (B, D)
    return out.reshape(a.shape).to(a.dtype)
