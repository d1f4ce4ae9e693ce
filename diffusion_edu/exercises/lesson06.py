"""Lesson 06 exercises: the shape arithmetic of convolutions and of the 2015 U-Net.

A k x k convolution with padding p and stride s maps a side of n pixels to
``floor((n + 2p - k) / s) + 1`` (PyTorch's ``nn.Conv2d`` documentation, "Shape"). The 2015
U-Net (Ronneberger et al.) uses unpadded 3x3 convolutions, so 572 px in gives 388 px out.
"""

from __future__ import annotations

from collections.abc import Callable

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    failed,
    first_matching_hint,
    passed,
)
from diffusion_edu.models.unet2015 import conv_output_size, unet2015_stages

__all__ = [
    "solution_conv_output_size",
    "check_conv_output_size",
    "solution_unet2015_output_size",
    "check_unet2015_output_size",
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
