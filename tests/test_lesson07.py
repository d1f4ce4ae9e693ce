"""Lesson 07's self-checking exercise: the Min-SNR weight (diffusion_edu.exercises.lesson07)."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.exercises.lesson07 import check_min_snr_weight, solution_min_snr_weight
from diffusion_edu.training import min_snr_weight


# ----------------------------------------------------------------------------- exercise
def test_min_snr_solution_passes_and_is_1_for_noisy_images() -> None:
    assert check_min_snr_weight(solution_min_snr_weight).ok
    snr = torch.tensor([0.01, 1.0, 5.0, 50.0, 5000.0])
    torch.testing.assert_close(min_snr_weight(snr, 5.0), torch.tensor([1, 1, 1, 0.1, 0.001]))


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda snr, g: snr.clamp(max=g), "divide it by SNR"),
        (lambda snr, g: snr.clamp(min=g) / snr, "max instead of min"),
        (lambda snr, g: snr / snr.clamp(max=g), "upside down"),
        (lambda snr, g: snr.clamp(max=g) / g, "you divided by gamma"),
        (lambda snr, g: None, "return"),
        (lambda snr, g: snr[:3], "shape"),
    ],
)
def test_min_snr_checker_names_the_mistake(wrong, hint: str) -> None:  # noqa: ANN001
    result = check_min_snr_weight(wrong)
    assert not result.ok and hint in result.message


# ----------------------------------------------------------------------------- prediction
@pytest.mark.parametrize(
    ("answer", "ok", "hint"),
    [
        (0.1, True, "1 time in 10"),
        (0.15, True, "measured: 12%"),
        (0.92, False, "is about what w = 1"),
        (1.0, False, "ignores the label"),
        (0.5, False, "too high"),
        (..., False, "write your prediction first"),
    ],
)
def test_unguided_agreement_prediction(answer, ok: bool, hint: str) -> None:  # noqa: ANN001
    from diffusion_edu.exercises.lesson07 import verify_unguided_agreement_prediction

    result = verify_unguided_agreement_prediction(answer, measured=0.12, conditional=0.918)
    assert result.ok is ok and hint in result.message, result.message
