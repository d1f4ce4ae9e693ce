"""Lesson 05 exercise: turn a noise estimate into a score.

``score(x_t) = grad_x log q(x_t) = -eps_hat / sqrt(1 - alpha_bar_t)`` (Tweedie's formula;
Luo 2022, Eq. 151): noise estimation and score estimation are the same job.
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
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import eps_to_score

__all__ = ["solution_eps_to_score", "check_eps_to_score"]

EXERCISE = "eps_hat -> score"


def solution_eps_to_score(eps_hat: torch.Tensor, t: int, schedule: NoiseSchedule) -> torch.Tensor:
    """Reference solution: ``-eps_hat / sqrt(1 - alpha_bar_t)`` for one int timestep t."""
    return -eps_hat / (1.0 - schedule.alpha_bars[t]).sqrt().to(eps_hat.dtype)


def check_eps_to_score(
    student_fn: Callable[[torch.Tensor, int, NoiseSchedule], torch.Tensor | None],
) -> CheckResult:
    """Check ``student_fn(eps_hat, t, schedule) -> score`` at several t."""
    schedule = NoiseSchedule.cosine(T=100)
    eps_hat = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    for t in (3, 40, 90):
        ab = schedule.alpha_bars[t].to(eps_hat.dtype)
        got, problem = call_student(
            EXERCISE, student_fn, eps_hat.clone(), t, schedule, returns="the score tensor"
        )
        if problem is not None:
            return problem
        got = torch.as_tensor(got, dtype=eps_hat.dtype)
        if got.shape != eps_hat.shape:
            return failed(
                EXERCISE, f"expected shape {tuple(eps_hat.shape)}, got {tuple(got.shape)}."
            )
        want = eps_to_score(eps_hat, t, schedule)
        if close(got, want, atol=1e-6):
            continue
        wrong = {
            "the sign is flipped: the score points AWAY from the noise, so it is "
            "-eps_hat / sqrt(1 - alpha_bar_t).": -want,
            "missing square root: divide by sqrt(1 - alpha_bar_t), the noise's standard "
            "deviation, not by its variance (1 - alpha_bar_t).": -eps_hat / (1 - ab),
            "you multiplied by sqrt(1 - alpha_bar_t); divide by it.": -eps_hat * (1 - ab).sqrt(),
            "you used sqrt(alpha_bar_t); the noise's scale in x_t is sqrt(1 - alpha_bar_t).": (
                -eps_hat / ab.sqrt()
            ),
            "the score is not the noise itself: scale -eps_hat by 1 / sqrt(1 - alpha_bar_t).": (
                -eps_hat
            ),
        }
        hint = first_matching_hint(got, wrong, atol=1e-6)
        return failed(
            EXERCISE,
            hint
            or f"at t={t} the first score should be {want[0].tolist()}, yours is "
            f"{got[0].tolist()}.",
        )
    return passed(
        EXERCISE, "score = -eps_hat / sqrt(1 - alpha_bar_t): noise estimation IS score estimation."
    )
