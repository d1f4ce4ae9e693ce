"""Lesson 13 exercises: what generating an image costs, by the rule of :mod:`diffusion_edu.costs`.

1. ``my_seconds_per_image(parameters, image_size, downsampling, share, steps, guidance,
   flops_per_second) -> seconds``: the whole chain. Grid positions N = (image_size / f)^2;
   FLOPs per call 2 P N share; calls = steps, twice with guidance; seconds = FLOPs per image /
   throughput. The checker compares with :func:`diffusion_edu.costs.estimate_cost` and names
   the usual slips.
2. :func:`verify_side_doubling_prediction`: predict how many times a pixel model's FLOPs per
   call grow when the image side doubles; the lesson counts it with ``forward_flops``.
3. :func:`verify_latent_saving_prediction`: predict how many times fewer FLOPs per call a
   latent denoiser (f = 8) needs than a pixel denoiser of the same parameters and layout, on a
   512 x 512 x 3 image.
"""

from __future__ import annotations

from collections.abc import Callable

from diffusion_edu.costs import GenerationSetup, Throughput, estimate_cost
from diffusion_edu.exercises.core import CheckResult, call_student, failed, passed
from diffusion_edu.exercises.core import check_prediction as _check_prediction

__all__ = [
    "solution_my_seconds_per_image",
    "check_my_seconds_per_image",
    "verify_side_doubling_prediction",
    "verify_latent_saving_prediction",
]

SECONDS = "my_seconds_per_image"


# ----------------------------------------------------------------------------- solutions
def solution_my_seconds_per_image(
    parameters: float,
    image_size: int,
    downsampling: int,
    share: float,
    steps: int,
    guidance: bool,
    flops_per_second: float,
) -> float:
    """Reference solution: N = (image_size / f)^2 positions, 2 P N share FLOPs per call,
    steps (x2 with guidance) calls, divided by the throughput."""
    positions = (image_size // downsampling) ** 2
    per_call = 2 * parameters * positions * share
    calls = steps * (2 if guidance else 1)
    return per_call * calls / flops_per_second


# ----------------------------------------------------------------------------- exercise 1
#: (parameters, image_size, downsampling, share, steps, guidance, flops_per_second): a pixel
#: model without guidance first (so that a missing factor 2 there can only be the multiply-add),
#: then our pixel U-Net, our latent U-Net and Stable Diffusion v1's shapes, all guided.
_CASES = (
    (35e6, 64, 1, 0.3, 1000, False, 5e10),
    (200_433, 28, 1, 0.2213, 50, True, 2e10),
    (496_228, 28, 4, 0.4181, 50, True, 2e10),
    (860e6, 512, 8, 0.0862, 50, True, 2e10),
)


def _library(case: tuple) -> float:
    p, size, f, share, steps, guidance, rate = case
    setup = GenerationSetup("case", size, f > 1, f, p, share, steps, guidance)
    return estimate_cost(setup, Throughput((1,), (rate,))).seconds_per_image


def _slips(case: tuple) -> dict[str, float]:
    p, size, f, share, steps, guidance, rate = case
    right = _library(case)
    slips = {
        "the grid positions are N = (image_size / f)^2, the whole grid: you used one side "
        "(image_size / f).": right / (size // f),
        "the grid share is missing: a U-Net applies most weights to downsampled grids, so "
        "FLOPs per call = 2 P N * share, not 2 P N.": right / share,
        "seconds = FLOPs / (FLOPs per second): you multiplied by the throughput.": right * rate**2,
    }
    if guidance:  # the unguided case came first, so a factor 2 here is the guidance
        slips[
            "with guidance each step runs the network twice (with and without the condition): "
            "calls = 2 * steps."
        ] = right / 2
    else:
        slips["a multiply-add counts 2 FLOPs: FLOPs per call = 2 * P * N * share."] = right / 2
        slips["without guidance each step is ONE call: calls = steps."] = right * 2
    if f > 1:
        slips[
            "a latent model's denoiser reads the latent grid, (image_size / f)^2 positions, not "
            "the image's image_size^2 pixels."
        ] = right * f * f
    return slips


def check_my_seconds_per_image(student_fn: Callable[..., object]) -> CheckResult:
    """Check ``student_fn(parameters, image_size, downsampling, share, steps, guidance,
    flops_per_second) -> seconds`` against :func:`diffusion_edu.costs.estimate_cost` on our
    pixel and latent digit models, Stable Diffusion v1's shapes and an unguided pixel model."""
    for case in _CASES:
        got, problem = call_student(SECONDS, student_fn, *case, returns="the seconds per image")
        if problem is not None:
            return problem
        p, size, f, share, steps, guidance, rate = case
        where = (f"P = {p:.3g}, image side {size}, f = {f}, share {share}, {steps} steps, "
                 f"guidance {guidance}, {rate:.2g} FLOP/s")  # fmt: skip
        try:
            value = float(got)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return failed(SECONDS, f"return one number (seconds), got {got!r:.80} ({where}).")
        right = _library(case)
        if abs(value - right) <= 1e-6 * abs(right):
            continue
        for hint, wrong in _slips(case).items():
            if abs(value - wrong) <= 1e-6 * abs(wrong):
                return failed(SECONDS, f"{where}: {hint}")
        return failed(SECONDS, f"{where}: expected {right:.4g} s, got {value:.4g} s.")
    sd = _library(_CASES[3])
    return passed(
        SECONDS,
        f"right for all four. At 2e10 FLOP/s (about this course's CPU), Stable Diffusion v1's "
        f"shapes come to {sd / 60:.0f} minutes per image by this rule: 50 steps x 2 calls of "
        "2 x 860M x 4,096 x 0.0862 FLOPs each.",
    )


# ----------------------------------------------------------------------------- predictions
def verify_side_doubling_prediction(answer: float | None, measured: float) -> CheckResult:
    """Predict-then-check: how many times do a pixel U-Net's FLOPs per call grow when the image
    side doubles (28 -> 56)? ``measured`` is the lesson's ``forward_flops`` ratio. Within 10%."""
    return _check_prediction(
        "FLOPs per call when the side doubles",
        answer,
        measured,
        rel=0.1,
        wrong_answers={
            "2x is the change in the side. A convolution runs at every position of the grid, "
            "and a grid twice as wide AND twice as high has 4x the positions.": 2.0,
            "16x would be true if every layer compared every position with every other "
            "(attention, N^2). Our U-Net has attention only at its lowest resolution; the "
            "convolutions, which cost per position, dominate.": 16.0,
            "1x: the parameters do not change, but each weight is applied at 4x as many "
            "positions.": 1.0,
        },
        why=f"Counted: {measured:.3g}x. Same weights, 4x the positions: the rule's N grows 4x "
        "(the little extra is the attention at the lowest resolution, which grows as N^2).",
    )


def verify_latent_saving_prediction(answer: float | None, right: float) -> CheckResult:
    """Predict-then-check: a pixel denoiser and a latent denoiser (f = 8, 4 channels) with the
    same parameters and layout, on a 512 x 512 x 3 image: how many times fewer FLOPs per call
    does the latent one need? ``right`` is the rule's ratio as the lesson computes it."""
    return _check_prediction(
        "latent saving at f = 8",
        answer,
        right,
        rel=0.05,
        wrong_answers={
            "8x is the saving along one side. The denoiser runs over the whole grid: (512/8)^2 "
            "= 4,096 latent positions against 512^2 = 262,144 pixels.": 8.0,
            "48x is the saving in numbers (512 x 512 x 3 against 64 x 64 x 4, lesson 11). By "
            "the rule the cost follows the grid positions; the channels change only the first "
            "and last layers.": 48.0,
        },
        why=f"By the rule, FLOPs per call = 2 P N share with the same P and share: the ratio is "
        f"the ratio of positions, (512 / 64)^2 = {right:.0f}. This is why Stable Diffusion "
        "diffuses latents (Rombach et al. 2022, Sec. 3).",
    )
