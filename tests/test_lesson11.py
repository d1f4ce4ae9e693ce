"""Lesson 11's self-checking exercises (diffusion_edu.exercises.lesson11): the checkers pass the
solutions and the library's own functions, name each usual slip, and turn a stub, a crash or a
wrong shape into a friendly verdict. (Its pictures and widgets: tests/test_viz_latent_viz.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_edu.exercises.lesson11 import (
    check_my_decode,
    check_my_scale_factor,
    example_latents,
    solution_my_decode,
    solution_my_scale_factor,
    verify_flops_ratio_prediction,
)
from diffusion_edu.models import (
    AutoencoderConfig,
    LatentDiffusion,
    LatentDiffusionConfig,
    UNetConfig,
    latent_scale_factor,
)


@pytest.fixture(scope="module")
def small_latent_model() -> LatentDiffusion:
    """A small untrained latent model (random weights) with a scale factor far from 1."""
    torch.manual_seed(0)
    denoiser = UNetConfig(image_size=7, in_channels=4, base_channels=8, channel_mults=(1, 2),
                          num_res_blocks=1, attention=False, num_classes=10)  # fmt: skip
    config = LatentDiffusionConfig(AutoencoderConfig(), denoiser, scale_factor=0.4)
    return LatentDiffusion(config).eval()


# ============================================================================= exercise 1
def test_scale_factor_solution_is_the_librarys_and_scales_to_unit_std() -> None:
    z = example_latents()
    assert solution_my_scale_factor(z) == pytest.approx(latent_scale_factor(z), rel=1e-6)
    assert float((z * solution_my_scale_factor(z)).std()) == pytest.approx(1.0, rel=1e-6)
    assert check_my_scale_factor(solution_my_scale_factor).ok
    assert check_my_scale_factor(latent_scale_factor).ok


def test_scale_factor_checker_accepts_a_tensor_or_numpy_number() -> None:
    assert check_my_scale_factor(lambda z: 1 / z.std()).ok  # a 0-d tensor
    assert check_my_scale_factor(lambda z: np.float32(1 / z.std().item())).ok


def _per_channel_std(z: torch.Tensor) -> torch.Tensor:
    return z.transpose(0, 1).flatten(1).std(dim=1)  # (c,)


SCALE_SLIPS = [
    ("std itself", lambda z: z.std().item(), "standard deviation itself"),
    ("1 / variance", lambda z: 1 / z.var().item(), "1 / variance"),
    ("1 / RMS", lambda z: 1 / z.square().mean().sqrt().item(), "root mean square"),
    ("per channel", lambda z: 1 / _per_channel_std(z), "one factor per channel"),
    ("1 / max", lambda z: 1 / z.abs().max().item(), "largest |z|"),
    ("channel mean", lambda z: (1 / _per_channel_std(z)).mean().item(), "mean over channels"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "student", "hint"), SCALE_SLIPS, ids=[s[0] for s in SCALE_SLIPS])
def test_scale_factor_checker_names_each_slip(name: str, student, hint: str) -> None:  # noqa: ANN001
    result = check_my_scale_factor(student)
    assert not result.ok
    assert hint in result.message, result.message


def test_the_slips_give_answers_distinct_from_the_right_one() -> None:
    z = example_latents()
    right = latent_scale_factor(z)
    for _, student, _ in SCALE_SLIPS:
        got = torch.as_tensor(student(z), dtype=torch.float64)
        assert got.numel() != 1 or abs(float(got) - right) > 0.05 * right


def test_scale_factor_checker_explains_stubs_crashes_and_wrong_types() -> None:
    assert "not written yet" in check_my_scale_factor(_stub).message
    crash = check_my_scale_factor(lambda z: z.nonexistent())
    assert not crash.ok and "AttributeError" in crash.message
    assert "returned None" in check_my_scale_factor(lambda z: None).message
    text = check_my_scale_factor(lambda z: "0.5")
    assert not text.ok and "one number" in text.message
    shape = check_my_scale_factor(lambda z: 1 / z.std(dim=0))  # (4, 7, 7): no known slip
    assert not shape.ok and "tensor of shape (4, 7, 7)" in shape.message
    other = check_my_scale_factor(lambda z: 0.5)
    assert not other.ok and "scale factor is" in other.message and "std" in other.message


# ============================================================================= exercise 2
def test_decode_solution_and_library_pass(small_latent_model) -> None:  # noqa: ANN001
    assert check_my_decode(solution_my_decode, small_latent_model).ok
    assert check_my_decode(lambda m, z: m.decode_latents(z), small_latent_model).ok


def test_decode_solution_undoes_the_scaling_of_encode_images(small_latent_model) -> None:  # noqa: ANN001
    m = small_latent_model
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        z = m.encode_images(x)  # E(x) * scale_factor
        torch.testing.assert_close(z, m.autoencoder.encode(x) * 0.4)
        torch.testing.assert_close(
            solution_my_decode(m, z), m.autoencoder.decode(m.autoencoder.encode(x))
        )


DECODE_SLIPS = [
    ("not unscaled", lambda m, z: m.autoencoder.decode(z), "scaled latents as they are"),
    ("scaled twice", lambda m, z: m.autoencoder.decode(z * m.scale_factor), "multiplied by"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "student", "hint"), DECODE_SLIPS, ids=[s[0] for s in DECODE_SLIPS]
)
def test_decode_checker_names_each_slip(name: str, student, hint: str, small_latent_model) -> None:  # noqa: ANN001
    result = check_my_decode(student, small_latent_model)
    assert not result.ok
    assert hint in result.message, result.message


def test_decode_checker_explains_stubs_shapes_and_other_errors(small_latent_model) -> None:  # noqa: ANN001
    m = small_latent_model
    assert "not written yet" in check_my_decode(_stub, m).message
    assert "torch.Tensor" in check_my_decode(lambda m, z: [1, 2], m).message
    shape = check_my_decode(lambda m, z: m.decode_latents(z)[:, 0], m)
    assert not shape.ok and "shape (4, 1, 28, 28)" in shape.message
    other = check_my_decode(lambda m, z: m.decode_latents(z) * 0.5, m)
    assert not other.ok and "differ from decode_latents'" in other.message
    with pytest.raises(TypeError, match="latent model"):
        check_my_decode(solution_my_decode, torch.nn.Linear(2, 2))


# ============================================================================= prediction
def test_flops_prediction_accepts_the_count_and_names_the_known_wrong_ones() -> None:
    assert verify_flops_ratio_prediction(3.4, measured=3.42, values_ratio=4.0).ok
    assert verify_flops_ratio_prediction(3.2, measured=3.42, values_ratio=4.0).ok  # within 10%
    four = verify_flops_ratio_prediction(4.0, measured=3.42, values_ratio=4.0)
    assert not four.ok and "fewer numbers" in four.message
    sixteen = verify_flops_ratio_prediction(16, measured=3.42, values_ratio=4.0)
    assert not sixteen.ok and "square" in sixteen.message
    assert "too high" in verify_flops_ratio_prediction(48, measured=3.42, values_ratio=4.0).message
    assert "write your prediction" in verify_flops_ratio_prediction(..., 3.42, 4.0).message
    # When the count happens to equal the ratio of numbers, 4 is simply right.
    assert verify_flops_ratio_prediction(4.0, measured=4.0, values_ratio=4.0).ok


def _stub(*args: object) -> None:
    raise NotImplementedError
