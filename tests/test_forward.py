"""The forward process: one Markov step vs the closed form, the posterior, and bad input."""

import math

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu import NoiseSchedule, q_sample, q_step
from diffusion_edu.forward import q_posterior

SCHEDULE = NoiseSchedule.linear()


def test_one_step_from_x0_is_the_closed_form_at_t1():
    x0 = torch.randn(4, 1, 8, 8)
    noise = torch.randn_like(x0)
    assert_close(q_step(x0, 1, SCHEDULE, noise), q_sample(x0, 1, SCHEDULE, noise))


def test_two_steps_compose_exactly_into_the_closed_form():
    # x_2 = sqrt(a_2)(sqrt(a_1) x0 + sqrt(b_1) e1) + sqrt(b_2) e2 = sqrt(ab_2) x0 + sqrt(1-ab_2) e,
    # with e = (sqrt(a_2 b_1) e1 + sqrt(b_2) e2) / sqrt(1 - ab_2), a unit Gaussian (DDPM Eq. 4).
    s = NoiseSchedule.linear(T=10, beta_start=0.05, beta_end=0.3)
    x0 = torch.randn(3, 5, dtype=torch.float64)
    e1, e2 = torch.randn_like(x0), torch.randn_like(x0)
    x2 = q_step(q_step(x0, 1, s, e1), 2, s, e2)
    a2, b1, b2 = s.alphas[2], s.betas[1], s.betas[2]
    e = ((a2 * b1).sqrt() * e1 + b2.sqrt() * e2) / (1 - s.alpha_bars[2]).sqrt()
    assert_close(x2, q_sample(x0, 2, s, e))


@pytest.mark.parametrize("t", [1, 10, 100, 300])
def test_markov_chain_iterated_t_times_matches_closed_form_mean_and_variance(t):
    # Run q_step t times on many copies of one image and compare the empirical mean and
    # variance per pixel with q(x_t | x_0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I).
    gen = torch.Generator().manual_seed(t)
    n = 20_000
    x0 = torch.linspace(-1, 1, 6)  # 6 "pixels" from black to white
    x = x0.expand(n, 6).clone()
    for step in range(1, t + 1):
        x = q_step(x, step, SCHEDULE, torch.randn(x.shape, generator=gen))
    mean_expected = SCHEDULE.sqrt_alpha_bars[t].float() * x0
    var_expected = (1 - SCHEDULE.alpha_bars[t]).float().expand(6)
    # Standard error of the mean is sqrt(var / n) <= 0.0071; of the variance ~ var*sqrt(2/n).
    se_mean = (var_expected / n).sqrt()
    assert ((x.mean(0) - mean_expected).abs() < 5 * se_mean).all()
    assert_close(x.var(0), var_expected, rtol=5 * math.sqrt(2 / n), atol=0)
    # And q_sample's own samples agree with the same moments.
    direct = q_sample(x0.expand(n, 6), t, SCHEDULE, torch.randn((n, 6), generator=gen))
    assert ((direct.mean(0) - mean_expected).abs() < 5 * se_mean).all()
    assert_close(direct.var(0), var_expected, rtol=5 * math.sqrt(2 / n), atol=0)


@pytest.mark.parametrize("make", [NoiseSchedule.linear, NoiseSchedule.cosine])
def test_x_T_is_close_to_standard_normal_whatever_the_image(make):
    s = make()
    gen = torch.Generator().manual_seed(0)
    n = 50_000
    for value in (-1.0, 1.0):  # a black image and a white image end up in the same place
        x_T = q_sample(torch.full((n,), value), s.T, s, torch.randn(n, generator=gen))
        assert abs(x_T.mean().item()) < 0.02
        assert abs(x_T.std().item() - 1) < 0.02
        # Gaussian tail: ~4.55% of N(0, 1) lies beyond 2 standard deviations.
        assert abs((x_T.abs() > 2).float().mean().item() - 0.0455) < 0.005


def test_markov_chain_run_to_T_ends_at_standard_normal():
    s = NoiseSchedule.cosine(T=100)
    gen = torch.Generator().manual_seed(1)
    x = torch.ones(20_000)  # a white pixel
    for step in range(1, s.T + 1):
        x = q_step(x, step, s, torch.randn(x.shape, generator=gen))
    assert abs(x.mean().item()) < 0.03
    assert abs(x.std().item() - 1) < 0.02


def test_per_sample_t_equals_one_call_per_sample():
    x0 = torch.randn(3, 1, 4, 4)
    noise = torch.randn_like(x0)
    t = torch.tensor([1, 500, 1000])
    batched = q_sample(x0, t, SCHEDULE, noise)
    for i in range(3):
        assert_close(
            batched[i : i + 1], q_sample(x0[i : i + 1], int(t[i]), SCHEDULE, noise[i : i + 1])
        )
    stepped = q_step(x0, t, SCHEDULE, noise)
    assert_close(stepped[2:], q_step(x0[2:], 1000, SCHEDULE, noise[2:]))


def test_q_sample_at_t0_is_the_data_itself():
    x0 = torch.randn(2, 1, 4, 4)
    assert_close(q_sample(x0, 0, SCHEDULE, torch.randn_like(x0)), x0)


@pytest.mark.parametrize("t", [2, 50, 999])
def test_q_posterior_equals_the_product_of_gaussians(t):
    # Bayes: q(x_{t-1} | x_t, x0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x0). Both are
    # Gaussian in x_{t-1}, so precisions add and the mean is the precision-weighted average.
    s = SCHEDULE
    x0 = torch.tensor([[-0.8, 0.1, 0.9]], dtype=torch.float64)
    x_t = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    a_t, b_t, ab_prev = s.alphas[t], s.betas[t], s.alpha_bars[t - 1]
    # q(x_t | x_{t-1}) = N(x_t; sqrt(a_t) x_{t-1}, b_t): as a function of x_{t-1} its precision
    # is a_t / b_t and its mean x_t / sqrt(a_t).
    prec1, mu1 = a_t / b_t, x_t / a_t.sqrt()
    prec2, mu2 = 1 / (1 - ab_prev), ab_prev.sqrt() * x0
    var_bf = 1 / (prec1 + prec2)
    mean_bf = var_bf * (prec1 * mu1 + prec2 * mu2)
    mean, var = q_posterior(x0, x_t, t, s)
    assert_close(mean, mean_bf)
    assert_close(var.flatten(), var_bf.expand(1))


def test_q_posterior_matches_numerical_integration_on_a_grid():
    # Fully brute force: evaluate the unnormalised density on a fine grid and integrate.
    s, t = NoiseSchedule.linear(T=20, beta_start=0.01, beta_end=0.2), 7
    x0, x_t = 0.6, -0.4
    grid = torch.linspace(-6, 6, 200_001, dtype=torch.float64)
    a_t, b_t, ab_prev = s.alphas[t], s.betas[t], s.alpha_bars[t - 1]
    log_p = -((x_t - a_t.sqrt() * grid) ** 2) / (2 * b_t) - (grid - ab_prev.sqrt() * x0) ** 2 / (
        2 * (1 - ab_prev)
    )
    w = (log_p - log_p.max()).exp()
    w = w / w.sum()
    mean_num = (w * grid).sum()
    var_num = (w * (grid - mean_num) ** 2).sum()
    mean, var = q_posterior(
        torch.tensor([x0], dtype=torch.float64), torch.tensor([x_t], dtype=torch.float64), t, s
    )
    assert_close(mean[0], mean_num, rtol=1e-6, atol=1e-8)
    assert_close(var[0], var_num, rtol=1e-4, atol=1e-10)


def test_schedule_is_cast_to_the_data_dtype():
    x0 = torch.randn(2, 3, dtype=torch.float32)
    assert q_sample(x0, 5, SCHEDULE, torch.randn_like(x0)).dtype == torch.float32
    x0 = x0.double()
    assert q_sample(x0, 5, SCHEDULE, torch.randn_like(x0)).dtype == torch.float64


# --------------------------------------------------------------------------- bad input
X = torch.zeros(2, 1, 4, 4)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: q_step(X, 0, SCHEDULE, X), ValueError, r"t must lie in 1\.\.1000 .* got 0"),
        (lambda: q_step(X, 1001, SCHEDULE, X), ValueError, r"got 1001"),
        (lambda: q_sample(X, -1, SCHEDULE, X), ValueError, r"t must lie in 0\.\.1000"),
        (lambda: q_sample(X, torch.tensor([1, 2000]), SCHEDULE, X), ValueError, "got 2000"),
        (lambda: q_sample(X, torch.tensor([1, 2, 3]), SCHEDULE, X), ValueError, r"shape \(2,\)"),
        (lambda: q_sample(X, torch.tensor([1.0, 2.0]), SCHEDULE, X), TypeError, "integer"),
        (lambda: q_sample(X, 1.5, SCHEDULE, X), TypeError, "int or a LongTensor"),
        (lambda: q_sample(X, 5, SCHEDULE, torch.zeros(2, 1, 4, 5)), ValueError, "noise must have"),
        (lambda: q_step(X, 5, SCHEDULE, torch.zeros(3, 1, 4, 4)), ValueError, r"\(2, 1, 4, 4\)"),
        (lambda: q_posterior(X, torch.zeros(2, 4), 5, SCHEDULE), ValueError, "x_t must have"),
        (lambda: q_posterior(X, X, 0, SCHEDULE), ValueError, r"1\.\.1000"),
        (lambda: q_sample([1.0, 2.0], 5, SCHEDULE, X), TypeError, "x0 must be a torch.Tensor"),
    ],
)
def test_bad_input_gives_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
