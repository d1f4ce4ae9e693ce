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
