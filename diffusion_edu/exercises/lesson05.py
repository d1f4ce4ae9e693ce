"""Lesson 05 exercises: turn a noise estimate into a score; measure memorisation.

1. ``score(x_t) = grad_x log q(x_t) = -eps_hat / sqrt(1 - alpha_bar_t)`` (Tweedie's formula;
   Luo 2022, Eq. 151): noise estimation and score estimation are the same job.
2. The copy fraction: tau = 5th percentile of fresh points' nearest-training distances, and
   the fraction of samples closer than tau to a training point (check 1 of
   :func:`diffusion_edu.metrics.memorisation_report`).
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
from diffusion_edu.toy2d import copy_fraction, eps_to_score, make_spiral

__all__ = [
    "solution_eps_to_score",
    "check_eps_to_score",
    "solution_copy_fraction",
    "check_copy_fraction",
]

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


COPY_EXERCISE = "copy fraction"


def solution_copy_fraction(
    samples: torch.Tensor, train: torch.Tensor, fresh: torch.Tensor
) -> float:
    """Reference solution: the share of samples closer to ``train`` than 95% of fresh points.

    tau = 5th percentile of min_j ||fresh_i - train_j||; answer = mean of
    1[min_j ||sample_i - train_j|| < tau].
    """
    d_fresh = torch.cdist(fresh, train).min(dim=1).values  # (M,)
    tau = torch.quantile(d_fresh, 0.05)
    d_samples = torch.cdist(samples, train).min(dim=1).values  # (N,)
    return (d_samples < tau).float().mean().item()


def check_copy_fraction(
    student_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float | None],
) -> CheckResult:
    """Check ``student_fn(samples, train, fresh) -> fraction`` on a half-copied sample set."""
    train, fresh = make_spiral(200, seed=0), make_spiral(1000, seed=1)
    g = torch.Generator().manual_seed(2)
    # 30 near-copies of training points and 70 new spiral points.
    copies = train[:30] + 1e-3 * torch.randn(30, 2, generator=g)
    samples = torch.cat([copies, make_spiral(70, seed=3)])
    got, problem = call_student(
        COPY_EXERCISE,
        student_fn,
        samples.clone(),
        train.clone(),
        fresh.clone(),
        returns="a float between 0 and 1",
    )
    if problem is not None:
        return problem
    want = copy_fraction(samples, train, fresh, percentile=5.0)
    if close(got, want, atol=1e-6):
        return passed(
            COPY_EXERCISE,
            f"{want:.0%} of these samples are copies (30 of the 100 were planted). A model that "
            "makes new points scores about 5%.",
        )
    d_fresh = torch.cdist(fresh, train).min(dim=1).values
    d_samples = torch.cdist(samples, train).min(dim=1).values

    def share_below(tau: torch.Tensor, d: torch.Tensor = d_samples) -> float:
        return (d < tau).float().mean().item()

    tau = torch.quantile(d_fresh, 0.05)
    wrong = {
        "you counted the samples FARTHER than the threshold; copies are the ones closer "
        "(d < tau).": 1.0 - want,
        "use the 5th percentile of the fresh distances, torch.quantile(d_fresh, 0.05), not "
        "the 95th.": share_below(torch.quantile(d_fresh, 0.95)),
        "the threshold is a low percentile of the fresh distances, torch.quantile(d_fresh, "
        "0.05), not their mean.": share_below(d_fresh.mean()),
        "measure each sample's distance to the TRAINING points (torch.cdist(samples, train)), "
        "not to the fresh ones.": share_below(tau, torch.cdist(samples, fresh).min(dim=1).values),
        "return a fraction (divide the count by the number of samples).": want * len(samples),
    }
    hint = first_matching_hint(got, wrong, atol=1e-6)
    return failed(
        COPY_EXERCISE,
        hint or f"expected {want:.3f} (30 planted copies among 100 samples), got {got!r}.",
    )
