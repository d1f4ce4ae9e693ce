"""What the network predicts: the noise, the clean image, v, or the flow velocity.

A noisy training example is always ``x_t = a_t x_0 + b_t eps`` (a bit of the clean image plus
a bit of noise). Given ``x_t`` and ``t``, knowing any one of the quantities below is enough to
recover the others, so a network can be trained to output whichever is easiest to learn:

========  ==================================  ====================================================
target    the network outputs                 where it comes from
========  ==================================  ====================================================
``eps``   the noise eps                       DDPM (Ho et al. 2020), Eq. 14; the course's default
``x0``    the clean image x_0                 DDPM, Sec. 3.2 (they found it worse early on)
``v``     ``v = a_t eps - b_t x_0``           Salimans & Ho 2022, "Progressive Distillation", Sec. 4
``flow``  the velocity ``u = eps - x_0``      Lipman et al. 2023 (flow matching, Sec. 4.1, the
                                              optimal-transport path with sigma_min = 0);
                                              Liu et al. 2023 (rectified flow)
========  ==================================  ====================================================

The first three live on the diffusion path of lesson 03, ``a_t = sqrt(alpha_bar_t)``,
``b_t = sqrt(1 - alpha_bar_t)`` (Eq. 4, so ``a^2 + b^2 = 1``). The flow target has its own,
**straight** path between data and noise, ``x_s = (1 - s) x_0 + s eps`` with ``s = t / T``:
x_s moves at the constant velocity ``dx_s/ds = eps - x_0`` from the digit (s = 0) to pure noise
(s = 1). Only T of the schedule is used there. (The flow-matching papers run their time the
other way, from noise at 0 to data at 1, so their velocity is ``x_0 - eps``: the same line,
travelled in the opposite direction.)

:func:`split_prediction` turns any model output into the pair (x0_hat, eps_hat) the samplers
need; :func:`regression_target` gives what the loss compares the output with.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from diffusion_edu.forward import as_timesteps, check_same_shape, coef, q_sample
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "Target",
    "TARGETS",
    "check_target",
    "prediction_of",
    "path_coefficients",
    "noisy_sample",
    "regression_target",
    "split_prediction",
    "target_snr",
    "predict_x0_from_eps",
    "predict_eps_from_x0",
]

Target = Literal["eps", "x0", "v", "flow"]
TARGETS: tuple[str, ...] = get_args(Target)


def check_target(target: object) -> Target:
    """``target`` if it is one of :data:`TARGETS`, else a ValueError that lists them."""
    if target not in TARGETS:
        raise ValueError(
            f"prediction target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}."
        )
    return target  # type: ignore[return-value]


def prediction_of(model: object) -> Target:
    """What ``model`` predicts: its ``prediction`` attribute (a DDP or compile wrapper is looked
    through), or ``"eps"`` for any model that does not say."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return check_target(getattr(inner, "prediction", "eps"))


def path_coefficients(
    t: torch.Tensor, schedule: NoiseSchedule, target: Target, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a_t, b_t)`` with ``x_t = a_t x_0 + b_t eps``, each ``(B, 1, ...)`` in ``like``'s dtype.

    ``t`` is a LongTensor ``(B,)`` of steps in 0..T (not checked: callers draw or check it).
    """
    shape = (-1,) + (1,) * (like.ndim - 1)
    t = t.to(like.device)
    if target == "flow":
        s = (t.to(like.dtype) / schedule.T).view(shape)  # the straight path's time, 0..1
        return 1.0 - s, s
    a = schedule.on("sqrt_alpha_bars", like.device, like.dtype)[t].view(shape)
    b = schedule.on("sqrt_one_minus_alpha_bars", like.device, like.dtype)[t].view(shape)
    return a, b


def noisy_sample(
    x0: torch.Tensor,
    eps: torch.Tensor,
    t: int | torch.Tensor,
    schedule: NoiseSchedule,
    target: Target = "eps",
    check: bool = True,
) -> torch.Tensor:
    """The network's input ``x_t = a_t x_0 + b_t eps`` on the path that ``target`` uses.

    Eq. 4 (:func:`~diffusion_edu.q_sample`) for eps, x0 and v; the straight path for flow.
    ``check=False`` skips the checks of ``t`` (see ``q_sample``).
    """
    if target != "flow":
        return q_sample(x0, t, schedule, eps, check=check)
    if check:
        check_same_shape(x0, eps, "x0", "eps")
        t = as_timesteps(t, x0.shape[0], schedule, low=0)
    a, b = path_coefficients(t, schedule, "flow", x0)  # type: ignore[arg-type]
    return a * x0 + b * eps


def regression_target(
    x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, target: Target
) -> torch.Tensor:
    """What a ``target``-model should output for the input made from ``x0``, ``eps`` and ``t``."""
    if target == "eps":
        return eps
    if target == "x0":
        return x0
    if target == "flow":
        return eps - x0  # d x_s / ds on the straight path
    a, b = path_coefficients(t, schedule, target, x0)
    return a * eps - b * x0  # v (Salimans & Ho 2022)


def split_prediction(
    prediction: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    schedule: NoiseSchedule,
    target: Target,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0_hat, eps_hat)`` implied by a ``target``-model's ``prediction`` at ``(x_t, t)``.

    Solves ``x_t = a x0 + b eps`` together with the definition of the target:

    * eps:  x0 = (x_t - b eps) / a
    * x0:   eps = (x_t - a x0) / b
    * v:    x0 = a x_t - b v,   eps = b x_t + a v          (uses a^2 + b^2 = 1)
    * flow: x0 = x_t - s u,     eps = x_t + (1 - s) u      (a = 1 - s, b = s)

    ``t`` is a LongTensor ``(B,)`` in 1..T (at t = 0 there is no noise to speak of).
    """
    check_same_shape(x_t, prediction, "x_t", "prediction")
    a, b = path_coefficients(t, schedule, target, x_t)
    if target == "eps":
        return (x_t - b * prediction) / a, prediction
    if target == "x0":
        return prediction, (x_t - a * prediction) / b
    if target == "v":
        return a * x_t - b * prediction, b * x_t + a * prediction
    return x_t - b * prediction, x_t + a * prediction  # flow: b = s, a = 1 - s


def target_snr(t: torch.Tensor, schedule: NoiseSchedule, target: Target) -> torch.Tensor:
    """Signal-to-noise ratio ``a_t^2 / b_t^2`` of the path ``target`` trains on, ``(B,)`` float32.

    On the diffusion path this is ``schedule.snr[t]``; on the straight path ``((1 - s) / s)^2``.
    """
    if target == "flow":
        s = t.float() / schedule.T
        return ((1.0 - s) / s).square()
    return schedule.on("snr", t.device)[t]


# ----------------------------------------------------------------------------- eps <-> x0
def predict_x0_from_eps(
    x_t: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Invert Eq. 4 for x_0: ``x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``."""
    check_same_shape(x_t, eps, "x_t", "eps")
    t = as_timesteps(t, x_t.shape[0], schedule, low=0)
    return (x_t - coef(schedule.sqrt_one_minus_alpha_bars, t, x_t) * eps) / coef(
        schedule.sqrt_alpha_bars, t, x_t
    )


def predict_eps_from_x0(
    x_t: torch.Tensor, t: int | torch.Tensor, x0: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Invert Eq. 4 for eps: ``eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)``."""
    check_same_shape(x_t, x0, "x_t", "x0")
    t = as_timesteps(t, x_t.shape[0], schedule, low=1)
    return (x_t - coef(schedule.sqrt_alpha_bars, t, x_t) * x0) / coef(
        schedule.sqrt_one_minus_alpha_bars, t, x_t
    )
