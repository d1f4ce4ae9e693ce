"""Tests for diffusion_edu.toy2d: data, training with the one loop, every prediction target,
the score relation, hyperparameters and data quality. (The MLP itself: test_models_toy_mlp.)"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_edu import NoiseSchedule, load_pretrained, q_sample, sample
from diffusion_edu.metrics import noise_prediction_error
from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.targets import TARGETS
from diffusion_edu.toy2d import (
    add_outliers,
    copy_fraction,
    eps_to_score,
    exact_score,
    fraction_within,
    hyperparameter_sweep,
    ideal_noise_prediction_error,
    make_moons,
    make_moons_labelled,
    make_spiral,
    make_toy_data,
    nearest_data_distance,
    sample_points,
    toy_train_config,
    train_and_sample_toy,
    train_toy,
    train_toy_steps,
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
    schedule = NoiseSchedule.cosine(T=100)
    eps = torch.ones(3, 2)
    t = torch.tensor([1, 50, 100])
    got = eps_to_score(eps, t, schedule)
    want = -1.0 / (1 - schedule.alpha_bars[t]).sqrt().float()
    torch.testing.assert_close(got[:, 0], want)


def test_training_is_seeded() -> None:
    data, schedule = make_moons(300, seed=0), NoiseSchedule.cosine(T=100)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ToyNoisePredictor(ToyMLPConfig(hidden=32, depth=2))
        runs.append(train_toy(model, data, schedule, toy_train_config(steps=20), progress=False))
    assert runs[0] == runs[1]


def test_training_leaves_the_thread_count_alone() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = ToyNoisePredictor(ToyMLPConfig(hidden=8, depth=1))
        schedule = NoiseSchedule.cosine(T=100)
        for _ in train_toy_steps(model, make_moons(50), schedule, toy_train_config(steps=3), False):
            assert torch.get_num_threads() == 2  # one thread inside a step, restored between
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_short_training_run_puts_samples_on_the_data() -> None:
    # 400 seeded steps (~2 s on one core). Baseline: the same distance for N(0, I) samples,
    # i.e. what the sampler starts from. Measured ~0.04 vs ~0.55; we require < 0.25 x baseline.
    data, schedule = make_moons(2000, seed=0), NoiseSchedule.cosine(T=100)
    torch.manual_seed(0)
    model = ToyNoisePredictor()
    losses = train_toy(model, data, schedule, toy_train_config(steps=400), progress=False)
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
    schedule = NoiseSchedule.cosine(T=100)
    data = make_spiral(4000, seed=0)
    x_T = q_sample(data, schedule.T, schedule, torch.randn(data.shape))
    torch.testing.assert_close(x_T.mean(0), torch.zeros(2), atol=0.06, rtol=0)
    torch.testing.assert_close(x_T.std(0), torch.ones(2), atol=0.06, rtol=0)


# ----------------------------------------------------------------------------- the "prompt"
def test_labelled_moons_match_the_moons_and_label_0_is_the_upper_moon() -> None:
    points, labels = make_moons_labelled(400, seed=2)
    torch.testing.assert_close(points, make_moons(400, seed=2))
    assert labels.dtype == torch.long and set(labels.tolist()) == {0, 1}
    # Noise-free: the upper moon is the unit half circle, the lower one its shifted mirror.
    clean, clean_labels = make_moons_labelled(400, noise=0.0, seed=2)
    upper = clean[clean_labels == 0] * 1.5 + torch.tensor([0.5, 0.25])
    torch.testing.assert_close(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-5, rtol=0)
    assert (upper[:, 1] >= -1e-6).all()


def test_train_toy_refuses_labels_for_an_unconditional_model() -> None:
    # (the conditional model's labels and null label: test_models_toy_mlp.py)
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="unconditional"):
        train_toy(
            ToyNoisePredictor(),
            x,
            NoiseSchedule.cosine(T=100),
            toy_train_config(steps=1),
            progress=False,
            labels=torch.zeros(4, dtype=torch.long),
        )


def test_label_dropout_hides_about_p_of_the_labels() -> None:
    seen: list[torch.Tensor] = []

    class Spy(ToyNoisePredictor):
        def forward(self, x_t, t, labels=None):  # noqa: ANN001, ANN202
            seen.append(labels.clone())
            return super().forward(x_t, t, labels)

    points, labels = make_moons_labelled(200, seed=0)
    model = Spy(ToyMLPConfig(hidden=8, depth=1, num_classes=2))
    config = toy_train_config(steps=20, batch_size=100)
    schedule = NoiseSchedule.cosine(T=100)
    train_toy(model, points, schedule, config, progress=False, labels=labels, cond_dropout=0.25)
    all_labels = torch.cat(seen)
    dropped = (all_labels == model.null_label).float().mean().item()
    assert abs(dropped - 0.25) < 0.05, dropped  # 2,000 Bernoulli(0.25) draws: sd ~0.01
    with pytest.raises(ValueError, match="cond_dropout"):
        train_toy(model, points, schedule, config, progress=False, labels=labels, cond_dropout=1.0)


def _nearest_class_fraction(samples: torch.Tensor, label: int, points, labels) -> float:  # noqa: ANN001
    nearest = torch.cdist(samples, points).argmin(dim=1)
    return (labels[nearest] == label).float().mean().item()


@pytest.mark.slow
def test_conditional_toy_follows_the_prompt_and_guidance_zero_ignores_it() -> None:
    # 500 seeded steps (~2 s). Measured: samples asked for class c are ~0.015 from class c's
    # data and ~0.36 from the other class's; >99% have a class-c nearest neighbour.
    points, labels = make_moons_labelled(2000, seed=0)
    schedule = NoiseSchedule.cosine(T=100)
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(num_classes=2))
    train_toy(model, points, schedule, toy_train_config(steps=500), progress=False, labels=labels)
    for c in (0, 1):
        s = sample_points(model, schedule, labels=[c] * 300, seed=0)
        own = nearest_data_distance(s, points[labels == c])
        other = nearest_data_distance(s, points[labels != c])
        assert own < 0.25 * other, (c, own, other)
        assert _nearest_class_fraction(s, c, points, labels) > 0.9
        # guidance w = 0 is the unconditional model: the prompt no longer matters.
        s0 = sample_points(model, schedule, labels=[c] * 300, guidance=0.0, seed=0)
        assert 0.25 < _nearest_class_fraction(s0, c, points, labels) < 0.75


# ----------------------------------------------------------------------------- hyperparameters
def test_train_and_sample_toy_is_seeded_and_supports_both_schedules() -> None:
    data = make_moons(300, seed=0)
    kwargs = dict(steps=5, n_samples=20, batch_size=8, seed=3)
    callers_random_state = torch.get_rng_state()
    a, b = train_and_sample_toy(data, **kwargs), train_and_sample_toy(data, **kwargs)
    assert torch.equal(torch.get_rng_state(), callers_random_state)  # seeded, yet left alone
    torch.testing.assert_close(a.samples, b.samples)
    assert a.losses == b.losses and len(a.losses) == 5 and a.samples.shape == (20, 2)
    lin = train_and_sample_toy(data, schedule="linear", T=25, **kwargs)
    assert lin.T == 25 and lin.schedule == "linear" and math.isfinite(lin.losses[-1])
    with pytest.raises(ValueError, match="linear"):
        train_and_sample_toy(data, schedule="sigmoid", **kwargs)  # type: ignore[arg-type]


def test_train_and_sample_toy_with_defaults_is_the_lessons_hand_written_recipe() -> None:
    """Lesson 05 reuses its main model's samples as the data-quality experiment's "clean" run;
    that is right only if the two recipes are one: same initial weights, batches and noise."""
    data = make_toy_data("spiral", n=300, seed=0)
    run = train_and_sample_toy(data, steps=15, n_samples=50, seed=0)
    torch.manual_seed(0)
    model = ToyNoisePredictor()  # lesson 05, Part 2
    losses = train_toy(model, data, NoiseSchedule.cosine(T=100), toy_train_config(steps=15, seed=0),
                       progress=False)  # fmt: skip
    assert list(run.losses) == losses
    by_hand = sample(model, NoiseSchedule.cosine(T=100), n=50, shape=(2,), seed=0, clip_x0=False,
                     progress=False)  # fmt: skip
    torch.testing.assert_close(run.samples, by_hand, rtol=0, atol=0)


@pytest.mark.slow
def test_sweep_gives_one_result_per_setting_and_a_sensible_lr_beats_a_tiny_one() -> None:
    # 4 seeded runs of 300 steps (~3 s). Measured distance to data: lr=1e-2 ~0.08; lr=1e-4 has
    # barely trained and its samples are far off (> 0.5, often flying off entirely).
    data = make_toy_data("spiral", 2000, seed=0)
    sweep = hyperparameter_sweep(data, (1e-4, 1e-2), (16, 64), steps=300, n_samples=300)
    assert len(sweep.results) == 4
    assert {(r.lr, r.batch_size) for r in sweep.results} == {
        (1e-4, 16),
        (1e-4, 64),
        (1e-2, 16),
        (1e-2, 64),
    }
    for r in sweep.results:
        assert len(r.losses) == 300 and all(math.isfinite(v) for v in r.losses)
    for bs in (16, 64):
        good, tiny = sweep.get(1e-2, bs).distance, sweep.get(1e-4, bs).distance
        assert good < 0.15 and good < 0.5 * tiny, (bs, good, tiny)
    with pytest.raises(KeyError):
        sweep.get(0.5, 16)


# ----------------------------------------------------------------------------- data quality
def test_add_outliers_and_distance_fractions() -> None:
    data = make_spiral(1000, seed=0)
    dirty = add_outliers(data, fraction=0.3, lim=1.5, seed=0)
    changed = (dirty != data).any(dim=1)
    assert changed.sum().item() == 300 and dirty.abs().max() <= 1.5
    torch.testing.assert_close(dirty, add_outliers(data, fraction=0.3, lim=1.5, seed=0))
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    samples = torch.tensor([[0.0, 0.05], [1.0, 0.5], [3.0, 3.0], [0.9, 0.0]])
    assert fraction_within(samples, points, 0.2) == 0.5  # distances 0.05, 0.5, ~3.6, 0.1
    # copy_fraction: exact copies of the training set -> 1; fresh draws -> ~percentile / 100.
    train, fresh = make_spiral(500, seed=1), make_spiral(2000, seed=2)
    assert copy_fraction(train[:100], train, fresh) == 1.0
    assert copy_fraction(make_spiral(2000, seed=3), train, fresh, percentile=5.0) < 0.1


@pytest.mark.slow
def test_tiny_data_set_is_memorised_and_clean_data_is_not() -> None:
    # Two seeded runs of 800 steps (~4 s). Measured copy fractions (share of samples closer to
    # a training point than 95% of fresh spiral points are): 8 points ~0.8, clean ~0.05.
    data, fresh = make_spiral(2000, seed=0), make_spiral(2000, seed=1)
    tiny = data[:8]
    clean = train_and_sample_toy(data, steps=800, n_samples=400, seed=0)
    small = train_and_sample_toy(tiny, steps=800, n_samples=400, seed=0)
    copies_clean = copy_fraction(clean.samples, data, fresh)
    copies_tiny = copy_fraction(small.samples, tiny, fresh)
    assert copies_tiny > 0.5 and copies_clean < 0.2, (copies_tiny, copies_clean)
    # ... and the tiny model's samples sit much closer to its training points.
    assert nearest_data_distance(small.samples, tiny) < 0.3 * nearest_data_distance(fresh, tiny)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_the_toy_trained_for_each_prediction_target_samples_onto_the_data(target) -> None:
    """eps, x0, v (DDPM sampling) and a flow velocity (Euler): the same distance measures as
    above, the same 400 steps. Measured (samples -> data / data -> samples; noise: 0.60 / 0.12):
    eps 0.038 / 0.021, x0 0.024 / 0.034, v 0.031 / 0.019, flow 0.027 / 0.020. The x0 model's
    samples sit closest to the data but cover it least, so coverage is held to 0.3 x noise."""
    data, schedule = make_moons(2000, seed=0), NoiseSchedule.cosine(T=100)
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(prediction=target))
    train_toy(model, data, schedule, toy_train_config(steps=400), progress=False)
    samples = sample_points(model, schedule, n=1000, seed=0)  # DDPM; Euler for a flow model
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    d_samples = nearest_data_distance(samples, data)
    d_noise = nearest_data_distance(noise, data)
    assert d_samples < 0.25 * d_noise, (target, d_samples, d_noise)
    assert nearest_data_distance(data, samples) < 0.3 * nearest_data_distance(data, noise * 3)


# ----------------------------------------------------------------------------- the best possible
def test_ideal_noise_error_is_large_at_small_t_and_vanishes_at_large_t() -> None:
    """The posterior-mean predictor of the spiral: near T, x_t is almost pure noise and
    eps_hat ~= x_t is nearly exact; at small t the noise hides in the data's own spread.
    Measured (cosine, T=100, n=2000): 0.76 at t=1, 0.60-0.76 up to t=20, 0.005 at t=90."""
    schedule = NoiseSchedule.cosine(T=100)
    data = make_spiral(2000, seed=0)
    curve = ideal_noise_prediction_error(data, schedule, n=1000, seed=0)
    err = dict(zip(curve.timesteps, curve.eps_mse, strict=True))
    assert curve.timesteps == (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    early = [e for t, e in err.items() if t <= 20]
    assert min(early) > 0.4 and max(early) < 1.0  # below 1: eps_hat = 0 would score 1
    assert err[90] < 0.02 and err[100] < 1e-3
    late = [err[t] for t in (30, 40, 50, 60, 70, 80, 90, 100)]
    assert all(a > b for a, b in zip(late, late[1:], strict=False))  # falls steadily after 20%


def test_ideal_noise_error_is_a_lower_bound_for_a_trained_toy() -> None:
    """The shipped spiral model, measured on the same points and noise, scores no better
    than the ideal at any t (beyond the noise of 1,000 draws)."""
    model, schedule = load_pretrained("spiral")
    data = make_spiral(2000, seed=0)
    ts = (1, 10, 30, 60, 90)
    ideal = ideal_noise_prediction_error(data, schedule, ts, n=1000, seed=3)
    x0 = data[torch.randint(0, 2000, (1000,), generator=torch.Generator().manual_seed(3))]
    trained = noise_prediction_error(model, schedule, x0, timesteps=ts, seed=1)
    for t, best, got in zip(ts, ideal.eps_mse, trained.eps_mse, strict=True):
        assert got > 0.9 * best, (t, best, got)


def test_ideal_noise_error_of_one_point_is_zero_and_eps_is_snr_times_x0() -> None:
    """One data point: the posterior knows x0 exactly, so eps is recovered exactly."""
    schedule = NoiseSchedule.linear(T=50)
    curve = ideal_noise_prediction_error(torch.tensor([[0.3, -0.2]]), schedule, n=64)
    assert max(curve.eps_mse) < 1e-20 and max(curve.x0_mse) < 1e-20
    curve = ideal_noise_prediction_error(make_moons(500), schedule, (5, 25), n=256)
    for e, s, x in zip(curve.eps_mse, curve.snr, curve.x0_mse, strict=True):
        assert math.isclose(e, s * x, rel_tol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(data=torch.zeros(10)), r"data must be points \(N, D\)"),
        (dict(timesteps=[0, 5]), r"timesteps must be whole numbers in 1\.\.T=50"),
        (dict(timesteps=[51]), r"1\.\.T=50"),
        (dict(timesteps=[2.5]), "whole numbers"),
        (dict(timesteps=[]), "whole numbers"),
        (dict(n=0), "n .* must be an integer >= 1"),
    ],
)
def test_ideal_noise_error_bad_input_gives_a_clear_error(kwargs, match) -> None:
    args = {"data": make_spiral(100), "schedule": NoiseSchedule.linear(T=50), **kwargs}
    with pytest.raises(ValueError, match=match):
        ideal_noise_prediction_error(**args)


def test_inner_turn_fraction_of_the_spiral_is_three_sevenths_and_rejects_bad_shapes() -> None:
    from diffusion_edu.toy2d import inner_turn_fraction

    spiral = make_spiral(20_000, noise=0.0, seed=1)
    assert inner_turn_fraction(spiral) == pytest.approx(3 / 7, abs=0.01)
    outer = spiral[spiral.norm(dim=1) >= 0.5]
    assert inner_turn_fraction(outer) == 0.0
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        inner_turn_fraction(torch.zeros(5, 3))
