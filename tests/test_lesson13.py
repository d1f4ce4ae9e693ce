"""Lesson 13's self-checking exercises (diffusion_edu.exercises.lesson13): the checker passes the
solution, names each usual slip, turns a stub or a crash into a friendly verdict; the predictions
accept the right answers and explain the typical wrong ones. (Pictures: test_viz_costs_viz.py.)"""

from __future__ import annotations

import pytest

from diffusion_edu.costs import SD_V1, GenerationSetup, Throughput, estimate_cost
from diffusion_edu.exercises.lesson13 import (
    check_my_seconds_per_image,
    solution_my_seconds_per_image,
    verify_latent_saving_prediction,
    verify_side_doubling_prediction,
)


def test_solution_agrees_with_the_library_on_sd_v1_by_hand() -> None:
    seconds = solution_my_seconds_per_image(860e6, 512, 8, SD_V1.share, 50, True, 2e10)
    by_hand = 2 * 860e6 * 64 * 64 * SD_V1.share * 100 / 2e10
    assert seconds == pytest.approx(by_hand, rel=1e-12)
    library = estimate_cost(SD_V1, Throughput((1,), (2e10,))).seconds_per_image
    assert seconds == pytest.approx(library, rel=1e-12)


def test_checker_passes_the_solution() -> None:
    result = check_my_seconds_per_image(solution_my_seconds_per_image)
    assert result.ok, result.message
    assert "minutes per image" in result.message


def _slip(**which: bool):  # noqa: ANN202
    def fn(parameters, image_size, downsampling, share, steps, guidance, rate):  # noqa: ANN001, ANN202
        side = image_size if which.get("no_f") else image_size // downsampling
        n = side if which.get("one_side") else side**2
        per_call = (1 if which.get("no_two") else 2) * parameters * n
        per_call *= 1 if which.get("no_share") else share
        calls = steps * (1 if which.get("no_guidance") or not guidance else 2)
        return per_call * calls * rate if which.get("times_rate") else per_call * calls / rate

    return fn


@pytest.mark.parametrize(
    ("slip", "hint"),
    [("one_side", "whole grid"), ("no_two", "multiply-add counts 2"),
     ("no_share", "grid share is missing"), ("no_guidance", "twice"),
     ("times_rate", "multiplied by the throughput"), ("no_f", "latent grid")],
)  # fmt: skip
def test_checker_names_each_usual_slip(slip: str, hint: str) -> None:
    result = check_my_seconds_per_image(_slip(**{slip: True}))
    assert not result.ok
    assert hint in result.message, result.message


def test_checker_turns_a_stub_a_crash_and_a_non_number_into_verdicts() -> None:
    def stub(*args):  # noqa: ANN002, ANN202
        raise NotImplementedError

    def crash(*args):  # noqa: ANN002, ANN202
        return 1 / 0

    assert "not written yet" in check_my_seconds_per_image(stub).message
    assert not check_my_seconds_per_image(crash).ok
    assert "one number" in check_my_seconds_per_image(lambda *a: "soon").message
    assert "expected" in check_my_seconds_per_image(lambda *a: 1.0).message


def test_side_doubling_prediction_accepts_4_and_explains_2_and_16() -> None:
    assert verify_side_doubling_prediction(4, measured=4.05).ok
    assert "positions" in verify_side_doubling_prediction(2, measured=4.05).message
    assert "attention" in verify_side_doubling_prediction(16, measured=4.05).message
    assert "write your prediction" in verify_side_doubling_prediction(..., measured=4.05).message


def test_latent_saving_prediction_accepts_64_and_explains_8_and_48() -> None:
    pixel = GenerationSetup("p", 512, False, 1, 860e6, SD_V1.share, 50, True)
    fast = Throughput((1,), (1e10,))
    right = estimate_cost(pixel, fast).flops_per_call / estimate_cost(SD_V1, fast).flops_per_call
    assert verify_latent_saving_prediction(64, right).ok
    assert "one side" in verify_latent_saving_prediction(8, right).message
    assert "channels" in verify_latent_saving_prediction(48, right).message
