"""Lesson 12 exercises: the SDE view and flow matching, one step at a time.

1. ``my_euler_maruyama_step(x, beta, dtau, z) -> x``: one Euler-Maruyama step of the forward
   VP-SDE ``dx = -1/2 beta x dtau + sqrt(beta) dW`` (Song et al. 2021, Eq. 11), with the noise
   ``z ~ N(0, I)`` given.
2. ``my_ode_euler_step(x_t, eps_hat, alpha_bar_t, alpha_bar_prev) -> x_prev``: one Euler step
   of the probability-flow ODE written in ``x_bar = x / sqrt(alpha_bar)`` and
   ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``, where it reads ``d x_bar / d sigma = eps``
   (DDIM paper, Sec. 4.3, Eq. 14). The checker compares with the library's ``ddim_step``: the
   two are the same step.
3. ``my_flow_target(x0, noise, t, T) -> (x_t, u)``: the flow-matching training pair, the point
   on the straight path at s = t / T and the velocity the network must predict.

The checkers compare with the library and name the usual slips by computing what each would
give. :func:`verify_steps_prediction` checks a prediction written down before the lesson
measures how many steps each MNIST model needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    close,
    failed,
    first_matching_hint,
    passed,
)
from diffusion_edu.exercises.core import check_prediction as _check_prediction
from diffusion_edu.samplers import ddim_step
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import noisy_sample, regression_target

__all__ = [
    "solution_my_euler_maruyama_step",
    "solution_my_ode_euler_step",
    "solution_my_flow_target",
    "check_my_euler_maruyama_step",
    "check_my_ode_euler_step",
    "check_my_flow_target",
    "verify_steps_prediction",
]

EM = "my_euler_maruyama_step"
ODE = "my_ode_euler_step"
FLOW = "my_flow_target"
STEPS = "Euler steps of the flow model for 97%"


# ----------------------------------------------------------------------------- solutions
def solution_my_euler_maruyama_step(
    x: torch.Tensor, beta: float, dtau: float, z: torch.Tensor
) -> torch.Tensor:
    """Reference solution: drift times dtau, plus the noise scaled by g sqrt(dtau)."""
    return x - 0.5 * beta * x * dtau + math.sqrt(beta * dtau) * z


def solution_my_ode_euler_step(
    x_t: torch.Tensor, eps_hat: torch.Tensor, alpha_bar_t: float, alpha_bar_prev: float
) -> torch.Tensor:
    """Reference solution: to (x_bar, sigma), one Euler step in sigma, back to x."""
    x_bar = x_t / math.sqrt(alpha_bar_t)
    sigma = math.sqrt((1 - alpha_bar_t) / alpha_bar_t)
    sigma_prev = math.sqrt((1 - alpha_bar_prev) / alpha_bar_prev)
    x_bar_prev = x_bar + (sigma_prev - sigma) * eps_hat
    return math.sqrt(alpha_bar_prev) * x_bar_prev


def solution_my_flow_target(
    x0: torch.Tensor, noise: torch.Tensor, t: int, T: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference solution: s = t / T, x_s = (1 - s) x0 + s noise, u = noise - x0."""
    s = t / T
    return (1 - s) * x0 + s * noise, noise - x0


# ----------------------------------------------------------------------------- exercise 1
_EM_CASES = ((0.1, 0.01), (20.0, 0.001), (5.0, 0.05))


def _em_slips(x: torch.Tensor, beta: float, dtau: float, z: torch.Tensor) -> dict[str, object]:
    return {
        "the drift lacks its 1/2: f(x) = -1/2 beta x (the pull that keeps the variance at 1).": (
            x - beta * x * dtau + math.sqrt(beta * dtau) * z
        ),
        "the noise is scaled by dtau: a Brownian increment over dtau has standard deviation "
        "sqrt(dtau), so the noise term is g sqrt(dtau) z = sqrt(beta dtau) z.": (
            x - 0.5 * beta * x * dtau + math.sqrt(beta) * dtau * z
        ),
        "the noise term is missing sqrt(dtau): it is g sqrt(dtau) z with g = sqrt(beta).": (
            x - 0.5 * beta * x * dtau + math.sqrt(beta) * z
        ),
        "the drift has the wrong sign: the forward SDE pulls x towards 0 (-1/2 beta x).": (
            x + 0.5 * beta * x * dtau + math.sqrt(beta * dtau) * z
        ),
        "the drift is missing its dtau: a step moves by f(x) dtau.": (
            x - 0.5 * beta * x + math.sqrt(beta * dtau) * z
        ),
    }


def check_my_euler_maruyama_step(
    student_fn: Callable[[torch.Tensor, float, float, torch.Tensor], object],
) -> CheckResult:
    """Check ``student_fn(x, beta, dtau, z)`` against the written-out Euler-Maruyama step on a
    few betas and step sizes (the VP-SDE's small and large ends)."""
    g = torch.Generator().manual_seed(12)
    for beta, dtau in _EM_CASES:
        x, z = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
        got, problem = call_student(EM, student_fn, x.clone(), beta, dtau, z.clone(),
                                    returns="the new x")  # fmt: skip
        if problem is not None:
            return problem
        right = solution_my_euler_maruyama_step(x, beta, dtau, z)
        if close(got, right):
            continue
        where = f"with beta = {beta:g}, dtau = {dtau:g}"
        hint = first_matching_hint(got, _em_slips(x, beta, dtau, z))
        if hint is not None:
            return failed(EM, f"{where}: {hint}")
        return failed(EM, f"{where} the step is off: x + f(x) dtau + g sqrt(dtau) z with "
                          "f(x) = -1/2 beta x and g = sqrt(beta).")  # fmt: skip
    return passed(
        EM,
        "right. With dtau = 1/T and beta(tau) = T beta_t this is x (1 - beta_t / 2) + "
        "sqrt(beta_t) z: DDPM's step sqrt(1 - beta_t) x + sqrt(beta_t) z to first order.",
    )


# ----------------------------------------------------------------------------- exercise 2
_ODE_CASES = ((900, 800), (500, 300), (50, 1), (20, 0))


def _ode_slips(
    x: torch.Tensor, eps: torch.Tensor, ab: float, ab_prev: float
) -> dict[str, torch.Tensor]:
    s, s_prev = math.sqrt((1 - ab) / ab), math.sqrt((1 - ab_prev) / ab_prev)
    x_bar_prev = x / math.sqrt(ab) + (s_prev - s) * eps
    return {
        "that is x_bar at the new step: multiply by sqrt(alpha_bar_prev) to get back to x.": (
            x_bar_prev
        ),
        "sigma is sqrt((1 - alpha_bar) / alpha_bar), the noise of x_bar = x / sqrt(alpha_bar), "
        "not sqrt(1 - alpha_bar).": math.sqrt(ab_prev)
        * (x / math.sqrt(ab) + (math.sqrt(1 - ab_prev) - math.sqrt(1 - ab)) * eps),
        "the step goes the wrong way: towards less noise sigma shrinks, so the step is "
        "(sigma_prev - sigma) eps, a negative multiple of eps.": math.sqrt(ab_prev)
        * (x / math.sqrt(ab) + (s - s_prev) * eps),
        "x was not divided by sqrt(alpha_bar_t) first: x_bar = x / sqrt(alpha_bar_t).": (
            math.sqrt(ab_prev) * (x + (s_prev - s) * eps)
        ),
    }


def check_my_ode_euler_step(
    student_fn: Callable[[torch.Tensor, torch.Tensor, float, float], object],
    schedule: NoiseSchedule | None = None,
) -> CheckResult:
    """Check ``student_fn(x_t, eps_hat, alpha_bar_t, alpha_bar_prev)`` against
    :func:`~diffusion_edu.samplers.ddim_step` with eta = 0 on a few pairs of steps."""
    schedule = schedule or NoiseSchedule.linear()
    g = torch.Generator().manual_seed(13)
    for t, t_prev in _ODE_CASES:
        x = torch.randn(4, 1, 3, 3, dtype=torch.float64, generator=g)
        eps = torch.randn(4, 1, 3, 3, dtype=torch.float64, generator=g)
        ab, ab_prev = schedule.alpha_bars[t].item(), schedule.alpha_bars[t_prev].item()
        got, problem = call_student(ODE, student_fn, x.clone(), eps.clone(), ab, ab_prev,
                                    returns="x at the new step")  # fmt: skip
        if problem is not None:
            return problem
        right = ddim_step(eps, x, t, t_prev, schedule)
        if close(got, right, rtol=1e-6, atol=1e-7):
            continue
        where = f"from t = {t} to t = {t_prev}"
        hint = first_matching_hint(got, _ode_slips(x, eps, ab, ab_prev), rtol=1e-6, atol=1e-7)
        if hint is not None:
            return failed(ODE, f"{where}: {hint}")
        return failed(ODE, f"{where} the result differs from DDIM's step: x_bar = x / "
                           "sqrt(alpha_bar), x_bar + (sigma_prev - sigma) eps, then times "
                           "sqrt(alpha_bar_prev).")  # fmt: skip
    return passed(
        ODE,
        "your Euler step of the probability-flow ODE gives exactly the library's ddim_step "
        "(eta = 0) on every pair: DDIM *is* Euler's method on this ODE (DDIM paper, Sec. 4.3).",
    )


# ----------------------------------------------------------------------------- exercise 3
def _flow_slips(
    x0: torch.Tensor, noise: torch.Tensor, t: int, T: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    s = t / T
    x_t = (1 - s) * x0 + s * noise
    return {
        "x_t is right; the velocity points the papers' way, x0 - noise (their time runs from "
        "noise at 0 to data at 1). In the course s = t / T runs from the data (0) to noise "
        "(1), so dx/ds = noise - x0.": (x_t, x0 - noise),
        "the path mixes x0 and the noise the wrong way round: at t = 0 (s = 0) x_t must be "
        "the data, at t = T pure noise: x_t = (1 - s) x0 + s noise.": (
            s * x0 + (1 - s) * noise, noise - x0,
        ),
        "that is the diffusion path of lesson 03 (square roots): flow matching's path is "
        "straight, x_t = (1 - s) x0 + s noise with s = t / T.": (
            math.sqrt(1 - s) * x0 + math.sqrt(s) * noise, noise - x0,
        ),
    }  # fmt: skip


def check_my_flow_target(
    student_fn: Callable[[torch.Tensor, torch.Tensor, int, int], object],
) -> CheckResult:
    """Check ``student_fn(x0, noise, t, T) -> (x_t, u)`` against the library's
    :func:`~diffusion_edu.targets.noisy_sample` and
    :func:`~diffusion_edu.targets.regression_target` for a flow model."""
    schedule = NoiseSchedule.linear(T=1000)
    g = torch.Generator().manual_seed(14)
    for t in (1000, 250, 600, 1):
        x0, noise = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
        got, problem = call_student(FLOW, student_fn, x0.clone(), noise.clone(), t, 1000,
                                    returns="the pair (x_t, u)")  # fmt: skip
        if problem is not None:
            return problem
        tt = torch.full((3,), t)
        right = (noisy_sample(x0, noise, tt, schedule, "flow"),
                 regression_target(x0, noise, tt, schedule, "flow"))  # fmt: skip
        if not (isinstance(got, tuple | list) and len(got) == 2):
            return failed(FLOW, f"return two tensors, (x_t, u); got {type(got).__name__}.")
        if close(got[0], right[0]) and close(got[1], right[1]):
            continue
        try:
            pair = torch.stack([torch.as_tensor(got[0]), torch.as_tensor(got[1])])
        except (TypeError, RuntimeError, ValueError):
            return failed(FLOW, f"x_t and u must be tensors of x0's shape {tuple(x0.shape)}.")
        slips = {k: torch.stack(v) for k, v in _flow_slips(x0, noise, t, 1000).items()}
        hint = first_matching_hint(pair, slips)
        if hint is not None:
            return failed(FLOW, f"at t = {t}: {hint}")
        if not close(got[0], right[0]):
            return failed(FLOW, f"at t = {t} x_t is off: s = t / T, x_t = (1 - s) x0 + s noise.")
        return failed(FLOW, f"at t = {t} the velocity is off: differentiate x_t in s.")
    return passed(
        FLOW,
        "right: the same pair the library trains a flow model on (targets.noisy_sample and "
        "regression_target with target='flow'). The velocity does not depend on t: along one "
        "pair's path it is constant, which is why that path is a straight line.",
    )


# ----------------------------------------------------------------------------- predict-then-check
def verify_steps_prediction(answer: float | None, measured: int) -> CheckResult:
    """Predict-then-check: the fewest Euler steps at which the flow model's digits reach 97%
    class agreement (``measured``, from the model's record). Within 50% passes."""
    return _check_prediction(
        STEPS,
        answer,
        measured,
        rel=0.5,
        why="A flow model's paths bend much less than the probability-flow ODE's, so big "
        "Euler steps stay close to them.",
    )
