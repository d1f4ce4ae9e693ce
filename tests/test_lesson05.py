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


# ----------------------------------------------------------------------------- DDPM's loss
def test_diffusion_loss_solution_passes_and_equals_the_library() -> None:
    from diffusion_edu.exercises.lesson05 import check_diffusion_loss, solution_diffusion_loss
    from diffusion_edu.training import diffusion_loss

    assert check_diffusion_loss(solution_diffusion_loss).ok
    schedule = NoiseSchedule.cosine(T=100)
    model = ToyModelForTest()
    x0, eps = torch.randn(8, 2), torch.randn(8, 2)
    t = torch.arange(1, 9)
    torch.testing.assert_close(
        solution_diffusion_loss(model, x0, t, eps, schedule),
        diffusion_loss(model, x0, schedule, t=t, eps=eps),
    )


class ToyModelForTest(torch.nn.Module):
    """eps_hat = tanh(x_t) * t / 100: depends on both inputs, no weights."""

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: object = None) -> torch.Tensor:
        return torch.tanh(x_t) * (t.to(x_t.dtype)[:, None] / 100)


def _slip(x_t_of, target_of=None, reduce=None):  # noqa: ANN001, ANN202
    def fn(model, x0, t, eps, schedule):  # noqa: ANN001, ANN202
        ab = schedule.alpha_bars[t].float()[:, None]
        x_t = x_t_of(ab, x0, eps)
        err = ((target_of or (lambda x0, eps, x_t: eps))(x0, eps, x_t) - model(x_t, t)) ** 2
        return (reduce or (lambda e: e.mean()))(err)

    return fn


def _good(ab, x0, eps):  # noqa: ANN001, ANN202
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (_slip(lambda ab, x0, eps: ab * x0 + (1 - ab) * eps), "SQUARE ROOTS"),
        (_slip(lambda ab, x0, eps: ab.sqrt() * x0 + (1 - ab) * eps), "not its variance"),
        (_slip(lambda ab, x0, eps: ab * x0 + (1 - ab).sqrt() * eps), "not alpha_bar_t"),
        (_slip(lambda ab, x0, eps: (1 - ab).sqrt() * x0 + ab.sqrt() * eps), "swapped"),
        (_slip(_good, lambda x0, eps, x_t: x0), "not with x_0"),
        (_slip(_good, lambda x0, eps, x_t: x_t), "not with x_t"),
        (_slip(_good, reduce=lambda e: e.sum()), "you summed"),
        (_slip(_good, reduce=lambda e: e.sum(1).mean()), "summed over the coordinates"),
        (_slip(_good, reduce=lambda e: e.mean(1)), "one loss per example"),
        (_slip(_good, reduce=lambda e: e), "every squared error"),
        (_slip(_good, reduce=lambda e: e.sqrt().mean()), "SQUARED error"),
        (
            lambda m, x0, t, eps, s: (
                (eps - m(_good(s.alpha_bars[t - 1].float()[:, None], x0, eps), t)) ** 2
            ).mean(),
            "no -1 needed",
        ),
        (
            lambda m, x0, t, eps, s: ((eps - m(s.alpha_bars[t].sqrt() * x0, t)) ** 2).mean(),
            "reshape the coefficient",
        ),
        (lambda m, x0, t, eps, s: None, "return"),
        (_stub, "not written yet"),
    ],
)
def test_diffusion_loss_checker_names_the_slip(fn, hint: str) -> None:  # noqa: ANN001
    from diffusion_edu.exercises.lesson05 import check_diffusion_loss

    result = check_diffusion_loss(fn)
    assert not result.ok and hint in result.message, result.message


def test_diffusion_loss_checker_accepts_float64_and_python_floats() -> None:
    from diffusion_edu.exercises.lesson05 import check_diffusion_loss

    assert check_diffusion_loss(_slip(lambda ab, x0, eps: _good(ab.double(), x0, eps))).ok
    assert check_diffusion_loss(_slip(_good, reduce=lambda e: e.mean().item())).ok


# ----------------------------------------------------------------------------- prediction
@pytest.mark.parametrize(
    ("choice", "ok", "hint"),
    [
        (1, True, "unconditional"),
        (2, False, "that is w = 1"),
        (3, False, "still denoises"),
        (4, False, "NEGATIVE w"),
        (7, False, "choose one of"),
        (..., False, "write your prediction first"),
    ],
)
def test_guidance_zero_prediction(choice, ok: bool, hint: str) -> None:  # noqa: ANN001
    from diffusion_edu.exercises.lesson05 import verify_guidance_zero_prediction

    result = verify_guidance_zero_prediction(choice)
    assert result.ok is ok and hint in result.message
