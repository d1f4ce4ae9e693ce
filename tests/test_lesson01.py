"""Lesson 01's checkers (diffusion_edu.exercises.lesson01): the random walk's variance and one
diffusion step. Each passes the reference solution and recognises typical wrong answers with
the right hint (and survives stubs, crashes and missing returns)."""

import math

import pytest
import torch

from diffusion_edu.exercises.lesson01 import (
    check_diffusion_step,
    check_random_walk_variance,
)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda n, s: n * s, "sigma**2, not sigma"),
        (lambda n, s: math.sqrt(n) * s, "standard deviation"),
        (lambda n, s: (n * s) ** 2, "added standard deviations"),
        (lambda n, s: s**2, "ignores the number of steps"),
        (lambda n, s: n * s**2 + 1, "variances of independent steps add"),
    ],
)
def test_random_walk_variance_hints(wrong, hint):
    result = check_random_walk_variance(wrong)
    assert not result.ok
    assert hint in result.message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x, D, dt, noise: math.sqrt(2 * D * dt) * noise, "only the displacement"),
        (lambda x, D, dt, noise: x + 2 * D * dt * noise, "you used the variance 2 D dt"),
        (lambda x, D, dt, noise: x + math.sqrt(D * dt) * noise, "missing factor 2"),
        (lambda x, D, dt, noise: x + math.sqrt(2 * D) * dt * noise, "not sqrt(2 D) * dt"),
        (lambda x, D, dt, noise: x + math.sqrt(2 * D * dt) * torch.randn_like(x), "`noise`"),
        (lambda x, D, dt, noise: x + 10 * math.sqrt(2 * D * dt) * noise, "times the right size"),
    ],
)
def test_diffusion_step_hints(wrong, hint):
    result = check_diffusion_step(wrong)
    assert not result.ok
    assert hint in result.message


# ----------------------------------------------------------------------------- prediction
def test_walk_variances_match_a_simulated_walk() -> None:
    from diffusion_edu.exercises.lesson01 import walk_variances
    from diffusion_edu.physics import noise_walk
    from diffusion_edu.schedules import NoiseSchedule

    plain, shrinking = walk_variances(beta=0.01, n_steps=100)
    assert plain == pytest.approx(1.0) and shrinking == pytest.approx(1 - 0.99**100)
    schedule = NoiseSchedule([0.01] * 100)
    start = torch.full((20_000, 1), 0.8)
    for shrink, want in ((False, plain), (True, shrinking)):
        walk = noise_walk(
            start, schedule, shrink=shrink, generator=torch.Generator().manual_seed(0)
        )
        assert float(walk.states[-1].var()) == pytest.approx(want, rel=0.05)


@pytest.mark.parametrize(
    ("plain", "shrinking", "hint"),
    [
        (10.0, 0.634, "you added standard deviations"),
        (0.01, 0.634, "one step's variance"),
        (0.634, 0.634, "shrinking walk's value"),
        (1.0, 1.0, "where it is heading"),
        (1.0, 0.366, "the gap still left"),
        (1.0, 0.2, "too low"),
        (..., 0.634, "write your prediction first"),
    ],
)
def test_walk_variance_prediction_names_the_slip(plain, shrinking, hint: str) -> None:  # noqa: ANN001
    from diffusion_edu.exercises.lesson01 import verify_walk_variance_prediction

    result = verify_walk_variance_prediction(plain, shrinking)
    assert not result.ok and hint in result.message


def test_walk_variance_prediction_passes_the_right_answers() -> None:
    from diffusion_edu.exercises.lesson01 import verify_walk_variance_prediction

    assert verify_walk_variance_prediction(1.0, 0.634).ok
    assert verify_walk_variance_prediction(2.0, 1 - 0.98**100, beta=0.02).ok
