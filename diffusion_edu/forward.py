"""The forward (noising) process q: one Markov step, the closed form, and the posterior.

All functions follow the DDPM paper (Ho et al. 2020) and the timestep convention of
``schedules.py``: t runs 1..T and ``schedule.alpha_bars[t]`` is alpha_bar_t.

``t`` may be a Python int (same step for the whole batch) or a LongTensor of shape ``(B,)``
(one step per sample). Noise is passed in explicitly, so every function here is deterministic:
draw it with ``torch.randn_like(x)`` (or a seeded ``torch.Generator``) outside. Turning a
network's prediction back into x_0 or eps lives in :mod:`diffusion_edu.targets`.
"""

from __future__ import annotations

import torch

from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "q_step",
    "q_sample",
    "q_posterior",
    "as_timesteps",
]


# ----------------------------------------------------------------------------- helpers
def as_timesteps(
    t: int | torch.Tensor, batch_size: int, schedule: NoiseSchedule, low: int = 1, what: str = "t"
) -> torch.Tensor:
    """Check ``t`` and return it as a LongTensor of shape ``(batch_size,)`` on the CPU.

    Raises ValueError with the allowed range if any t is outside ``low..T``.
    """
    if isinstance(t, bool):
        raise TypeError(f"{what} must be an int or a LongTensor, got a bool.")
    if isinstance(t, int):
        t_tensor = torch.full((batch_size,), t, dtype=torch.long)
    elif isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(
                f"{what} must hold integer timesteps (a LongTensor), got dtype {t.dtype}. "
                "Use t.long() if the values are whole numbers."
            )
        t_tensor = t.detach().to("cpu", torch.long)
        if t_tensor.ndim == 0:
            t_tensor = t_tensor.expand(batch_size)
        elif t_tensor.ndim != 1 or t_tensor.shape[0] != batch_size:
            raise ValueError(
                f"{what} must be an int or a tensor of shape ({batch_size},) (one timestep per "
                f"sample in the batch), got shape {tuple(t_tensor.shape)}."
            )
    else:
        raise TypeError(f"{what} must be an int or a LongTensor, got {type(t).__name__}.")
    if t_tensor.numel() and (t_tensor.min() < low or t_tensor.max() > schedule.T):
        bad = t_tensor[(t_tensor < low) | (t_tensor > schedule.T)][0].item()
        raise ValueError(
            f"{what} must lie in {low}..{schedule.T} for this schedule (T={schedule.T}), "
            f"got {bad}. Timesteps follow the paper: t=1 is the first noising step, t=T the last."
        )
    return t_tensor


def coef(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pick ``values[t]`` per sample and shape it to broadcast against ``like``: ``(B, 1, 1, ...)``.

    The float64 schedule value is cast to ``like``'s dtype and device here, at the point of use.
    """
    picked = values[t]  # (B,)
    return picked.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))


def check_same_shape(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{b_name} must have the same shape as {a_name}: expected {tuple(a.shape)}, "
            f"got {tuple(b.shape)}."
        )


def _batch_size(x: torch.Tensor, name: str) -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension first, e.g. (B, C, H, W).")
    return x.shape[0]


# ----------------------------------------------------------------------------- the process
def q_step(
    x_prev: torch.Tensor, t: int | torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor
) -> torch.Tensor:
    """ONE step of the forward Markov chain: x_{t-1} -> x_t.

    DDPM, Eq. 2:  q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I), so

        x_t = sqrt(alpha_t) * x_{t-1} + sqrt(beta_t) * noise,     noise ~ N(0, I).

    The shrink by sqrt(alpha_t) is what keeps the chain's variance bounded (it ends at N(0, I))
    instead of spreading forever like a plain random walk.
    """
    batch = _batch_size(x_prev, "x_prev")
    check_same_shape(x_prev, noise, "x_prev", "noise")
    t = as_timesteps(t, batch, schedule, low=1)
    return (
        coef(schedule.alphas.sqrt(), t, x_prev) * x_prev
        + coef(schedule.betas.sqrt(), t, x_prev) * noise
    )


def q_sample(
    x0: torch.Tensor,
    t: int | torch.Tensor,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    check: bool = True,
) -> torch.Tensor:
    """Jump straight from x_0 to x_t: the closed form of t Markov steps.

    DDPM, Eq. 4:  q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), so

        x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * noise.

    ``t = 0`` is allowed and returns x_0 unchanged (alpha_bar_0 = 1).

    ``check=False`` skips the shape and range checks, which read ``t`` back to the CPU (on a
    GPU that makes the CPU wait): for callers that drew ``t`` in 0..T themselves, such as the
    training loss. ``t`` must then be a LongTensor of shape ``(B,)``, on any device.
    """
    if check:
        batch = _batch_size(x0, "x0")
        check_same_shape(x0, noise, "x0", "noise")
        t = as_timesteps(t, batch, schedule, low=0)
    t = t.to(x0.device)
    shape = (-1,) + (1,) * (x0.ndim - 1)  # (B, 1, 1, 1): one coefficient per image
    sqrt_alpha_bar = schedule.on("sqrt_alpha_bars", x0.device, x0.dtype)[t].view(shape)
    sqrt_one_minus = schedule.on("sqrt_one_minus_alpha_bars", x0.device, x0.dtype)[t].view(shape)
    return sqrt_alpha_bar * x0 + sqrt_one_minus * noise


def q_posterior(
    x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0): the target the reverse process imitates.

    DDPM, Eq. 6-7:

        mean     = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) * x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * x_t
        variance = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t

    Returns ``(mean, variance)``; ``variance`` has shape ``(B, 1, 1, ...)`` so it broadcasts.
    """
    batch = _batch_size(x0, "x0")
    check_same_shape(x0, x_t, "x0", "x_t")
    t = as_timesteps(t, batch, schedule, low=1)
    mean = (
        coef(schedule.posterior_mean_coef_x0, t, x0) * x0
        + coef(schedule.posterior_mean_coef_xt, t, x_t) * x_t
    )
    variance = coef(schedule.posterior_variance, t, x0)
    return mean, variance
