"""Lesson 02 (noise and data): self-checking exercises.

* :func:`check_normalize`: map uint8 pixels 0..255 to floats in [-1, 1].
* :func:`check_snr`: the signal-to-noise ratio of x_t from alpha_bar_t.
* :func:`verify_digits_variance_prediction`: predict-then-check: the pixel variance of the
  bundled digits in [-1, 1] (:func:`digits_variance`), which is not 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    close,
    failed,
    first_matching_hint,
    passed,
)
from diffusion_edu.exercises.core import check_prediction as _check_prediction
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "check_normalize",
    "solution_normalize",
    "check_snr",
    "solution_snr",
    "digits_variance",
    "verify_digits_variance_prediction",
]


# ----------------------------------------------------------------------------- exercise 1
def solution_normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 in [-1, 1]: ``x / 127.5 - 1`` (0 -> -1, 255 -> 1).

    Cast to float FIRST: arithmetic on uint8 tensors wraps around at 256.
    """
    return images.to(torch.float32) / 127.5 - 1.0


def check_normalize(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``fn(images_uint8) -> images in [-1, 1]`` (float, same shape, 0 -> -1, 255 -> 1)."""
    name = "normalize to [-1, 1]"
    every_value = torch.arange(256, dtype=torch.uint8).reshape(4, 1, 8, 8)  # all of 0..255
    result, problem = call_student(name, fn, every_value.clone())
    if problem is not None:
        return problem
    if not isinstance(result, torch.Tensor):
        return failed(name, f"return a torch.Tensor, got {type(result).__name__}.")
    if result.shape != every_value.shape:
        return failed(
            name,
            f"keep the shape: got {tuple(result.shape)} for input {tuple(every_value.shape)}.",
        )
    if not result.is_floating_point():
        return failed(
            name,
            f"your result has dtype {result.dtype}: integers cannot hold -0.5 or 0.2. "
            "Cast to float first, e.g. images.float().",
        )
    expected = solution_normalize(every_value)
    if close(result, expected):
        return passed(name, "yes: 0 -> -1, 255 -> +1, centred on 0 like the noise N(0, I).")
    x = every_value.to(torch.float64)
    hint = first_matching_hint(
        result,
        {
            "that is [0, 1] (x / 255); stretch it to [-1, 1]: multiply by 2, then subtract 1.": (
                x / 255
            ),
            "uint8 arithmetic wrapped around (x * 2 overflows past 255 and starts again at 0): "
            "cast to float BEFORE multiplying, e.g. images.float() * 2 / 255 - 1.": (
                ((x * 2) % 256) / 255 - 1
            ),
            "uint8 arithmetic wrapped around (x - 128 underflows below 0 and wraps to 255): "
            "cast to float BEFORE subtracting.": ((x - 128) % 256) / 128,
            "off by a little: dividing by 128 maps 255 to 0.992, not 1. "
            "Divide by 127.5 (= 255 / 2).": x / 128 - 1,
            "off by a little: dividing by 127 maps 255 to 1.008, not 1. "
            "Divide by 127.5 (= 255 / 2).": x / 127 - 1,
            "that is [-0.5, 0.5]: scale by 2 as well, (x / 255 - 0.5) * 2.": x / 255 - 0.5,
            "that is [0, 2]: subtract 1 after scaling.": x / 127.5,
            "the sign is flipped: 0 should map to -1 and 255 to +1.": 1 - x / 127.5,
        },
    )
    if hint is None:
        lo, hi = float(result.min()), float(result.max())
        hint = (
            f"your output spans [{lo:.3g}, {hi:.3g}]; it should be exactly [-1, 1], with "
            "0 -> -1, 127.5 -> 0 and 255 -> +1, in a straight line."
        )
    return failed(name, hint)


# ----------------------------------------------------------------------------- exercise 2
def solution_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """SNR(t) = alpha_bar_t / (1 - alpha_bar_t): signal variance over noise variance.

    In ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` the signal part has variance
    ``alpha_bar * Var(x0)`` and the noise part ``1 - alpha_bar``; with Var(x0) taken as 1 the
    ratio is the SNR of Kingma et al. 2021 (Variational Diffusion Models, Eq. 1-2).
    """
    return alpha_bar / (1.0 - alpha_bar)


def check_snr(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``fn(alpha_bar) -> SNR`` on the linear schedule's alpha_bar_1..alpha_bar_T."""
    name = "signal-to-noise ratio"
    alpha_bar = NoiseSchedule.linear().alpha_bars[1:].clone()  # t = 1..T; SNR(0) is infinite
    result, problem = call_student(name, fn, alpha_bar.clone())
    if problem is not None:
        return problem
    expected = solution_snr(alpha_bar)
    if close(result, expected):
        return passed(name, "yes: SNR = alpha_bar / (1 - alpha_bar), huge at t=1, tiny at t=T.")
    hint = first_matching_hint(
        result,
        {
            "that is upside down: noise over signal. SNR puts the signal on top.": (
                (1 - alpha_bar) / alpha_bar
            ),
            "that is the ratio of standard deviations sqrt(alpha_bar / (1 - alpha_bar)); "
            "the SNR compares variances, so drop the square root.": (
                (alpha_bar / (1 - alpha_bar)).sqrt()
            ),
            "you divided sqrt(alpha_bar), a standard deviation, by 1 - alpha_bar, a variance: "
            "put the variance alpha_bar on top.": alpha_bar.sqrt() / (1 - alpha_bar),
            "that is alpha_bar alone, the signal's variance; divide by the noise's variance "
            "(1 - alpha_bar).": alpha_bar,
        },
    )
    return failed(
        name,
        hint or "not quite: the signal's variance is alpha_bar, the noise's is 1 - alpha_bar.",
    )


# ----------------------------------------------------------------------------- prediction
VARIANCE_EXERCISE = "predict: the digits' variance"


def digits_variance() -> float:
    """Variance of all pixels of the bundled training digits, scaled to [-1, 1]."""
    return float(load_mnist("train", verbose=False).images.double().var())


def verify_digits_variance_prediction(answer: float | None) -> CheckResult:
    """Predict-then-check: the variance of the bundled digits' pixels in [-1, 1].

    The right value is measured (:func:`digits_variance`); the hints name the usual slips: the
    noise's variance 1 (the convention the SNR formula assumes), the standard deviation, a
    uniform spread over [-1, 1], and the variance of [0, 1] pixels.
    """
    right = digits_variance()
    images = load_mnist("train", verbose=False).images
    background = float((images == -1.0).double().mean())  # pixels that were 0 on disk
    return _check_prediction(
        VARIANCE_EXERCISE,
        answer,
        right,
        rel=0.1,
        wrong_answers={
            "1 is the noise's variance, and the convention the SNR formula takes for the data. "
            "Scaling to [-1, 1] fixes the range, not the variance (it is not standardisation).": (
                1.0
            ),
            "that is about the standard deviation; the variance is its square.": right**0.5,
            "1/3 is the variance of values spread evenly over [-1, 1]. MNIST pixels are not: "
            "most are background at -1, a few are ink near +1.": 1.0 / 3.0,
            "that is the variance of the same pixels in [0, 1]; stretching them to [-1, 1] "
            "doubles every distance, so the variance grows 4x.": right / 4.0,
        },
        why=f"The digits' pixel variance is {right:.2f}: {background:.0%} of the pixels are "
        "background, exactly -1, so the spread is well below the noise's 1. "
        "SNR(t) = alpha_bar_t / (1 - alpha_bar_t) takes the data's variance as 1 by "
        "convention; for these digits the "
        f"ratio of signal variance to noise variance is {right:.2f} x SNR(t).",
    )
