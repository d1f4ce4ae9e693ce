"""physics.py: random walks, the heat equation and the noising walks behind lessons 01-03.

Statistical checks use fixed seeds and say their tolerance: with N independent samples the
relative standard error of a sample variance is sqrt(2 / N).
"""

import math

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu import NoiseSchedule, q_sample, q_step
from diffusion_edu.physics import (
    concentration_variance,
    heat_equation,
    heat_kernel,
    ink_variance,
    ks_distance_to_normal,
    markov_coefficients,
    noise_walk,
    noise_walk_moments,
    random_walk,
    random_walk_variance,
)


def test_random_walk_variance_grows_as_2_D_t():
    # 20,000 particles x 2 coordinates: relative std error of the variance ~ sqrt(2/40000) = 0.7%;
    # 4% is more than 5 standard errors.
    g = torch.Generator().manual_seed(0)
    walk = random_walk(20_000, 100, D=0.7, dt=0.5, dim=2, generator=g)
    measured = walk.variance()[1:].double()
    expected = ink_variance(walk.times[1:], 0.7)
    assert_close(measured, expected, rtol=0.04, atol=0.0)


def test_random_walk_variance_is_linear_in_time_slope_2D():
    g = torch.Generator().manual_seed(1)
    walk = random_walk(20_000, 200, D=1.5, dim=1, generator=g)
    t, v = walk.times, walk.variance().double()
    slope = ((t - t.mean()) * (v - v.mean())).sum() / ((t - t.mean()) ** 2).sum()
    assert_close(slope.item(), 2 * 1.5, rtol=0.03, atol=0.0)


def test_random_walk_drop_starts_inside_its_radius():
    walk = random_walk(500, 3, drop_radius=2.0, generator=torch.Generator().manual_seed(2))
    assert walk.positions.shape == (4, 500, 2)
    assert walk.positions[0].norm(dim=1).max() <= 2.0 + 1e-6
    assert walk.positions[0].norm(dim=1).max() > 1.5  # it is a disc, not a point


def test_with_D_rescales_displacements_by_sqrt_of_ratio():
    walk = random_walk(50, 10, D=1.0, drop_radius=1.0, generator=torch.Generator().manual_seed(3))
    faster = walk.with_D(4.0)
    assert_close(faster.positions[0], walk.positions[0])
    assert_close(
        faster.positions - faster.positions[:1], 2.0 * (walk.positions - walk.positions[:1])
    )


def test_random_walk_variance_closed_form():
    assert random_walk_variance(10, 0.5) == pytest.approx(2.5)
    assert random_walk_variance(1, 3.0) == pytest.approx(9.0)


def test_random_walk_variance_matches_simulation_of_sums():
    g = torch.Generator().manual_seed(4)
    steps = torch.randn(50_000, 30, generator=g) * 0.3
    measured = steps.sum(dim=1).var().item()
    assert measured == pytest.approx(random_walk_variance(30, 0.3), rel=0.03)  # ~4.7 std errors


@pytest.mark.parametrize("shape", [(301,), (61, 61)])
def test_heat_equation_conserves_mass_exactly(shape):
    c0 = torch.zeros(shape, dtype=torch.float64)
    c0[(slice(3, 9),) * len(shape)] = 1.0  # ink near a wall, so the wall matters
    fields = heat_equation(c0, [1.0, 10.0, 100.0], D=1.0)
    totals = fields.flatten(1).sum(dim=1)
    assert_close(totals, torch.full((3,), c0.sum().item(), dtype=torch.float64), rtol=1e-12, atol=0)
    assert fields.min() >= 0  # stable: no negative concentrations


def test_heat_equation_variance_is_2_D_t_away_from_walls():
    c0 = torch.zeros(401, dtype=torch.float64)
    c0[200] = 1.0
    times = [5.0, 20.0, 80.0]
    fields = heat_equation(c0, times, D=0.8, dx=1.0)
    measured = torch.stack([concentration_variance(f) for f in fields])
    assert_close(
        measured, torch.tensor([2 * 0.8 * t for t in times], dtype=torch.float64), rtol=1e-9, atol=0
    )


def test_heat_equation_2d_variance_per_axis():
    c0 = torch.zeros(81, 81, dtype=torch.float64)
    c0[40, 40] = 1.0
    (field,) = heat_equation(c0, [10.0], D=1.0)
    assert_close(concentration_variance(field).item(), 20.0, rtol=1e-6, atol=0)


def test_heat_equation_matches_the_gaussian_kernel():
    # From a point, the exact solution is the heat kernel; finite differences on a grid with
    # sqrt(2 D t) = 12.6 cells agree to 0.5% of the peak.
    dx = 1.0
    c0 = torch.zeros(401, dtype=torch.float64)
    c0[200] = 1.0 / dx  # unit mass
    x = (torch.arange(401, dtype=torch.float64) - 200) * dx
    (field,) = heat_equation(c0, [80.0], D=1.0, dx=dx)
    kernel = heat_kernel(x, 80.0, D=1.0)
    assert (field - kernel).abs().max() < 0.005 * kernel.max()


def test_heat_equation_rejects_unstable_courant_number():
    with pytest.raises(ValueError, match="max_courant"):
        heat_equation(torch.zeros(11, 11), [1.0], max_courant=0.3)  # 2-D limit is 0.25


def test_heat_kernel_integrates_to_mass_and_has_variance_2Dt():
    x = torch.linspace(-60, 60, 24001, dtype=torch.float64)
    dx = (x[1] - x[0]).item()
    k = heat_kernel(x, 30.0, D=0.5, mass=2.0)
    assert_close((k.sum() * dx).item(), 2.0, rtol=1e-6, atol=0)
    assert_close(((k * x**2).sum() * dx / 2.0).item(), 30.0, rtol=1e-5, atol=0)


def test_noise_walk_moments_closed_forms():
    s = NoiseSchedule.linear(T=50)
    mean, var = noise_walk_moments(s, mean0=0.0, var0=0.0, shrink=True)
    # Starting from a fixed value with variance 0, Var(x_t) = 1 - prod(1 - beta).
    by_hand = 1 - torch.cumprod(1 - s.betas, dim=0)
    assert_close(var, by_hand)
    _, var_plain = noise_walk_moments(s, var0=2.0, shrink=False)
    assert_close(var_plain, 2.0 + torch.cumsum(s.betas, dim=0))


def test_shrinking_walk_variance_converges_to_one_from_any_start():
    s = NoiseSchedule.linear()
    for var0 in (0.0, 0.25, 4.0):
        _, var = noise_walk_moments(s, var0=var0)
        assert abs(var[-1].item() - 1.0) < 1e-3 * max(1.0, var0)
    _, plain = noise_walk_moments(s, var0=0.0, shrink=False)
    assert plain[-1].item() > 10.0  # the plain walk does not settle


def test_noise_walk_simulation_matches_moments_both_kinds():
    # 30,000 copies of one pixel: std error of a variance ~ 0.8%; tolerance 4%.
    s = NoiseSchedule.linear(T=200, beta_end=0.05)
    start = torch.full((30_000, 1), 0.8)
    save = [0, 10, 50, 200]
    for shrink in (True, False):
        walk = noise_walk(
            start, s, shrink=shrink, save_at=save, generator=torch.Generator().manual_seed(5)
        )
        mean, var = noise_walk_moments(s, mean0=0.8, var0=0.0, shrink=shrink)
        assert walk.ts.tolist() == save
        measured_var = walk.states.flatten(1).var(dim=1).double()
        measured_mean = walk.states.flatten(1).mean(dim=1).double()
        assert_close(measured_var[1:], var[save][1:], rtol=0.04, atol=0.0)
        # mean: std error sqrt(var / N) <= 0.006 for var <= 1; plain var up to ~5 -> 0.013.
        assert_close(measured_mean, mean[save], rtol=0.0, atol=0.06)


def test_chain_of_q_steps_has_the_law_of_q_sample():
    # The Markov chain (t x q_step) and the closed form (q_sample) give the same distribution:
    # compare means and variances per t for one pixel started at x0 = 1, 20,000 copies.
    s = NoiseSchedule.linear()
    x0 = torch.ones(20_000, 1)
    save = [1, 100, 400, 1000]
    chain = noise_walk(x0, s, save_at=save, generator=torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(7)
    for k, t in enumerate(save):
        jump = q_sample(x0, t, s, torch.randn(x0.shape, generator=g))
        std = math.sqrt(1 - s.alpha_bars[t].item())
        assert abs(chain.states[k].mean() - jump.mean()) < 5 * std * math.sqrt(2 / 20_000)
        assert_close(chain.states[k].var(), jump.var(), rtol=0.06, atol=0.0)


def test_ks_distance_small_for_normal_large_for_uniform():
    g = torch.Generator().manual_seed(8)
    normal = torch.randn(20_000, generator=g)
    uniform = torch.rand(20_000, generator=g) * 2 - 1
    assert ks_distance_to_normal(normal) < 1.6 / math.sqrt(20_000)  # 1.63 = 99% quantile
    assert ks_distance_to_normal(uniform) > 0.1


def test_end_of_forward_chain_is_close_to_standard_normal():
    s = NoiseSchedule.linear()
    x0 = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(9)) * 2 - 1
    walk = noise_walk(x0, s, save_at=[s.T], generator=torch.Generator().manual_seed(10))
    n = walk.states.numel()
    assert ks_distance_to_normal(walk.states) < 2.0 / math.sqrt(n)


def test_markov_coefficients_forward_chain_ignores_the_older_past():
    s = NoiseSchedule.linear(T=10, beta_start=0.05, beta_end=0.2)
    x0 = torch.randn(50_000, 1, generator=torch.Generator().manual_seed(11))
    walk = noise_walk(x0, s, save_at=[4, 5, 6], generator=torch.Generator().manual_seed(12))
    a, b = markov_coefficients(walk.states[0], walk.states[1], walk.states[2])
    assert a == pytest.approx(math.sqrt(s.alphas[6].item()), abs=0.02)
    assert abs(b) < 0.02


def test_noise_walk_keeps_shape_and_matches_q_step_loop():
    # noise_walk runs the whole batch through q_step as one sample; the numbers must be those
    # of a plain loop over q_step with the same noise.
    s = NoiseSchedule.linear(T=5)
    x0 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(13))
    walk = noise_walk(x0, s, save_at=[0, 2, 5], generator=torch.Generator().manual_seed(14))
    assert walk.states.shape == (3, 3, 1, 4, 4)
    g = torch.Generator().manual_seed(14)
    x, by_hand = x0, [x0]
    for t in range(1, 6):
        x = q_step(x, t, s, torch.randn(x.shape, generator=g))
        if t in (2, 5):
            by_hand.append(x)
    assert_close(walk.states, torch.stack(by_hand))
    with pytest.raises(ValueError, match="empty"):
        noise_walk(x0, s, save_at=[])
