"""Lesson 03's checkers (diffusion_edu.exercises.lesson03): one forward step q_step and the
closed form q_sample. Each passes the reference solution and the library's own function, and
recognises typical wrong answers with the right hint (and survives stubs, crashes and missing
returns)."""

import pytest

from diffusion_edu.exercises.lesson03 import (
    check_q_sample,
    check_q_step,
)
from diffusion_edu.forward import q_sample, q_step


@pytest.mark.parametrize("checker, library", [(check_q_step, q_step), (check_q_sample, q_sample)])
def test_the_librarys_own_functions_pass_the_checks(checker, library):
    assert checker(library).ok


def _q_sample_with(x0_scale, noise_scale, shift=0):
    def q_sample_wrong(x0, t, schedule, noise):
        ab = schedule.alpha_bars[t + shift].item()
        a = schedule.alphas[t].item()
        return x0_scale(ab, a) * x0 + noise_scale(ab, a) * noise

    return q_sample_wrong


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (
            _q_sample_with(lambda ab, a: ab**0.5, lambda ab, a: 1 - ab),
            "your noise scale looks like (1 - alpha_bar) instead of its square root",
        ),
        (
            _q_sample_with(lambda ab, a: ab, lambda ab, a: (1 - ab) ** 0.5),
            "you scaled x0 by alpha_bar instead of sqrt(alpha_bar)",
        ),
        (_q_sample_with(lambda ab, a: ab, lambda ab, a: 1 - ab), "both scales"),
        (
            _q_sample_with(lambda ab, a: a**0.5, lambda ab, a: (1 - a) ** 0.5),
            "you used alphas[t] (one step) instead of alpha_bars[t]",
        ),
        (_q_sample_with(lambda ab, a: (1 - ab) ** 0.5, lambda ab, a: ab**0.5), "swapped"),
        (_q_sample_with(lambda ab, a: 1.0, lambda ab, a: (1 - ab) ** 0.5), "forgot to shrink x0"),
        (
            _q_sample_with(lambda ab, a: ab**0.5, lambda ab, a: (1 - ab) ** 0.5, shift=-1),
            "off by one: you used alpha_bars[299] for t=300",
        ),
    ],
)
def test_q_sample_hints(wrong, hint):
    result = check_q_sample(wrong)
    assert not result.ok
    assert hint in result.message


def test_q_sample_off_by_one_forward_is_caught():
    def shifted(x0, t, schedule, noise):  # alpha_bars[t + 1], crashes at t = T
        ab = schedule.alpha_bars[t + 1].item()
        return ab**0.5 * x0 + (1 - ab) ** 0.5 * noise

    result = check_q_sample(shifted)
    assert not result.ok and "alpha_bars[301] for t=300" in result.message


def test_q_sample_t0_must_return_x0():
    def no_t0(x0, t, schedule, noise):
        return q_sample(x0, max(t, 1), schedule, noise)

    result = check_q_sample(no_t0)
    assert not result.ok and "t=0" in result.message


def _q_step_with(x_scale, noise_scale, shift=0):
    def q_step_wrong(x, t, schedule, noise):
        a, b = schedule.alphas[t + shift].item(), schedule.betas[t + shift].item()
        ab = schedule.alpha_bars[t].item()
        return x_scale(a, b, ab) * x + noise_scale(a, b, ab) * noise

    return q_step_wrong


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (_q_step_with(lambda a, b, ab: 1.0, lambda a, b, ab: b**0.5), "forgot the shrink"),
        (_q_step_with(lambda a, b, ab: a**0.5, lambda a, b, ab: b), "you used the variance beta_t"),
        (_q_step_with(lambda a, b, ab: a, lambda a, b, ab: b**0.5), "by alpha_t instead of sqrt"),
        (
            _q_step_with(lambda a, b, ab: ab**0.5, lambda a, b, ab: (1 - ab) ** 0.5),
            "you used alpha_bars[t]",
        ),
        (_q_step_with(lambda a, b, ab: b**0.5, lambda a, b, ab: a**0.5), "swapped"),
        (
            _q_step_with(lambda a, b, ab: a**0.5, lambda a, b, ab: b**0.5, shift=-1),
            "off by one: you used step 299's beta for t=300",
        ),
    ],
)
def test_q_step_hints(wrong, hint):
    result = check_q_step(wrong)
    assert not result.ok
    assert hint in result.message


# ----------------------------------------------------------------------------- prediction
def test_two_step_variance_matches_two_real_steps() -> None:
    import torch

    from diffusion_edu.exercises.lesson03 import verify_two_step_variance_prediction
    from diffusion_edu.schedules import NoiseSchedule

    schedule = NoiseSchedule([0.1, 0.2])
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200_000)
    for t in (1, 2):
        x = q_step(x, t, schedule, torch.randn(x.shape, generator=g))
    assert float(x.var()) == pytest.approx(0.28, rel=0.01)
    assert verify_two_step_variance_prediction(0.28).ok


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (0.3, "added the two betas"),
        (0.72, "alpha_bar_2"),
        (0.02, "do not multiply"),
        (0.53, "standard deviation"),
        (0.9, "too high"),
        (None, "write your prediction first"),
    ],
)
def test_two_step_variance_prediction_names_the_slip(answer, hint: str) -> None:  # noqa: ANN001
    from diffusion_edu.exercises.lesson03 import verify_two_step_variance_prediction

    result = verify_two_step_variance_prediction(answer)
    assert not result.ok and hint in result.message
