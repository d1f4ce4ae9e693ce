"""Lesson 07 exercise: the Min-SNR loss weight that makes short training runs work.

``weight(t) = min(SNR_t, gamma) / SNR_t`` (Hang et al. 2023, eps-prediction form): 1 for
noisy images (SNR <= gamma), gamma / SNR for nearly clean ones.

:func:`verify_unguided_agreement_prediction`: predict-then-check: the share of digits the
classifier reads as the requested one when they are sampled with guidance w = 0.
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
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import min_snr_weight

__all__ = [
    "solution_min_snr_weight",
    "check_min_snr_weight",
    "verify_unguided_agreement_prediction",
]

EXERCISE = "Min-SNR weight"


def solution_min_snr_weight(snr: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reference solution: ``min(snr, gamma) / snr``, element by element."""
    return torch.minimum(snr, torch.full_like(snr, gamma)) / snr


def check_min_snr_weight(student_fn: Callable[[torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Check ``student_fn(snr, gamma) -> weights`` on the cosine schedule's SNRs."""
    snr = NoiseSchedule.cosine(T=100).snr[1:]  # (100,) from ~1e4 down to ~0
    for gamma in (5.0, 1.0):
        got, problem = call_student(EXERCISE, student_fn, snr.clone(), gamma,
                                    returns="a tensor of weights")  # fmt: skip
        if problem is not None:
            return problem
        got = torch.as_tensor(got, dtype=snr.dtype)
        if got.shape != snr.shape:
            return failed(EXERCISE, f"expected one weight per SNR, shape {tuple(snr.shape)}, "
                          f"got {tuple(got.shape)}.")  # fmt: skip
        want = min_snr_weight(snr, gamma)
        if close(got, want):
            continue
        wrong = {
            "you returned min(SNR, gamma) itself: divide it by SNR, so that noisy images "
            "(SNR below gamma) keep weight 1.": snr.clamp(max=gamma),
            "max instead of min: the weight must never exceed 1 (it only turns the nearly "
            "clean images down).": snr.clamp(min=gamma) / snr,
            "the fraction is upside down: SNR / min(SNR, gamma) grows for clean images; the "
            "weight is min(SNR, gamma) / SNR.": snr / snr.clamp(max=gamma),
            "you divided by gamma; divide by SNR (the weight is 1 for noisy images, and "
            "gamma / SNR, shrinking, for clean ones).": snr.clamp(max=gamma) / gamma,
        }
        hint = first_matching_hint(got, wrong)
        return failed(EXERCISE, hint or f"with gamma={gamma:g}, SNR={snr[0]:.4g} should get "
                      f"weight {want[0]:.4g}; yours is {got[0]:.4g}.")  # fmt: skip
    return passed(
        EXERCISE,
        "min(SNR, gamma) / SNR: noisy images count fully, nearly clean ones are turned down.",
    )


# ----------------------------------------------------------------------------- prediction
UNGUIDED_EXERCISE = "predict: guidance w = 0 on digits"


def verify_unguided_agreement_prediction(
    answer: float | None, measured: float, conditional: float
) -> CheckResult:
    """Predict-then-check: class agreement of digits sampled with guidance w = 0.

    ``measured`` is the agreement the lesson just measured at w = 0
    (:func:`~diffusion_edu.metrics.class_agreement`); ``conditional`` the shipped model's
    record at w = 1. Answers within 0.08 of ``measured`` pass (sampling noise of ~100 digits).
    """
    return _check_prediction(
        UNGUIDED_EXERCISE,
        answer,
        measured,
        rel=0.0,
        abs_tol=0.08,
        wrong_answers={
            f"{conditional:.0%} is about what w = 1, plain conditional sampling, gives (the "
            "shipped model's record); w = 0 drops the label's term.": conditional,
            "w = 0 ignores the label altogether, so the requested digit comes up no more often "
            "than any other.": 1.0,
        },
        why="With w = 0 the sampler uses only eps_uncond, the model's estimate with the label "
        "hidden: it draws digits of every class, and the requested one comes up about 1 time "
        f"in 10 (measured: {measured:.0%}).",
    )
