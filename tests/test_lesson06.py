"""Lesson 06's checkers (diffusion_edu.exercises.lesson06): a convolution's output size and the
2015 U-Net's. They pass the reference solutions and catch typical mistakes with the right
hint."""

from __future__ import annotations

from diffusion_edu.exercises.lesson06 import (
    check_conv_output_size,
    check_unet2015_output_size,
    solution_conv_output_size,
    solution_unet2015_output_size,
)


def _stub(*args: object) -> None:
    raise NotImplementedError


def test_conv_output_size_solution_and_hints() -> None:
    assert check_conv_output_size(solution_conv_output_size).ok
    assert solution_conv_output_size(572, 3, 0, 1) == 570
    cases = {
        "off by one": lambda n, k, p, s: (n + 2 * p - k) // s,
        "BOTH sides": lambda n, k, p, s: (n + p - k) // s + 1,
        "forgot the padding": lambda n, k, p, s: (n - k) // s + 1,
        "divide by the stride": lambda n, k, p, s: n + 2 * p - k + 1,
        "not written yet": _stub,
    }
    for hint, fn in cases.items():
        result = check_conv_output_size(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)


def test_unet2015_output_size_solution_and_hints() -> None:
    assert solution_unet2015_output_size(572) == 388  # Ronneberger et al. 2015, Fig. 1
    assert check_unet2015_output_size(solution_unet2015_output_size).ok

    def one_conv(n: int, depth: int) -> int:
        for _ in range(depth):
            n = (n - 2) // 2
        n -= 2
        for _ in range(depth):
            n = n * 2 - 2
        return n

    cases = {
        "PADDED": lambda n, d: n,
        "ONE conv": one_conv,
        "not written yet": _stub,
        "the output is 388": lambda n, d: 400,
    }
    for hint, fn in cases.items():
        result = check_unet2015_output_size(fn)
        assert not result.ok
        assert hint in result.message, (hint, result.message)


# ----------------------------------------------------------------------------- predictions
def test_bottleneck_size_is_the_traced_middle_of_the_default_unet() -> None:
    from diffusion_edu.exercises.lesson06 import bottleneck_size
    from diffusion_edu.models.unet import UNetConfig

    assert bottleneck_size() == (64, 7, 7)  # 32 x 2 channels, 28 halved twice
    assert bottleneck_size(UNetConfig(channel_mults=(1, 2, 2, 2))) == (64, 4, 4)


def test_prediction_checkers_pass_right_answers_and_name_slips() -> None:
    from diffusion_edu.exercises.lesson06 import (
        verify_bottleneck_prediction,
        verify_channel_doubling_prediction,
    )

    assert verify_channel_doubling_prediction(4).ok
    assert verify_bottleneck_prediction(3136).ok
    for fn, answer, hint in (
        (verify_channel_doubling_prediction, 2, "BOTH"),
        (verify_channel_doubling_prediction, 8, "not three"),
        (verify_channel_doubling_prediction, 6, "too high"),
        (verify_bottleneck_prediction, 784, "input's pixel count"),
        (verify_bottleneck_prediction, 49, "forgot the channels"),
        (verify_bottleneck_prediction, 64, "forgot the positions"),
        (verify_bottleneck_prediction, 12544, "halve the side twice"),
        (verify_bottleneck_prediction, ..., "write your prediction first"),
    ):
        result = fn(answer)
        assert not result.ok and hint in result.message, (answer, result.message)
