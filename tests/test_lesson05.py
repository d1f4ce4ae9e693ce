"""Lesson 05's checkers (diffusion_edu.exercises.lesson05): from predicted noise to the score,
and the share of samples that copy training points. They pass the reference solutions and
catch typical mistakes with the right hint."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.exercises.lesson05 import (
    check_copy_fraction,
    check_eps_to_score,
    solution_copy_fraction,
    solution_eps_to_score,
)
from diffusion_edu.schedules import NoiseSchedule


def _stub(*args: object) -> None:
    raise NotImplementedError


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
