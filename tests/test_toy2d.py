"""Tests for diffusion_edu.toy2d: data, the tiny noise predictor, training, the score relation."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_edu import NoiseSchedule, q_sample, sample
from diffusion_edu.toy2d import (
    ToyMLPConfig,
    ToyNoisePredictor,
    ToyTrainConfig,
    eps_to_score,
    exact_score,
    make_moons,
    make_spiral,
    make_toy_data,
    nearest_data_distance,
    toy_schedule,
    train_toy,
)


def test_datasets_are_seeded_2d_and_inside_the_plotting_box() -> None:
    for make in (make_spiral, make_moons):
        a, b = make(500, seed=3), make(500, seed=3)
        torch.testing.assert_close(a, b)
        assert a.shape == (500, 2)
        assert a.abs().max() < 1.5
        assert not torch.equal(a, make(500, seed=4))
    with pytest.raises(ValueError, match="spiral"):
        make_toy_data("circles")  # type: ignore[arg-type]


def test_spiral_radius_grows_with_angle() -> None:
    # Noise-free spiral: r = theta / (4 pi), so every point satisfies that relation.
    pts = make_spiral(200, noise=0.0, seed=0)
    r = pts.norm(dim=1)
    theta = torch.atan2(pts[:, 1], pts[:, 0])
    # theta is only known modulo 2 pi: r * 4 pi must equal theta + 2 pi k for an integer k.
    k = (r * 4 * math.pi - theta) / (2 * math.pi)
    torch.testing.assert_close(k, k.round(), atol=1e-4, rtol=0)


def test_model_calling_convention_matches_the_samplers() -> None:
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=2))
    x = torch.randn(5, 2)
    assert model(x, torch.tensor([1, 2, 3, 4, 5])).shape == (5, 2)
    assert model(x, 7).shape == (5, 2)
    with pytest.raises(ValueError, match="labels=None"):
        model(x, 3, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        model(torch.randn(5, 3), 3)


def test_eps_to_score_matches_the_exact_score_of_a_point_mixture() -> None:
    # For data = finitely many points, q(x_t) is a Gaussian mixture whose log-density we can
    # differentiate with autograd. The ideal noise predictor is E[eps | x_t]
    # = (x_t - sqrt(ab) E[x0 | x_t]) / sqrt(1 - ab); eps_to_score must turn it into grad log q.
    schedule = NoiseSchedule.cosine(T=100)
    data = make_moons(50, seed=1).double()
    x_t = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in (5, 50, 95):
        ab = schedule.alpha_bars[t]
        x = x_t.clone().requires_grad_(True)
        sq = torch.cdist(x, ab.sqrt() * data).pow(2)  # (B, N)
        log_q = torch.logsumexp(-sq / (2 * (1 - ab)), dim=1).sum()
        (autograd_score,) = torch.autograd.grad(log_q, x)
        w = torch.softmax(-sq.detach() / (2 * (1 - ab)), dim=1)
        x0_mean = w @ data  # E[x0 | x_t]
        eps_ideal = (x_t - ab.sqrt() * x0_mean) / (1 - ab).sqrt()
        torch.testing.assert_close(eps_to_score(eps_ideal, t, schedule), autograd_score)
        torch.testing.assert_close(exact_score(x_t, t, data, schedule), autograd_score)


def test_eps_to_score_per_sample_timesteps() -> None:
    schedule = toy_schedule()
    eps = torch.ones(3, 2)
    t = torch.tensor([1, 50, 100])
    got = eps_to_score(eps, t, schedule)
    want = -1.0 / (1 - schedule.alpha_bars[t]).sqrt().float()
    torch.testing.assert_close(got[:, 0], want)


def test_training_is_seeded() -> None:
    data, schedule = make_moons(300, seed=0), toy_schedule()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ToyNoisePredictor(ToyMLPConfig(hidden=32, depth=2))
        runs.append(train_toy(model, data, schedule, ToyTrainConfig(steps=20), progress=False))
    assert runs[0] == runs[1]


def test_training_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    model = ToyNoisePredictor(ToyMLPConfig(hidden=8, depth=1))
    train_toy(model, make_moons(50), toy_schedule(), ToyTrainConfig(steps=2), progress=False)
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_short_training_run_puts_samples_on_the_data() -> None:
    # 400 seeded steps (~2 s on one core). Baseline: the same distance for N(0, I) samples,
    # i.e. what the sampler starts from. Measured ~0.04 vs ~0.55; we require < 0.25 x baseline.
    data, schedule = make_moons(2000, seed=0), toy_schedule()
    torch.manual_seed(0)
    model = ToyNoisePredictor()
    losses = train_toy(model, data, schedule, ToyTrainConfig(steps=400), progress=False)
    assert sum(losses[-50:]) / 50 < 0.5  # predicting eps_hat = 0 would give a loss of 1
    samples = sample(model, schedule, n=1000, shape=(2,), seed=0, clip_x0=False, progress=False)
    assert samples.shape == (1000, 2)
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    d_samples = nearest_data_distance(samples, data)
    d_noise = nearest_data_distance(noise, data)
    assert d_samples < 0.25 * d_noise, (d_samples, d_noise)
    # ... and the samples cover the data (the other half of a Chamfer distance):
    assert nearest_data_distance(data, samples) < 0.25 * nearest_data_distance(data, noise * 3)


def test_nearest_data_distance_hand_checked() -> None:
    data = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    samples = torch.tensor([[0.0, 0.5], [1.0, -2.0]])
    assert nearest_data_distance(samples, data) == pytest.approx((0.5 + 2.0) / 2)


def test_forward_noising_of_points_ends_near_standard_normal() -> None:
    schedule = toy_schedule()
    data = make_spiral(4000, seed=0)
    x_T = q_sample(data, schedule.T, schedule, torch.randn(data.shape))
    torch.testing.assert_close(x_T.mean(0), torch.zeros(2), atol=0.06, rtol=0)
    torch.testing.assert_close(x_T.std(0), torch.ones(2), atol=0.06, rtol=0)
