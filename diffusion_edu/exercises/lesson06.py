"""Lesson 06 exercises: the shape arithmetic of convolutions and of the 2015 U-Net.

A k x k convolution with padding p and stride s maps a side of n pixels to
``floor((n + 2p - k) / s) + 1`` (PyTorch's ``nn.Conv2d`` documentation, "Shape"). The 2015
U-Net (Ronneberger et al.) uses unpadded 3x3 convolutions, so 572 px in gives 388 px out.

Two predict-then-check questions on the library's diffusion U-Net: how the parameter count
grows when ``base_channels`` doubles (:func:`verify_channel_doubling_prediction`), and how many
numbers its bottleneck holds (:func:`bottleneck_size`, :func:`verify_bottleneck_prediction`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    failed,
    first_matching_hint,
    passed,
)
from diffusion_edu.exercises.core import check_prediction as _check_prediction
from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import conv_output_size, unet2015_stages

__all__ = [
    "solution_conv_output_size",
    "check_conv_output_size",
    "solution_unet2015_output_size",
    "check_unet2015_output_size",
    "verify_channel_doubling_prediction",
    "bottleneck_size",
    "verify_bottleneck_prediction",
]


def solution_conv_output_size(size: int, kernel: int, padding: int, stride: int) -> int:
    """Reference solution: ``(size + 2 * padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


_CONV_MISTAKES: list[tuple[str, Callable[[int, int, int, int], int]]] = [
    (
        "off by one: remember the '+ 1' (a 3x3 kernel fits 3 times into 5 pixels, not 2).",
        lambda n, k, p, s: (n + 2 * p - k) // s,
    ),
    (
        "padding is added on BOTH sides, so it counts twice (2 * padding).",
        lambda n, k, p, s: (n + p - k) // s + 1,
    ),
    ("you forgot the padding.", lambda n, k, p, s: (n - k) // s + 1),
    (
        "divide by the stride (a stride-2 conv halves the size).",
        lambda n, k, p, s: n + 2 * p - k + 1,
    ),
]


def check_conv_output_size(student_fn: Callable[[int, int, int, int], int | None]) -> CheckResult:
    """Check ``student_fn(size, kernel, padding, stride) -> output size``.

    A hint names a mistake only if that mistake reproduces ALL of the student's answers.
    """
    exercise = "conv output size"
    cases = [
        (572, 3, 0, 1),
        (28, 3, 1, 1),
        (28, 3, 1, 2),
        (7, 3, 1, 2),
        (64, 2, 0, 2),
        (30, 5, 2, 1),
    ]
    answers = []
    for case in cases:
        answer, problem = call_student(exercise, student_fn, *case, returns="an int")
        if problem is not None:
            return problem
        answers.append(answer)
    wants = [conv_output_size(*case) for case in cases]
    if answers == wants:
        return passed(exercise, "floor((n + 2p - k) / s) + 1: that is nn.Conv2d's formula.")
    wrong = {hint: [mistake(*case) for case in cases] for hint, mistake in _CONV_MISTAKES}
    hint = first_matching_hint(answers, wrong, rtol=0.0, atol=0.0)
    if hint is not None:
        return failed(exercise, hint)
    (n, k, p, st), want, got = next(
        (c, w, a) for c, w, a in zip(cases, wants, answers, strict=True) if w != a
    )
    return failed(
        exercise,
        f"for size={n}, kernel={k}, padding={p}, stride={st} the output is {want} pixels, "
        f"you get {got}.",
    )


def solution_unet2015_output_size(input_size: int, depth: int = 4) -> int:
    """Reference solution: follow two unpadded 3x3 convs per step down and up."""
    size = input_size
    for _ in range(depth):  # down: conv, conv, 2x2 max-pool
        size = (size - 4) // 2
    size -= 4  # bottleneck: two convs
    for _ in range(depth):  # up: 2x upsample (+ 2x2 'up-conv', padded), concat, conv, conv
        size = size * 2 - 4
    return size


def check_unet2015_output_size(student_fn: Callable[[int, int], int | None]) -> CheckResult:
    """Check ``student_fn(input_size, depth) -> output size`` of the 2015 U-Net (572 -> 388)."""
    exercise = "2015 U-Net output size"
    for size, depth in ((572, 4), (572, 3), (188, 2), (140, 1)):
        got, problem = call_student(exercise, student_fn, size, depth, returns="an int")
        if problem is not None:
            return problem
        want = unet2015_stages(size, depth)[-1].out_shape[-1]
        if got == want:
            continue
        if got == size:
            return failed(
                exercise,
                f"{size} in, {size} out is what PADDED convolutions give "
                "(the diffusion U-Net). The 2015 U-Net's 3x3 convs are unpadded: "
                "each one trims 2 pixels.",
            )
        one_conv = size
        for _ in range(depth):
            one_conv = (one_conv - 2) // 2
        one_conv -= 2
        for _ in range(depth):
            one_conv = one_conv * 2 - 2
        if got == one_conv:
            return failed(
                exercise,
                f"for {size} px, depth {depth}: you get {got}, as if each step "
                "had ONE conv; each step has TWO 3x3 convs (-4 pixels).",
            )
        down_only = size
        for _ in range(depth):
            down_only = (down_only - 4) // 2
        if got in (down_only, down_only - 4):
            return failed(
                exercise,
                f"for {size} px you get {got}: that is the bottom of the U; "
                "now go back up (each step: double, then two convs).",
            )
        return failed(
            exercise, f"for {size} px and depth {depth} the output is {want} px, you get {got}."
        )
    return passed(
        exercise,
        "572 -> 388: unpadded convs eat 4 pixels per step, so the output is "
        "smaller than the input and the skips must be cropped.",
    )


# ----------------------------------------------------------------------------- predictions
DOUBLING_EXERCISE = "predict: double the channels"


def verify_channel_doubling_prediction(answer: float | None) -> CheckResult:
    """Predict-then-check: parameters of ``UNetConfig(base_channels=64)`` over the default 32.

    The right ratio is counted on the two real models (:func:`count_parameters`).
    """
    small = count_parameters(UNet(UNetConfig()))
    big = count_parameters(UNet(UNetConfig(base_channels=64)))
    right = big / small
    return _check_prediction(
        DOUBLING_EXERCISE,
        answer,
        right,
        rel=0.1,
        wrong_answers={
            "the channels double, but a 3x3 convolution has 9 x C_in x C_out weights: BOTH "
            "C_in and C_out double.": 2.0,
            "a convolution's weights grow with C_in x C_out, two factors of 2, not three.": 8.0,
        },
        why=f"{small:,} -> {big:,} parameters: almost all of them sit in convolutions with "
        "9 x C_in x C_out weights, which grow 4x; biases, norms and the time embedding's "
        "input grow less, so the ratio is a little under 4.",
    )


def bottleneck_size(config: UNetConfig | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the U-Net's bottleneck (the output of its first middle block).

    Measured with a forward hook on a real :class:`~diffusion_edu.models.unet.UNet` (default
    :class:`UNetConfig`) run on one zero image.
    """
    config = config or UNetConfig()
    model = UNet(config).eval()
    shapes: list[tuple[int, ...]] = []
    handle = model.mid1.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    x = torch.zeros(1, config.in_channels, config.image_size, config.image_size)  # (1, C, H, W)
    labels = torch.zeros(1, dtype=torch.long) if config.num_classes else None
    with torch.no_grad():
        model(x, torch.ones(1, dtype=torch.long), labels)
    handle.remove()
    _, c, h, w = shapes[0]
    return c, h, w


BOTTLENECK_EXERCISE = "predict: the bottleneck"


def verify_bottleneck_prediction(answer: float | None) -> CheckResult:
    """Predict-then-check: how many numbers (C x H x W) the default U-Net's bottleneck holds."""
    c, h, w = bottleneck_size()
    right = c * h * w
    size = UNetConfig().image_size
    return _check_prediction(
        BOTTLENECK_EXERCISE,
        answer,
        right,
        rel=0.01,
        wrong_answers={
            f"{size * size} is the input's pixel count: the bottleneck is smaller in space but "
            "has many channels.": size * size,
            f"you forgot the channels: each of the {h}x{w} positions holds {c} numbers.": h * w,
            f"you forgot the positions: {c} channels at each of {h}x{w} places.": c,
            "two stride-2 convolutions halve the side twice: 28 -> 14 -> 7.": c * (2 * h) ** 2,
        },
        why=f"The bottleneck is {c} channels x {h} x {w} = {right:,} numbers, "
        f"{right / (size * size):.0f}x the {size * size} pixels of the input: it is not too "
        "small to hold the image.",
    )
