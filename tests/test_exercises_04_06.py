"""The checkers of lessons 04-06 pass the library's solutions and catch typical mistakes
with the right hint."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu import NoiseSchedule
from diffusion_edu.exercises.lesson04 import check_alpha_bar, solution_alpha_bar
from diffusion_edu.exercises.lesson05 import (
    check_copy_fraction,
    check_eps_to_score,
    solution_copy_fraction,
    solution_eps_to_score,
)
from diffusion_edu.exercises.lesson06 import (
    check_conv_output_size,
    check_unet2015_output_size,
    solution_conv_output_size,
    solution_unet2015_output_size,
)


def _stub(*args: object) -> None:
    raise NotImplementedError


def _forgot_return(*args: object) -> None:
    pass


def _crashes(*args: object) -> float:
    return 1 / 0


@pytest.mark.parametrize(
    "checker",
    [
        check_alpha_bar,
        check_eps_to_score,
        check_copy_fraction,
        check_conv_output_size,
        check_unet2015_output_size,
    ],
)
def test_stubs_crashes_and_non_functions_get_a_friendly_verdict(checker) -> None:  # noqa: ANN001
    assert "not written yet" in checker(_stub).message
    assert "returned None: return " in checker(_forgot_return).message
    result = checker(_crashes)
    assert not result.ok and "ZeroDivisionError" in result.message
    assert str(result).startswith("NOT YET")
    assert "pass your function itself" in checker(None).message


# ----------------------------------------------------------------------------- lesson 04
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


# ----------------------------------------------------------------------------- lesson 05
def test_eps_to_score_solution_passes() -> None:
    assert check_eps_to_score(solution_eps_to_score).ok


def test_eps_to_score_hints() -> None:
    def ab(s: NoiseSchedule, t: int) -> torch.Tensor:
        return s.alpha_bars[t].float()

    cases = {
        "sign is flipped": lambda e, t, s: e / (1 - ab(s, t)).sqrt(),
        "missing square root": lambda e, t, s: -e / (1 - ab(s, t)),
        "sqrt(alpha_bar_t)": lambda e, t, s: -e / ab(s, t).sqrt(),
        "not the noise itself": lambda e, t, s: -e,
        "returned None": lambda e, t, s: None,
        "not written yet": _stub,
        "expected shape": lambda e, t, s: e[:, :1],
    }
    for hint, fn in cases.items():
        result = check_eps_to_score(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)


def test_copy_fraction_solution_matches_the_library() -> None:
    from diffusion_edu.toy2d import copy_fraction, make_spiral

    train, fresh, samples = make_spiral(100, seed=0), make_spiral(400, seed=1), make_spiral(50)
    expected = copy_fraction(samples, train, fresh, percentile=5.0)
    assert solution_copy_fraction(samples, train, fresh) == pytest.approx(expected, abs=1e-9)
    # Exact copies of training points are all copies; the checker accepts the solution.
    assert solution_copy_fraction(train[:10], train, fresh) == 1.0
    assert check_copy_fraction(solution_copy_fraction).ok


def test_copy_fraction_hints() -> None:
    def nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cdist(a, b).min(dim=1).values

    def share(s, tr, fr, q=0.05, to=None, above=False, stat=None):  # noqa: ANN001, ANN202
        tau = stat(nearest(fr, tr)) if stat else torch.quantile(nearest(fr, tr), q)
        d = nearest(s, tr if to is None else to(tr, fr))
        return ((d > tau) if above else (d < tau)).float().mean().item()

    cases = {
        "FARTHER than the threshold": lambda s, tr, fr: share(s, tr, fr, above=True),
        "not the 95th": lambda s, tr, fr: share(s, tr, fr, q=0.95),
        "not their mean": lambda s, tr, fr: share(s, tr, fr, stat=torch.mean),
        "TRAINING points": lambda s, tr, fr: share(s, tr, fr, to=lambda tr, fr: fr),
        "return a fraction": lambda s, tr, fr: share(s, tr, fr) * len(s),
        "30 planted copies": lambda s, tr, fr: 0.5,
    }
    for hint, fn in cases.items():
        result = check_copy_fraction(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)


# ----------------------------------------------------------------------------- lesson 06
def test_conv_output_size_solution_and_hints() -> None:
    assert check_conv_output_size(solution_conv_output_size).ok
    assert solution_conv_output_size(572, 3, 0, 1) == 570
    cases = {
        "off by one": lambda n, k, p, s: (n + 2 * p - k) // s,
        "BOTH sides": lambda n, k, p, s: (n + p - k) // s + 1,
        "forgot the padding": lambda n, k, p, s: (n - k) // s + 1,
        "divide by the stride": lambda n, k, p, s: n + 2 * p - k + 1,
        "not written yet": _stub,
    }
    for hint, fn in cases.items():
        result = check_conv_output_size(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)


def test_unet2015_output_size_solution_and_hints() -> None:
    assert solution_unet2015_output_size(572) == 388  # Ronneberger et al. 2015, Fig. 1
    assert check_unet2015_output_size(solution_unet2015_output_size).ok

    def one_conv(n: int, depth: int) -> int:
        for _ in range(depth):
            n = (n - 2) // 2
        n -= 2
        for _ in range(depth):
            n = n * 2 - 2
        return n

    cases = {
        "PADDED": lambda n, d: n,
        "ONE conv": one_conv,
        "not written yet": _stub,
        "the output is 388": lambda n, d: 400,
    }
    for hint, fn in cases.items():
        result = check_unet2015_output_size(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)
