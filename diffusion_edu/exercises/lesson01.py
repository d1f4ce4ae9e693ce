"""Lesson 01 (ink in water): self-checking exercises.

* :func:`check_random_walk_variance`: the variance of a 1-D random walk after n steps.
* :func:`check_diffusion_step`: one step of a particle's random walk with diffusion
  coefficient D.
* :func:`verify_walk_variance_prediction`: predict-then-check: the variance of the plain and
  of the shrinking noise walk after n steps of a constant beta (:func:`walk_variances`).

Each checker runs the student's function on a few inputs, compares with the reference
``solution_*`` beside it, and, when they differ, recognises the usual slips to give a hint.
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
from diffusion_edu.physics import random_walk_variance
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "check_random_walk_variance",
    "solution_random_walk_variance",
    "check_diffusion_step",
    "solution_diffusion_step",
    "walk_variances",
    "verify_walk_variance_prediction",
]


# ----------------------------------------------------------------------------- exercise 1
def solution_random_walk_variance(n_steps: int, sigma: float) -> float:
    """Variance after ``n_steps`` independent steps of std ``sigma``: ``n * sigma**2``."""
    return float(random_walk_variance(n_steps, sigma))


def check_random_walk_variance(fn: Callable[[int, float], float]) -> CheckResult:
    """Check ``fn(n_steps, sigma) -> variance`` of a 1-D random walk that starts at 0."""
    name = "random-walk variance"
    cases = [(1, 1.0), (10, 0.5), (100, 2.0), (7, 0.1)]
    for n, sigma in cases:
        result, problem = call_student(name, fn, n, sigma)
        if problem is not None:
            return problem
        expected = solution_random_walk_variance(n, sigma)
        if close(result, expected):
            continue
        hint = first_matching_hint(
            result,
            {
                "that is n * sigma: the variance of one step is sigma**2, not sigma.": n * sigma,
                "that is the standard deviation sqrt(n) * sigma; the variance is its square.": (
                    math.sqrt(n) * sigma
                ),
                "that is (n * sigma)**2: the steps are independent, so their variances add "
                "(n * sigma**2); you added standard deviations.": (n * sigma) ** 2,
                "that ignores the number of steps: each of the n steps adds sigma**2.": sigma**2,
            },
        )
        return failed(
            name,
            hint
            or f"for n={n}, sigma={sigma} expected {expected:g}, got {result!r}. "
            "Hint: variances of independent steps add up.",
        )
    return passed(name, "yes: Var = n * sigma**2 grows linearly with the number of steps.")


# ----------------------------------------------------------------------------- exercise 2
def solution_diffusion_step(
    x: torch.Tensor, D: float, dt: float, noise: torch.Tensor
) -> torch.Tensor:
    """One Brownian step: ``x + sqrt(2 D dt) * noise`` (noise ~ N(0, 1), one per coordinate)."""
    return x + math.sqrt(2.0 * D * dt) * noise


def check_diffusion_step(
    fn: Callable[[torch.Tensor, float, float, torch.Tensor], torch.Tensor],
) -> CheckResult:
    """Check ``fn(x, D, dt, noise) -> x_next``, one step of a particle's random walk."""
    name = "diffusion step"
    g = torch.Generator().manual_seed(1)
    for D, dt in [(1.0, 1.0), (0.7, 0.1), (3.0, 0.02)]:
        x = torch.randn(50, 2, generator=g)
        noise = torch.randn(50, 2, generator=g)
        result, problem = call_student(name, fn, x.clone(), D, dt, noise.clone())
        if problem is not None:
            return problem
        expected = solution_diffusion_step(x, D, dt, noise)
        if close(result, expected):
            continue
        step = math.sqrt(2.0 * D * dt) * noise
        hint = first_matching_hint(
            result,
            {
                "you returned only the displacement: add it to the current position x.": step,
                "the noise scale should be sqrt(2 D dt), a standard deviation; you used the "
                "variance 2 D dt.": x + 2.0 * D * dt * noise,
                "missing factor 2: the step's variance is 2 D dt (per coordinate), so its "
                "scale is sqrt(2 D dt).": x + math.sqrt(D * dt) * noise,
                "the scale is sqrt(2 D dt), not sqrt(2 D) * dt: the spread grows like the "
                "square root of time.": x + math.sqrt(2.0 * D) * dt * noise,
            },
        )
        if hint is None and isinstance(result, torch.Tensor) and result.shape == x.shape:
            spread = float((result - x).std() / step.std())
            if not close(spread, 1.0, rtol=0.3, atol=0.0):
                hint = f"your step is {spread:.2g} times the right size: use sqrt(2 * D * dt)."
            else:
                hint = (
                    "use the `noise` argument (not a fresh torch.randn) so the check can compare."
                )
        return failed(
            name, hint or f"for D={D}, dt={dt} the result does not match x + sqrt(2 D dt) noise."
        )
    return passed(name, "yes: each coordinate moves by sqrt(2 D dt) * eps, so Var grows by 2 D dt.")


# ----------------------------------------------------------------------------- prediction
WALK_EXERCISE = "predict: walk variances"


def walk_variances(beta: float = 0.01, n_steps: int = 100) -> tuple[float, float]:
    """Variance after ``n_steps`` steps of constant ``beta`` from a fixed start: (plain, shrinking).

    Plain walk ``x_t = x_{t-1} + sqrt(beta) eps``: variances add, ``n * beta``. Shrinking walk
    ``x_t = sqrt(1 - beta) x_{t-1} + sqrt(beta) eps`` (DDPM Eq. 2): ``1 - alpha_bar_n`` with
    ``alpha_bar_n = (1 - beta)^n`` (DDPM Eq. 4), read from a :class:`NoiseSchedule`.
    """
    schedule = NoiseSchedule([beta] * n_steps, name="constant")
    plain = float(schedule.betas[1:].sum())
    shrinking = float(1.0 - schedule.alpha_bars[n_steps])
    return plain, shrinking


def verify_walk_variance_prediction(
    plain: float | None, shrinking: float | None, beta: float = 0.01, n_steps: int = 100
) -> CheckResult:
    """Predict-then-check: the two walks' variances after ``n_steps`` steps of ``beta``.

    Both walks start at a fixed value (variance 0). The right answers come from
    :func:`walk_variances`; the hints name the usual slips (adding standard deviations,
    taking the shrinking walk's limit 1 for its value, giving the gap left to 1).
    """
    right_plain, right_shrinking = walk_variances(beta, n_steps)
    gap = 1.0 - right_shrinking  # (1 - beta)^n: how much of the way to 1 is still left
    verdict = _check_prediction(
        WALK_EXERCISE,
        plain,
        right_plain,
        rel=0.05,
        wrong_answers={
            f"plain walk: you added standard deviations ({n_steps} x sqrt(beta)); independent "
            "steps add their VARIANCES.": n_steps * beta**0.5,
            "plain walk: that is one step's variance; every step adds another beta.": beta,
            "plain walk: that is the shrinking walk's value; the plain walk has no shrink to "
            "slow it down.": right_shrinking,
        },
        why="Plain walk: independent steps, so the variances add: n x beta.",
    )
    if not verdict.ok:
        return verdict
    verdict = _check_prediction(
        WALK_EXERCISE,
        shrinking,
        right_shrinking,
        rel=0.05,
        wrong_answers={
            "shrinking walk: 1 is where it is heading, not where it is yet. Each step shrinks "
            "the gap v_t - 1 by the factor (1 - beta), so after n steps a gap of "
            f"(1 - beta)^n = {gap:.3f} is left.": 1.0,
            "shrinking walk: that is the gap still left to 1, (1 - beta)^n; the variance is 1 "
            "minus it.": gap,
        },
        why=f"Shrinking walk: v_n = 1 - (1 - beta)^n = {right_shrinking:.3f}. The shrink pulls "
        "the variance towards 1 and it never passes it.",
    )
    if not verdict.ok:
        return verdict
    return passed(
        WALK_EXERCISE,
        f"both right: the plain walk reaches {right_plain:.3g} and keeps growing by beta per "
        f"step; the shrinking walk reaches {right_shrinking:.3f} and can never pass 1.",
    )
