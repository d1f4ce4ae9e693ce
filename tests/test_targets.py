"""Prediction targets (diffusion_edu.targets): eps, x0, v and flow, and converting between them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion_edu.forward import q_sample
from diffusion_edu.models.unet import UNet, UNetConfig
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import (
    TARGETS,
    check_target,
    noisy_sample,
    path_coefficients,
    predict_eps_from_x0,
    predict_x0_from_eps,
    prediction_of,
    regression_target,
    split_prediction,
    target_snr,
)

S = NoiseSchedule.cosine(T=200)


def example(seed: int = 0, shape: tuple[int, ...] = (6, 1, 5, 5)):  # noqa: ANN201
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 7, 50, 100, 150, 200])
    return x0, eps, t


@pytest.mark.parametrize("target", TARGETS)
def test_the_true_target_gives_back_the_exact_x0_and_eps(target) -> None:
    """split_prediction inverts regression_target: given the right answer, it recovers both."""
    x0, eps, t = example()
    x_t = noisy_sample(x0, eps, t, S, target)
    x0_hat, eps_hat = split_prediction(regression_target(x0, eps, t, S, target), x_t, t, S, target)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)


def test_v_is_salimans_and_ho_s_definition() -> None:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Progressive Distillation, Sec. 4)."""
    x0, eps, t = example(1)
    ab = S.alpha_bars[t].view(-1, 1, 1, 1)
    by_hand = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    torch.testing.assert_close(regression_target(x0, eps, t, S, "v"), by_hand)
    # and it is the rate of change of x_t along the circle (a, b) = (cos phi, sin phi)
    phi = torch.atan2((1 - ab).sqrt(), ab.sqrt())
    torch.testing.assert_close(by_hand, phi.cos() * eps - phi.sin() * x0)


def test_the_diffusion_targets_live_on_eq_4_and_flow_on_the_straight_path() -> None:
    x0, eps, t = example(2)
    for target in ("eps", "x0", "v"):
        torch.testing.assert_close(noisy_sample(x0, eps, t, S, target), q_sample(x0, t, S, eps))
    s = (t.double() / S.T).view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy_sample(x0, eps, t, S, "flow"), (1 - s) * x0 + s * eps)
    # the flow target is the path's constant velocity d x_s / ds, by finite differences
    one = torch.tensor([S.T // 2] * 6)
    step = noisy_sample(x0, eps, one + 1, S, "flow") - noisy_sample(x0, eps, one, S, "flow")
    torch.testing.assert_close(step * S.T, regression_target(x0, eps, one, S, "flow"))
    # the straight path starts at the data and ends in pure noise
    torch.testing.assert_close(
        noisy_sample(x0, eps, torch.zeros(6, dtype=torch.long), S, "flow"), x0
    )
    torch.testing.assert_close(noisy_sample(x0, eps, torch.full((6,), S.T), S, "flow"), eps)


def test_path_coefficients_and_snr() -> None:
    x0, _, t = example(3)
    a, b = path_coefficients(t, S, "v", x0)
    torch.testing.assert_close(a.square() + b.square(), torch.ones_like(a))  # variance preserving
    torch.testing.assert_close(target_snr(t, S, "eps"), S.snr[t].float())
    s = t.float() / S.T
    torch.testing.assert_close(target_snr(t, S, "flow"), ((1 - s) / s) ** 2)


def test_eps_and_x0_conversions_invert_eq_4() -> None:
    x0, eps, t = example(4)
    x_t = q_sample(x0, t, S, eps)
    torch.testing.assert_close(predict_x0_from_eps(x_t, t, eps, S), x0)
    torch.testing.assert_close(predict_eps_from_x0(x_t, t, x0, S), eps)


def test_x0_and_eps_conversions_invert_the_closed_form() -> None:
    schedule = NoiseSchedule.linear()
    x0 = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    eps = torch.randn_like(x0)
    t = torch.tensor([1, 10, 100, 500, 1000])
    x_t = q_sample(x0, t, schedule, eps)
    torch.testing.assert_close(predict_x0_from_eps(x_t, t, eps, schedule), x0)
    torch.testing.assert_close(predict_eps_from_x0(x_t, t, x0, schedule), eps)


def test_models_say_what_they_predict_and_bad_targets_are_refused() -> None:
    tiny = dict(base_channels=8, channel_mults=(1,), num_res_blocks=1, attention=False, groups=4)
    model = UNet(UNetConfig(**tiny, prediction="v"))
    assert prediction_of(model) == "v"
    assert prediction_of(torch.compile(model)) == "v"  # looked up through the wrapper
    assert prediction_of(nn.Linear(2, 2)) == "eps"  # a model that does not say: eps
    with pytest.raises(ValueError, match="'eps', 'x0', 'v', 'flow'"):
        check_target("score")
    with pytest.raises(ValueError, match="prediction target"):
        UNetConfig(**tiny, prediction="noise")
    assert not math.isnan(float(target_snr(torch.tensor([1]), S, "x0")))
