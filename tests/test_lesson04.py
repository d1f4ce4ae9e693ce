"""Lesson 04's checker (diffusion_edu.exercises.lesson04): alpha_bar from the betas. It passes
the reference solution and catches typical mistakes with the right hint."""

from __future__ import annotations

import torch

from diffusion_edu.exercises.lesson04 import check_alpha_bar, solution_alpha_bar
from diffusion_edu.schedules import NoiseSchedule


def _stub(*args: object) -> None:
    raise NotImplementedError


def test_alpha_bar_solution_matches_the_schedule() -> None:
    schedule = NoiseSchedule.linear()
    torch.testing.assert_close(solution_alpha_bar(schedule.betas[1:]), schedule.alpha_bars)
    assert check_alpha_bar(solution_alpha_bar).ok


def test_alpha_bar_hints() -> None:
    def one(b: torch.Tensor) -> torch.Tensor:
        return torch.ones(1, dtype=b.dtype)

    cases = {
        "cumsum": lambda b: torch.cat([one(b), torch.cumsum(1 - b, 0)]),
        "multiplied the betas": lambda b: torch.cat([one(b), torch.cumprod(b, 0)]),
        "length": lambda b: torch.cumprod(1 - b, 0),
        "off by one": lambda b: torch.cat([one(b), one(b), torch.cumprod(1 - b, 0)[:-1]]),
        "returned None": lambda b: None,
        "not written yet": _stub,
    }
    for hint, fn in cases.items():
        result = check_alpha_bar(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)
    result = check_alpha_bar(lambda b: torch.cumprod(torch.cat([2 * one(b), 1 - b]), 0))
    assert not result.ok and "alpha_bar[0] should be 1" in result.message


# ----------------------------------------------------------------------------- prediction
def test_snr_one_prediction_uses_the_cosine_crossing() -> None:
    import pytest

    from diffusion_edu.exercises.lesson04 import verify_snr_one_prediction

    cosine = NoiseSchedule.cosine()
    crossing = int((cosine.snr[1:] <= 1).nonzero()[0]) + 1
    assert 450 < crossing < 550
    assert verify_snr_one_prediction(crossing).ok and verify_snr_one_prediction(500).ok
    for answer, hint in ((260, "LINEAR"), (1000, "far below 1"), (750, "too high"), (..., "first")):
        result = verify_snr_one_prediction(answer)
        assert not result.ok and hint in result.message, answer
    with pytest.raises(AssertionError):
        assert verify_snr_one_prediction(crossing + 100).ok
