"""Lesson 04 exercise: compute alpha_bar from the betas.

``alpha_bar_t = prod_{s=1}^{t} (1 - beta_s)`` (DDPM, Eq. 4 and the line above it), with the
course's convention that index 0 means "no noise": ``alpha_bar[0] = 1`` and the result has
length ``T + 1``.

:func:`verify_snr_one_prediction`: predict-then-check: the step at which the cosine schedule's
SNR falls to 1 (log-SNR = 0).
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
from diffusion_edu.schedules import NoiseSchedule, log_snr_zero_crossing

__all__ = ["solution_alpha_bar", "check_alpha_bar", "verify_snr_one_prediction"]

EXERCISE = "alpha_bar from betas"


def solution_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    """Reference solution. ``betas``: beta_1..beta_T (length T) -> alpha_bar_0..alpha_bar_T."""
    alphas = 1.0 - betas
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(alphas, dim=0)])


def _diagnose(got: torch.Tensor, betas: torch.Tensor) -> str | None:
    """A specific hint for the usual mistakes, or None if none of them matches."""
    T = betas.shape[0]
    one = torch.ones(1, dtype=betas.dtype)
    wrong = {
        "you ADDED the alphas (cumsum); alpha_bar is their PRODUCT: torch.cumprod.": (
            torch.cat([one, torch.cumsum(1.0 - betas, 0)])
        ),
        "you added the alphas (cumsum) instead of multiplying them (cumprod), and index 0 "
        "(alpha_bar_0 = 1) is missing.": torch.cumsum(1.0 - betas, 0),
        "you multiplied the betas; alpha_bar multiplies alpha_t = 1 - beta_t.": (
            torch.cat([one, torch.cumprod(betas, 0)])
        ),
        "you multiplied the betas (use alpha_t = 1 - beta_t), and index 0 (alpha_bar_0 = 1) "
        "is missing.": torch.cumprod(betas, 0),
        f"the values are right but the result has length {T}: put alpha_bar_0 = 1 in front "
        f"so that index t holds alpha_bar_t (length T + 1 = {T + 1}).": (
            torch.cumprod(1.0 - betas, 0)
        ),
        "off by one: index t should hold alpha_1 * ... * alpha_t (including alpha_t itself); "
        "yours stops at alpha_{t-1}.": torch.cat([one, one, torch.cumprod(1.0 - betas, 0)[:-1]]),
        "that is alpha_t, one step's signal; alpha_bar_t is the product of all the alphas up "
        "to t (torch.cumprod).": torch.cat([one, 1.0 - betas]),
    }
    hint = first_matching_hint(got, wrong, rtol=1e-5, atol=1e-8)
    if hint is None and got.shape[0] == T + 1 and abs(got[0].item() - 1.0) > 1e-6:
        return f"alpha_bar[0] should be 1 (no noise at t = 0), yours is {got[0].item():.4g}."
    return hint


def check_alpha_bar(student_fn: Callable[[torch.Tensor], torch.Tensor | None]) -> CheckResult:
    """Check ``student_fn(betas) -> alpha_bars`` against the library on three schedules."""
    for schedule in (
        NoiseSchedule.linear(T=1000),
        NoiseSchedule.cosine(T=50),
        NoiseSchedule.linear(T=10, beta_start=0.05, beta_end=0.3),
    ):
        betas = schedule.betas[1:].clone()  # beta_1..beta_T, float64
        got, problem = call_student(
            EXERCISE, student_fn, betas.clone(), returns="the alpha_bar tensor"
        )
        if problem is not None:
            return problem
        got = torch.as_tensor(got, dtype=torch.float64).reshape(-1)
        hint = _diagnose(got, betas)
        if hint:
            return failed(EXERCISE, hint)
        if got.shape != schedule.alpha_bars.shape:
            return failed(
                EXERCISE,
                f"expected length T + 1 = {schedule.T + 1} (index 0 = no noise), "
                f"got {got.shape[0]}.",
            )
        if not close(got, schedule.alpha_bars, rtol=1e-5, atol=1e-8):
            bad = int((got - schedule.alpha_bars).abs().argmax())
            return failed(
                EXERCISE,
                f"alpha_bar[{bad}] should be {schedule.alpha_bars[bad].item():.6g}, "
                f"yours is {got[bad].item():.6g}.",
            )
    return passed(EXERCISE, "that is alpha_bar_t = prod (1 - beta_s), with alpha_bar_0 = 1.")


# ----------------------------------------------------------------------------- prediction
SNR_ONE_EXERCISE = "predict: SNR = 1"


def verify_snr_one_prediction(answer: float | None, T: int = 1000) -> CheckResult:
    """Predict-then-check: the first t at which the cosine schedule's SNR is <= 1.

    The right value is :func:`~diffusion_edu.schedules.log_snr_zero_crossing` of
    ``NoiseSchedule.cosine(T)``; answers within 5% of T pass. The hints name the linear
    schedule's crossing and the end of the schedule.
    """
    right = log_snr_zero_crossing(NoiseSchedule.cosine(T))
    linear = log_snr_zero_crossing(NoiseSchedule.linear(T))
    return _check_prediction(
        SNR_ONE_EXERCISE,
        answer,
        right,
        rel=0.0,
        abs_tol=0.05 * T,
        wrong_answers={
            f"{linear} is the LINEAR schedule's crossing; the cosine one keeps more signal for "
            "longer.": linear,
            "at t = T the SNR is far below 1 (pure noise); it reaches 1 well before the end.": T,
        },
        why="The cosine schedule sets alpha_bar_t ~ cos^2(angle) (Nichol & Dhariwal 2021, "
        "Eq. 17) with the angle going from about 0 to pi/2 as t goes from 0 to T; SNR = 1 "
        "means alpha_bar = 1/2, an angle of pi/4: half way, t close to T/2 (a little before, "
        "because of the offset s).",
    )
