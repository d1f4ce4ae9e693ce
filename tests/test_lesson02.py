"""Lesson 02's checkers (diffusion_edu.exercises.lesson02): normalising pixels and the SNR.
Each passes the reference solution and recognises typical wrong answers with the right hint
(and survives stubs, crashes and missing returns)."""

import pytest

from diffusion_edu.exercises.lesson02 import (
    check_normalize,
    check_snr,
)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x: x.float() / 255, "that is [0, 1]"),
        (lambda x: x * 2 / 255 - 1, "wrapped around"),  # uint8 * 2 overflows before the division
        (lambda x: (x - 128) / 128, "wrapped around"),  # uint8 - 128 wraps below zero
        (lambda x: x // 128 - 1, "dtype"),  # integer arithmetic throughout
        (lambda x: x.float() / 128 - 1, "dividing by 128"),
        (lambda x: x.float() / 127 - 1, "dividing by 127"),
        (lambda x: x.float() / 255 - 0.5, "[-0.5, 0.5]"),
        (lambda x: x.float() / 127.5, "[0, 2]"),
        (lambda x: 1 - x.float() / 127.5, "sign is flipped"),
        (lambda x: x.float().flatten() / 127.5 - 1, "keep the shape"),
        (lambda x: (x.float() / 127.5 - 1).tolist(), "torch.Tensor"),
        (lambda x: x.float() / 100 - 1, "should be exactly [-1, 1]"),
    ],
)
def test_normalize_hints(wrong, hint):
    result = check_normalize(wrong)
    assert not result.ok
    assert hint in result.message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda ab: (1 - ab) / ab, "upside down"),
        (lambda ab: (ab / (1 - ab)).sqrt(), "drop the square root"),
        (lambda ab: ab.sqrt() / (1 - ab), "a standard deviation"),
        (lambda ab: ab, "alpha_bar alone"),
        (lambda ab: ab / (1 - ab) + 1, "the signal's variance is alpha_bar"),
    ],
)
def test_snr_hints(wrong, hint):
    result = check_snr(wrong)
    assert not result.ok
    assert hint in result.message


# ----------------------------------------------------------------------------- prediction
def test_digits_variance_is_measured_on_the_bundled_digits() -> None:
    from diffusion_edu.data import load_mnist
    from diffusion_edu.exercises.lesson02 import digits_variance

    images = load_mnist("train", verbose=False).images
    assert digits_variance() == pytest.approx(float(images.double().var()))
    assert 0.3 < digits_variance() < 0.45  # far from the noise's 1: a convention, not a fact


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (1.0, "the noise's variance"),
        (0.62, "standard deviation"),
        (1 / 3, "spread evenly"),
        (0.095, "in [0, 1]"),
        (0.75, "too high"),
        (..., "write your prediction first"),
    ],
)
def test_digits_variance_prediction_names_the_slip(answer, hint: str) -> None:  # noqa: ANN001
    from diffusion_edu.exercises.lesson02 import verify_digits_variance_prediction

    result = verify_digits_variance_prediction(answer)
    assert not result.ok and hint in result.message


def test_digits_variance_prediction_passes_near_the_measured_value() -> None:
    from diffusion_edu.exercises.lesson02 import digits_variance, verify_digits_variance_prediction

    assert verify_digits_variance_prediction(round(digits_variance(), 2)).ok
