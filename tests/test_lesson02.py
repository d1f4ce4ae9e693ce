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
