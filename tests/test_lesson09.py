"""Lesson 09's self-checking exercises (diffusion_edu.exercises.lesson09): the checkers pass the
solutions and the library's own functions, name each usual slip, and turn a stub, a crash or a
wrong shape into a friendly verdict. (Its pictures and widget: tests/test_viz_prompt_viz.py.)"""

from __future__ import annotations

import matplotlib
import pytest

from diffusion_edu.exercises.lesson09 import (
    GUIDED_WEIGHTS,
    check_my_guided_eps,
    check_my_step_guidance,
    solution_my_guided_eps,
    solution_my_step_guidance,
    verify_conditional_prediction,
    verify_convention_prediction,
    verify_unguided_prediction,
)
from diffusion_edu.samplers import guided_prediction, step_guidance

matplotlib.use("Agg")


# ============================================================================= exercise 1
def test_guided_solution_and_library_agree_and_pass() -> None:
    assert check_my_guided_eps(solution_my_guided_eps).ok
    assert check_my_guided_eps(guided_prediction).ok


GUIDED_SLIPS = [
    ("swapped", lambda c, u, w: c + w * (u - c), "swapped"),
    ("Ho & Salimans' form", lambda c, u, w: (1 + w) * c - w * u, "Ho & Salimans' form"),
    ("difference only", lambda c, u, w: w * (c - u), "only the difference"),
    ("cond scaled", lambda c, u, w: w * c, "only eps_cond is scaled"),
    ("sign", lambda c, u, w: u - w * (c - u), "sign is flipped"),
    ("average", lambda c, u, w: (u + w * c) / (1 + w), "weighted average"),
    ("eps_cond", lambda c, u, w: c, "returned eps_cond"),
    ("eps_uncond", lambda c, u, w: u, "returned eps_uncond"),
]


@pytest.mark.parametrize(
    ("name", "student", "hint"), GUIDED_SLIPS, ids=[s[0] for s in GUIDED_SLIPS]
)
def test_guided_checker_names_each_slip(name: str, student, hint: str) -> None:  # noqa: ANN001
    result = check_my_guided_eps(student)
    assert not result.ok
    assert hint in result.message, result.message
    assert result.message.startswith(f"at w = {GUIDED_WEIGHTS[0]:g}")  # found at the guided w


def test_guided_checker_unknown_slip_says_how_far_off_and_checks_shape_and_type() -> None:
    result = check_my_guided_eps(lambda c, u, w: u + w * (c - u) + 0.1)
    assert not result.ok and "differs from the library's by up to 0.1" in result.message
    assert "shape" in check_my_guided_eps(lambda c, u, w: c[0]).message
    assert "torch.Tensor" in check_my_guided_eps(lambda c, u, w: c.tolist()).message
    assert "not written yet" in check_my_guided_eps(_stub).message


def test_guided_checker_catches_a_mistake_only_at_w_1() -> None:
    # Right at w = 2.5 and w = 0, wrong at w = 1: the checker must still find it.
    def student(c, u, w):  # noqa: ANN001, ANN202
        return u + w * (c - u) if w != 1.0 else u

    result = check_my_guided_eps(student)
    assert not result.ok and result.message.startswith("at w = 1")


# ============================================================================= exercise 2
def test_step_guidance_solution_and_library_pass() -> None:
    assert check_my_step_guidance(solution_my_step_guidance).ok
    assert check_my_step_guidance(step_guidance).ok


def test_step_guidance_solution_matches_the_library_everywhere() -> None:
    for interval in (None, (0, 1000), (200, 700), (999, 1000)):
        for t in range(1, 1001):
            assert solution_my_step_guidance(t, 2.5, interval) == step_guidance(t, 2.5, interval)


STEP_SLIPS = [
    ("zero outside", lambda t, g, i: g if i is None or i[0] < t <= i[1] else 0.0, "not uncond"),
    ("swapped", lambda t, g, i: g if i is None else (1.0 if i[0] < t <= i[1] else g), "swapped"),
    ("both edges", lambda t, g, i: g if i is None or i[0] <= t < i[1] else 1.0, "both edges"),
    ("lower edge", lambda t, g, i: g if i is None or i[0] <= t <= i[1] else 1.0, "lower edge"),
    ("upper edge", lambda t, g, i: g if i is None or i[0] < t < i[1] else 1.0, "upper edge"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "student", "hint"), STEP_SLIPS, ids=[s[0] for s in STEP_SLIPS])
def test_step_guidance_checker_names_each_slip(name: str, student, hint: str) -> None:  # noqa: ANN001
    result = check_my_step_guidance(student)
    assert not result.ok
    assert hint in result.message, result.message


def test_step_guidance_checker_explains_none_and_non_numbers() -> None:
    crashes = check_my_step_guidance(lambda t, g, i: g if i[0] < t <= i[1] else 1.0)
    assert not crashes.ok and "interval=None" in crashes.message and "TypeError" in crashes.message
    ignores = check_my_step_guidance(lambda t, g, i: 1.0 if i is None else step_guidance(t, g, i))
    assert not ignores.ok and "every step" in ignores.message
    text = check_my_step_guidance(lambda t, g, i: "3")
    assert not text.ok and "return a number" in text.message
    other = check_my_step_guidance(lambda t, g, i: 2.0)
    assert not other.ok and "at t = 1000" in other.message  # no known slip: where it goes wrong


# ============================================================================= predictions
def test_prediction_checkers_accept_the_answer_and_name_the_known_wrong_ones() -> None:
    assert verify_unguided_prediction(0.1, measured=0.12, conditional=0.9).ok
    wrong = verify_unguided_prediction(0.9, measured=0.12, conditional=0.9)
    assert not wrong.ok and "w = 1 gives" in wrong.message
    assert "no more often" in verify_unguided_prediction(1.0, 0.12, 0.5).message
    assert verify_conditional_prediction(0.85, measured=0.9, unguided=0.1).ok
    assert "is w = 0" in verify_conditional_prediction(0.1, measured=0.9, unguided=0.1).message
    assert verify_convention_prediction(6.5).ok
    assert "wrong way" in verify_convention_prediction(8.5).message
    assert "differ by one" in verify_convention_prediction(7.5).message
    assert "write your prediction" in verify_convention_prediction(...).message
    assert verify_convention_prediction(2.0, guidance_scale=3.0).ok


def _stub(*args: object) -> None:
    raise NotImplementedError
