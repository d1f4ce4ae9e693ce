"""Lesson 03 (the forward process as a Markov chain): self-checking exercises.

* :func:`check_q_step`: one step of the chain, x_{t-1} -> x_t (DDPM, Eq. 2).
* :func:`check_q_sample`: the closed form, x_0 -> x_t in one jump (DDPM, Eq. 4).
* :func:`verify_two_step_variance_prediction`: predict-then-check: the noise variance after
  two steps with given alphas (the derivation of Eq. 4, done by hand).

The student's functions take the library's arguments ``(x, t, schedule, noise)`` with ``t`` a
Python int in 1..T (0 is also allowed for ``q_sample``) and must use the ``noise`` given.
"""

from __future__ import annotations

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
from diffusion_edu.forward import q_sample, q_step
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "check_q_step",
    "solution_q_step",
    "check_q_sample",
    "solution_q_sample",
    "verify_two_step_variance_prediction",
]

StudentFn = Callable[[torch.Tensor, int, NoiseSchedule, torch.Tensor], torch.Tensor]

# The middle of the schedule first: there every wrong formula gives a clearly different
# answer, so the hint is about the right mistake. t = 1 and t = T come after.
_STEPS = (300, 37, 700, 1000, 1)


def _inputs(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + t)
    x = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1  # (B, C, H, W) in [-1, 1] like data
    noise = torch.randn(4, 1, 8, 8, generator=g)
    return x, noise


def _off_by_one(t: int, T: int) -> list[int]:
    """The neighbouring steps t-1 and t+1 that exist: the usual off-by-one slips."""
    return [s for s in (t - 1, t + 1) if 0 <= s <= T and s != t]


# ----------------------------------------------------------------------------- q_step
def solution_q_step(
    x_prev: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor
) -> torch.Tensor:
    """DDPM Eq. 2: ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise``, alpha_t = 1 - beta_t."""
    alpha_t, beta_t = schedule.alphas[t].item(), schedule.betas[t].item()
    return alpha_t**0.5 * x_prev + beta_t**0.5 * noise


def check_q_step(fn: StudentFn) -> CheckResult:
    """Check ``fn(x_prev, t, schedule, noise) -> x_t`` against :func:`~diffusion_edu.q_step`."""
    name = "q_step"
    schedule = NoiseSchedule.linear()
    for t in _STEPS:
        x, noise = _inputs(t)
        result, problem = call_student(name, fn, x.clone(), t, schedule, noise.clone())
        if problem is not None:
            return problem
        expected = q_step(x, t, schedule, noise)
        if close(result, expected):
            continue
        a, b = schedule.alphas[t].item(), schedule.betas[t].item()
        ab = schedule.alpha_bars[t].item()
        wrong = {
            "you forgot the shrink: x_{t-1} + sqrt(beta_t) noise is lesson 01's plain random "
            "walk, whose variance grows forever. Multiply x_{t-1} by sqrt(alpha_t).": (
                x + b**0.5 * noise
            ),
            "the noise scale should be sqrt(beta_t), a standard deviation; you used the "
            "variance beta_t.": a**0.5 * x + b * noise,
            "you shrank x_{t-1} by alpha_t instead of sqrt(alpha_t).": a * x + b**0.5 * noise,
            "you used alpha_bars[t] (the jump from x_0, that's q_sample); one step uses "
            "alphas[t] and betas[t].": ab**0.5 * x + (1 - ab) ** 0.5 * noise,
            "you swapped the two scales: x_{t-1} gets sqrt(alpha_t) and the noise gets "
            "sqrt(beta_t).": b**0.5 * x + a**0.5 * noise,
        }
        for s in _off_by_one(t, schedule.T):
            if s >= 1:
                a_s, b_s = schedule.alphas[s].item(), schedule.betas[s].item()
                wrong[
                    f"off by one: you used step {s}'s beta for t={t}. Index 0 means 'no noise', "
                    "so betas[t] is already beta_t; don't shift t."
                ] = a_s**0.5 * x + b_s**0.5 * noise
        hint = first_matching_hint(result, wrong)
        return failed(
            name,
            hint
            or f"at t={t} your x_t differs from sqrt(alpha_t) x_(t-1) + sqrt(beta_t) noise. "
            "Use schedule.alphas[t], schedule.betas[t] and the noise given.",
        )
    return passed(name, "yes: one step shrinks by sqrt(alpha_t) and adds noise of variance beta_t.")


# ----------------------------------------------------------------------------- q_sample
def solution_q_sample(
    x0: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor
) -> torch.Tensor:
    """DDPM Eq. 4: ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``."""
    alpha_bar = schedule.alpha_bars[t].item()
    return alpha_bar**0.5 * x0 + (1.0 - alpha_bar) ** 0.5 * noise


def check_q_sample(fn: StudentFn) -> CheckResult:
    """Check ``fn(x0, t, schedule, noise) -> x_t`` against :func:`~diffusion_edu.q_sample`."""
    name = "q_sample"
    schedule = NoiseSchedule.linear()
    for t in (*_STEPS, 0):
        x0, noise = _inputs(t)
        result, problem = call_student(name, fn, x0.clone(), t, schedule, noise.clone())
        if problem is not None:
            return problem
        expected = q_sample(x0, t, schedule, noise)
        if close(result, expected):
            continue
        if t == 0:
            return failed(
                name,
                "at t=0 x_t should be x0 itself (alpha_bar_0 = 1: no noise yet). Index the "
                "schedule with t directly: alpha_bars[0] is 1.",
            )
        ab = schedule.alpha_bars[t].item()
        a = schedule.alphas[t].item()
        wrong = {
            "your noise scale looks like (1 - alpha_bar) instead of its square root: the "
            "noise's VARIANCE is 1 - alpha_bar, its scale sqrt(1 - alpha_bar).": (
                ab**0.5 * x0 + (1 - ab) * noise
            ),
            "you scaled x0 by alpha_bar instead of sqrt(alpha_bar).": ab * x0
            + (1 - ab) ** 0.5 * noise,
            "both scales are missing their square roots: use sqrt(alpha_bar) and "
            "sqrt(1 - alpha_bar).": ab * x0 + (1 - ab) * noise,
            "you used alphas[t] (one step) instead of alpha_bars[t] (the product of all t "
            "steps' alphas).": a**0.5 * x0 + (1 - a) ** 0.5 * noise,
            "you swapped the two scales: x0 gets sqrt(alpha_bar) and the noise gets "
            "sqrt(1 - alpha_bar).": (1 - ab) ** 0.5 * x0 + ab**0.5 * noise,
            "you forgot to shrink x0: the closed form multiplies x0 by sqrt(alpha_bar_t).": (
                x0 + (1 - ab) ** 0.5 * noise
            ),
        }
        for s in _off_by_one(t, schedule.T):
            ab_s = schedule.alpha_bars[s].item()
            wrong[
                f"off by one: you used alpha_bars[{s}] for t={t}. Index 0 means 'no noise', so "
                "alpha_bars[t] is already alpha_bar_t; don't shift t."
            ] = ab_s**0.5 * x0 + (1 - ab_s) ** 0.5 * noise
        hint = first_matching_hint(result, wrong)
        return failed(
            name,
            hint
            or f"at t={t} your x_t differs from sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) "
            "noise. Use schedule.alpha_bars[t] and the noise given.",
        )
    return passed(
        name,
        "yes: t noisy steps in one jump, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.",
    )


# ----------------------------------------------------------------------------- prediction
TWO_STEP_EXERCISE = "predict: two steps"


def verify_two_step_variance_prediction(
    answer: float | None, alpha_1: float = 0.9, alpha_2: float = 0.8
) -> CheckResult:
    """Predict-then-check: Var[x_2 | x_0] after two chain steps with ``alpha_1``, ``alpha_2``.

    The right value is ``1 - alpha_bar_2`` of a two-step :class:`NoiseSchedule` (DDPM Eq. 4);
    the hints name the usual slips: adding the betas (forgetting that step 2 shrinks step 1's
    noise), giving alpha_bar_2 (the signal's share), multiplying the variances, the std.
    """
    beta_1, beta_2 = 1.0 - alpha_1, 1.0 - alpha_2
    schedule = NoiseSchedule([beta_1, beta_2], name="two steps")
    right = float(1.0 - schedule.alpha_bars[2])
    return _check_prediction(
        TWO_STEP_EXERCISE,
        answer,
        right,
        rel=0.02,
        wrong_answers={
            "you added the two betas, but the second step also shrinks the first step's noise "
            "by sqrt(alpha_2): that noise's variance counts alpha_2 x beta_1, not beta_1.": (
                beta_1 + beta_2
            ),
            "that is alpha_1 x alpha_2 = alpha_bar_2, the share of x_0's variance left in x_2; "
            "the noise's share is 1 minus it.": alpha_1 * alpha_2,
            "independent noises add their variances; they do not multiply.": beta_1 * beta_2,
            "that is the standard deviation; the variance is its square.": right**0.5,
        },
        why=f"x_2 = sqrt(alpha_2) (sqrt(alpha_1) x_0 + sqrt(beta_1) eps_1) + sqrt(beta_2) eps_2: "
        f"the noise variance is alpha_2 beta_1 + beta_2 = {right:.2f} = 1 - alpha_1 alpha_2, "
        "the closed form's 1 - alpha_bar_2.",
    )
