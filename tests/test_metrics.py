"""Tests for diffusion_edu.metrics: agreement, Frechet, memorisation, stray pixels, the report.
(The classifier and its weights file: test_classifier.py.)

Reference points, not hard-coded results: the Frechet maths is checked against closed
forms and an independent eigenvalue computation; the data checks compare real held-out
digits, noise, blank images and copies of training digits against the real-vs-real floor
measured in the same run. Everything is seeded and runs on the CPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from diffusion_edu import NoiseSchedule, load_pretrained, sample
from diffusion_edu.data import augment
from diffusion_edu.metrics import (
    QualityReport,
    SamplingCost,
    SamplingCostSweep,
    balanced_labels,
    class_agreement,
    evaluate_samples,
    frechet_distance,
    frechet_distance_from_statistics,
    frechet_floor,
    frechet_floor_draws,
    frechet_floor_subsets,
    gaussian_statistics,
    load_sampling_cost,
    measure_sampling_cost,
    memorisation_report,
    noise_error_timesteps,
    noise_prediction_error,
    reference_digits,
    stray_pixels,
)
from diffusion_edu.training import min_snr_weight


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, torch.Tensor]:
    return reference_digits("test")


@pytest.fixture(scope="module")
def train() -> tuple[torch.Tensor, torch.Tensor]:
    return reference_digits("train")


@pytest.fixture(scope="module")
def floor() -> float:
    """FD(500 real training digits, 500 held-out digits), the reference for a 500-image set."""
    return frechet_floor(500, seed=0)


def _random_spd(dim: int, generator: torch.Generator) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(dim, dtype=torch.float64)


# ----------------------------------------------------------------------------- Frechet maths


def test_frechet_matches_closed_form_for_diagonal_covariances() -> None:
    # For diagonal covariances (S_a S_b)^{1/2} = diag(sqrt(a_i b_i)), so
    # d^2 = ||mu_a - mu_b||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    mu_a = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    mu_b = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    a = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    b = torch.tensor([4.0, 1.0, 9.0], dtype=torch.float64)
    expected = (1.0 + 0.0 + 4.0) + (1.0 + 1.0 + 0.0)  # = 7
    got = frechet_distance_from_statistics(mu_a, torch.diag(a), mu_b, torch.diag(b))
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    )


def test_frechet_matches_eigenvalues_of_the_product_for_non_commuting_covariances() -> None:
    # Independent route: Tr (S_a S_b)^{1/2} = sum sqrt(eigenvalues of S_a S_b), which are
    # real and positive though S_a S_b is not symmetric (torch.linalg.eigvals, general).
    generator = torch.Generator().manual_seed(3)
    dim = 6
    sigma_a, sigma_b = _random_spd(dim, generator), _random_spd(dim, generator)
    mu_a = torch.randn(dim, generator=generator, dtype=torch.float64)
    mu_b = torch.randn(dim, generator=generator, dtype=torch.float64)
    assert not torch.allclose(sigma_a @ sigma_b, sigma_b @ sigma_a)  # a real test
    trace_sqrt = torch.linalg.eigvals(sigma_a @ sigma_b).real.sqrt().sum()
    expected = (mu_a - mu_b).pow(2).sum() + sigma_a.trace() + sigma_b.trace() - 2 * trace_sqrt
    got = frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected)


def test_frechet_of_a_gaussian_with_itself_is_zero_even_when_singular() -> None:
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(10, 32, generator=generator)  # 10 points in 32-D: rank 9
    mu, sigma = gaussian_statistics(features)
    assert frechet_distance_from_statistics(mu, sigma, mu, sigma) < 1e-8


def test_gaussian_statistics_match_torch_cov() -> None:
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(5))
    mu, sigma = gaussian_statistics(features)
    torch.testing.assert_close(mu, features.double().mean(0))
    torch.testing.assert_close(sigma, torch.cov(features.double().T))


# ----------------------------------------------------------------------------- on digits


def test_frechet_of_a_set_with_itself_is_zero_and_symmetric(heldout, train) -> None:
    a, b = heldout[0], train[0][:500]
    assert frechet_distance(a, a) < 1e-6
    forward, backward = frechet_distance(a, b), frechet_distance(b, a)
    torch.testing.assert_close(torch.tensor(forward), torch.tensor(backward), rtol=1e-6, atol=0)


def test_real_digits_score_high_agreement_and_near_the_floor(heldout, train, floor) -> None:
    images, labels = heldout
    assert floor > 0
    assert class_agreement(images, labels) >= 0.97
    # Real training digits the floor did not draw (another seed) and slightly shifted /
    # rotated held-out digits both look real: within 2x the real-vs-real floor.
    other = train[0][torch.randperm(4500, generator=torch.Generator().manual_seed(99))[:500]]
    assert frechet_distance(other, images) < 2 * floor
    moved = augment(images, torch.Generator().manual_seed(0), max_shift=1, max_rotation_deg=5)
    assert class_agreement(moved, labels) >= 0.95
    assert frechet_distance(moved, images) < 2 * floor


def test_noise_and_blank_images_score_far_above_the_floor(heldout, floor) -> None:
    images, _ = heldout
    labels = torch.arange(500) % 10  # balanced requests, as in a class-conditional run
    noise = torch.randn(500, 1, 28, 28, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    blank = torch.full((500, 1, 28, 28), -1.0)
    for fake in (noise, blank):
        assert frechet_distance(fake, images) > 10 * floor
        assert class_agreement(fake, labels) < 0.3  # about chance (0.1), far from 0.97


def test_frechet_catches_missing_variety_that_agreement_misses(heldout, train, floor) -> None:
    # 50 copies of each class's mean digit: every one is read as the right digit, but the
    # set has no variety, so its features' covariance is far from the real one.
    train_images, train_labels = train
    means = torch.stack([train_images[train_labels == c].mean(0) for c in range(10)])
    prototypes = means.repeat_interleave(50, dim=0)  # (500, 1, 28, 28)
    labels = torch.arange(10).repeat_interleave(50)
    assert class_agreement(prototypes, labels) >= 0.97
    assert frechet_distance(prototypes, heldout[0]) > 5 * floor


def test_floor_shrinks_with_more_samples() -> None:
    # FD between finite samples is biased upward by roughly O(D / n): more digits, lower floor.
    assert frechet_floor(2000, seed=0) < frechet_floor(200, seed=0)


def test_floor_subsets_are_class_balanced_like_the_samples(train) -> None:
    """n a multiple of 10: each real subset holds n / 10 of every digit, as the course's
    samples (balanced_labels) and the held-out set (50 per digit) do."""
    labels = train[1]
    subsets = frechet_floor_subsets(labels, 500, repeats=10, seed=0)
    assert len(subsets) == 10
    for subset in subsets:
        assert subset.shape == (500,) and subset.unique().numel() == 500  # no repeats
        assert torch.equal(torch.bincount(labels[subset], minlength=10), torch.full((10,), 50))
    assert not torch.equal(subsets[0].sort().values, subsets[1].sort().values)  # fresh draws
    again = frechet_floor_subsets(labels, 500, repeats=10, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(subsets, again, strict=True))  # seeded
    for subset in frechet_floor_subsets(labels, 200, repeats=3, seed=1):
        assert torch.equal(torch.bincount(labels[subset], minlength=10), torch.full((10,), 20))


def test_floor_subsets_fall_back_to_random_draws_when_balance_is_impossible(train) -> None:
    labels = train[1]
    odd = frechet_floor_subsets(labels, 205, repeats=2, seed=0)  # not a multiple of 10
    assert all(s.shape == (205,) and s.unique().numel() == 205 for s in odd)
    assert torch.bincount(labels[odd[0]], minlength=10).tolist() != [20] * 10
    few = torch.tensor([0, 0, 0] + [1] * 10)  # 8 = 2 x 4, but class 0 has only 3 members
    subset = frechet_floor_subsets(few, 8, repeats=1, seed=0)[0]
    assert subset.shape == (8,) and subset.unique().numel() == 8


@pytest.mark.parametrize("n", [1, 4501, 2.5, True])
def test_floor_subsets_bad_size_is_a_clear_error(train, n) -> None:
    with pytest.raises(ValueError, match=r"n must be a whole number in 2\.\.4500"):
        frechet_floor_subsets(train[1], n)


def test_the_floor_is_measured_on_the_balanced_subsets(heldout, train) -> None:
    draws = frechet_floor_draws(500, repeats=3, seed=5)
    subsets = frechet_floor_subsets(train[1], 500, repeats=3, seed=5)
    for draw, subset in zip(draws, subsets, strict=True):
        assert draw == pytest.approx(frechet_distance(train[0][subset], heldout[0]), rel=1e-6)


# ----------------------------------------------------------------------------- memorisation


def test_copies_of_training_digits_are_flagged_and_held_out_digits_are_not(heldout, train):
    train_images = train[0]
    reference, fresh = heldout[0][::2], heldout[0][1::2]  # 250 each, 25 per class
    copies = train_images[::18][:250]  # 250 training digits, all classes
    report = memorisation_report(copies, train_images, reference)
    assert report.memorised
    assert report.fraction_below > 0.9 and report.near_duplicate_fraction > 0.9
    assert report.sample_distances.max() < 1e-3  # 0 up to float64 cancellation in cdist
    torch.testing.assert_close(report.nearest_train_index, torch.arange(0, 4500, 18)[:250])

    real = memorisation_report(fresh, train_images, reference)
    assert not real.memorised, real.summary
    assert real.fraction_below < 0.15  # about 5% by construction of the threshold
    assert real.near_duplicate_fraction == 0.0


def test_noisy_copies_of_training_digits_are_still_flagged(heldout, train) -> None:
    generator = torch.Generator().manual_seed(2)
    copies = train[0][:300] + 0.1 * torch.randn(300, 1, 28, 28, generator=generator)
    report = memorisation_report(copies, train[0], heldout[0])
    assert report.memorised and report.near_duplicate_fraction > 0.9


# ----------------------------------------------------------------------------- the report


def test_evaluate_samples_prints_a_table_of_all_three(heldout, capsys) -> None:
    images, labels = heldout
    report = evaluate_samples(images[1::2], labels[1::2])
    assert isinstance(report, QualityReport)
    assert report.class_agreement >= 0.97
    assert report.frechet_floor > 0 and report.frechet_distance < 2 * report.frechet_floor
    assert not report.memorisation.memorised
    printed = capsys.readouterr().out
    assert "floor" in printed and "class agreement" in printed and "memorisation" in printed


def test_small_sample_report_says_its_frechet_numbers_are_noise(train, capsys) -> None:
    """Lesson 07's quick mode scores 100 samples: a ratio below 1 there must not read as
    better-than-real digits. Here 100 REAL digits (10 of each, as a class-balanced run of
    samples has; a draw other than the floor's) stand in for the samples."""
    images, labels = train
    pick = frechet_floor_subsets(labels, 100, repeats=1, seed=5)[0]
    report = evaluate_samples(images[pick], labels[pick])
    draws = frechet_floor_draws(100)
    assert report.frechet_floor == pytest.approx(sum(draws) / len(draws))  # the floor: their mean
    low, high = report.frechet_floor_range
    assert (low, high) == (min(draws), max(draws)) and low < report.frechet_floor < high
    assert report.frechet_ratio < 1  # real digits, yet "better than the floor": noise
    note = " ".join(report.sampling_noise_note().split())
    assert "with only 100 samples" in note and f"score {low:.2f} to {high:.2f}" in note
    assert (
        f"like this {report.frechet_ratio:.1f}x, is noise" in note and "500 samples or more" in note
    )
    assert note.split()[-1] in " ".join(capsys.readouterr().out.split())  # printed with the table


def test_report_of_enough_samples_has_no_noise_note_and_large_ratios_are_qualified(heldout) -> None:
    images, _ = heldout
    memo = memorisation_report(images[:20], images[20:], images)
    common = dict(class_agreement=None, classifier_accuracy=0.98, memorisation=memo)
    many = QualityReport(500, frechet_distance=0.7, frechet_floor=0.45,
                         frechet_floor_range=(0.3, 0.6), **common)  # fmt: skip
    assert many.sampling_noise_note() is None and "Sampling noise" not in many.table()
    few = QualityReport(200, frechet_distance=1.0, frechet_floor=0.8,
                        frechet_floor_range=(0.5, 1.5), **common)  # fmt: skip
    note = " ".join(few.sampling_noise_note().split())
    assert "a ratio up to about 1.9x may be noise alone" in note and "is noise (" not in note


def test_bad_inputs_are_refused_or_warned_about(heldout) -> None:
    images, labels = heldout
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        class_agreement(images[:, 0], labels)
    with pytest.raises(ValueError, match="labels"):
        class_agreement(images, labels[:10])
    with pytest.warns(UserWarning, match=r"\[0, 1\]"):
        class_agreement((images + 1) / 2, labels)


def test_stray_pixels_count_lone_dots_and_real_digits_have_almost_none(heldout) -> None:
    images, _ = heldout
    real = stray_pixels(images)
    assert real.shape == (images.shape[0],) and real.mean() < 0.5
    speckled = images[:20].clone()
    background = (speckled[:, 0] < -0.99).nonzero()  # (K, 3): image, row, column
    planted = torch.zeros(20)
    for i in range(20):  # 3 lone dots per image, far from each other and from the digit
        spots = background[background[:, 0] == i]
        chosen = 0
        for _, r, c in spots.tolist():
            patch = speckled[i, 0, max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3]
            if chosen < 3 and bool((patch < -0.99).all()):
                speckled[i, 0, r, c] = 1.0
                chosen += 1
        planted[i] = chosen
    torch.testing.assert_close(stray_pixels(speckled) - stray_pixels(images[:20]), planted)
    # A black image sprinkled with noise (what an under-trained sampler leaves behind):
    # ~10% of pixels lit, nearly all of them alone.
    sprinkled = (
        -1 + 0.3 * torch.randn(50, 1, 28, 28, generator=torch.Generator().manual_seed(0)).abs()
    )
    assert stray_pixels(sprinkled).mean() > 30
    all_lit = torch.full((5, 1, 28, 28), -0.4)  # every pixel just above the threshold
    assert stray_pixels(all_lit).sum() == 0  # many lit pixels, none alone


# ----------------------------------------------------------------------------- noise vs t


@pytest.fixture(scope="module")
def shipped() -> tuple[torch.nn.Module, NoiseSchedule]:
    return load_pretrained("mnist")


def test_shipped_model_finds_noise_hardest_at_small_t_and_easiest_near_T(shipped, heldout):
    """Measured on all 500 held-out digits: 0.86 at t=1, 0.43 at t=10, 0.096 at t=100,
    0.031 at t=500, 0.0006 at t=T. Here 100 digits, the same shape."""
    model, schedule = shipped
    images, labels = heldout
    ts = (1, 10, 100, 500, 1000)
    curve = noise_prediction_error(model, schedule, images[::5], labels[::5], ts, seed=0)
    assert curve.timesteps == ts and curve.n == 100
    assert all(a > b for a, b in zip(curve.eps_mse, curve.eps_mse[1:], strict=False))  # falls
    assert 0.6 < curve.eps_mse[0] < 1.0 and curve.eps_mse[-1] < 0.01
    # the identity behind Min-SNR: eps loss = SNR * x0 loss, for any model
    for e, s, x in zip(curve.eps_mse, curve.snr, curve.x0_mse, strict=True):
        assert e == pytest.approx(s * x, rel=1e-4)


def test_noise_error_of_an_oracle_is_zero_and_of_a_zero_predictor_is_one():
    schedule = NoiseSchedule.linear(T=100)
    x0 = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    point = x0[:1]

    def oracle(x_t, t, cond=None):  # knows x0 = the one image
        ab = schedule.alpha_bars[t].to(x_t).view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * point) / (1 - ab).sqrt()

    curve = noise_prediction_error(oracle, schedule, point.expand(16, -1, -1, -1), repeats=2)
    assert max(curve.eps_mse) < 1e-6 and curve.repeats == 2  # float32 rounding / sqrt(1 - ab)
    zero = noise_prediction_error(lambda x, t, c=None: torch.zeros_like(x), schedule, x0,
                                  repeats=4)  # fmt: skip
    assert zero.eps_mse == pytest.approx([1.0] * len(zero.timesteps), abs=0.15)
    # Min-SNR: min(SNR, gamma) * x0 error = eps error * the training loss's Min-SNR weight
    capped = zero.min_snr_loss(gamma=5.0)
    weights = min_snr_weight(torch.tensor(zero.snr, dtype=torch.float64), 5.0, "eps").tolist()
    for c, e, w in zip(capped, zero.eps_mse, weights, strict=True):
        assert c == pytest.approx(e * w, rel=1e-5)


def test_noise_error_timesteps_default_is_dense_at_small_t():
    assert noise_error_timesteps(1000) == [
        1, 2, 5, 10, 20, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000,
    ]  # fmt: skip
    assert noise_error_timesteps(10) == list(range(1, 11))
    assert noise_error_timesteps(100, [50, 3, 3]) == [3, 50]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x0=torch.zeros(3)), r"x0 must be a tensor \(N, \.\.\.\)"),
        (dict(timesteps=[0]), r"timesteps must be whole numbers in 1\.\.T=100"),
        (dict(timesteps=[101]), r"1\.\.T=100"),
        (dict(timesteps=[]), "whole numbers"),
        (dict(repeats=0), "repeats must be a whole number >= 1"),
        (dict(batch_size=0), "batch_size must be"),
        (dict(labels=torch.zeros(3, dtype=torch.long)), r"labels must have shape \(4,\)"),
    ],
)
def test_noise_error_bad_input_gives_a_clear_error(kwargs, match):
    args = {"x0": torch.zeros(4, 1, 2, 2), **kwargs}
    with pytest.raises(ValueError, match=match):
        noise_prediction_error(lambda x, t, c=None: x, NoiseSchedule.linear(T=100), **args)
    with pytest.raises(ValueError, match="gamma must be a positive number"):
        noise_prediction_error(
            lambda x, t, c=None: x, NoiseSchedule.linear(T=100), torch.zeros(2, 1, 2, 2)
        ).min_snr_loss(0.0)


# ----------------------------------------------------------------------------- cost of sampling


def test_measure_sampling_cost_scores_a_tiny_model_and_counts_model_calls(tiny_unet, one_thread):
    model = tiny_unet(seed=0).eval()
    schedule = NoiseSchedule.cosine(T=20)
    cost = measure_sampling_cost(model, schedule, "dpm-solver++", 4, n=20, guidance=2.0)
    assert (cost.sampler, cost.steps, cost.n, cost.guidance, cost.eta) == (
        "dpm-solver++", 4, 20, 2.0, 0.0,
    )  # fmt: skip
    assert cost.model_calls == 8 and cost.seconds_per_image > 0
    assert 0.0 <= cost.class_agreement <= 1.0
    assert cost.frechet_distance > cost.frechet_floor  # an untrained model is no real digit
    # The numbers are the evaluation of exactly these samples:
    images = sample(model, schedule, labels=balanced_labels(20), sampler="dpm-solver++",
                    steps=4, guidance=2.0, seed=0, progress=False)  # fmt: skip
    report = evaluate_samples(images, balanced_labels(20), verbose=False)
    assert cost.class_agreement == report.class_agreement
    assert cost.frechet_distance == pytest.approx(report.frechet_distance)


def test_ddpm_with_fewer_steps_is_ddim_with_eta_1_and_with_all_steps_is_ddpm(tiny_unet, one_thread):
    model = tiny_unet(seed=1).eval()
    schedule = NoiseSchedule.linear(T=10)
    few = measure_sampling_cost(model, schedule, "ddpm", 5, n=10)
    ddim1 = measure_sampling_cost(model, schedule, "ddim", 5, n=10, eta=1.0)
    assert few.eta == 1.0 and few.model_calls == 5
    assert few.frechet_distance == ddim1.frechet_distance  # the same samples
    full = measure_sampling_cost(model, schedule, "ddpm", 10, n=10, timing_n=10, timing_repeats=2)
    assert (full.eta, full.model_calls, full.steps) == (1.0, 10, 10)
    assert full.seconds_per_image > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sampler="euler"), "sampler must be 'ddpm', 'ddim' or 'dpm-solver\\+\\+'"),
        (dict(steps=0), "steps must be a whole number >= 1"),
        (dict(steps=11), "steps must be at most T=10"),
        (dict(n=15), "n must be a positive multiple of 10"),
        (dict(sampler="ddpm", eta=0.0), "DDPM's steps have eta = 1"),
        (dict(sampler="dpm-solver++", eta=1.0), "deterministic"),
        (dict(timing_n=0), "timing_n must be"),
    ],
)
def test_measure_sampling_cost_bad_input_gives_a_clear_error(kwargs, match):
    args = {"sampler": "ddim", "steps": 2, "n": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        measure_sampling_cost(lambda x, t, c=None: x, NoiseSchedule.linear(T=10), **args)


def test_sampling_cost_sweep_round_trips_through_its_json_file(tmp_path):
    costs = tuple(
        SamplingCost(
            sampler=s,
            steps=k,
            n=200,
            guidance=1.0,
            eta=e,
            model_calls=k,
            seconds_per_image=0.001 * k,
            class_agreement=0.9,
            frechet_distance=0.8,
            frechet_floor=0.7,
            frechet_floor_low=0.5,
            frechet_floor_high=0.9,
        )
        for s, e in (("ddim", 0.0), ("ddpm", 1.0))
        for k in (10, 5)
    )
    sweep = SamplingCostSweep(costs=costs, command="python x.py", machine="AMD EPYC, 2 threads",
                              date="2026-12-01", timing="fixed batch", n=200, guidance=1.0,
                              notes=("a note",))  # fmt: skip
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(sweep.to_json()))
    loaded = load_sampling_cost(path)
    assert loaded == sweep
    assert loaded.samplers == ("ddim", "ddpm")
    assert [c.steps for c in loaded.of("ddim")] == [5, 10]
    assert loaded.get("ddpm", 5).eta == 1.0
    with pytest.raises(KeyError, match="no run of 'ddim' with 7 steps"):
        loaded.get("ddim", 7)
    path.write_text('{"costs": []}')
    with pytest.raises(ValueError, match="not a sampling-cost results file"):
        load_sampling_cost(path)


def test_the_recorded_sampling_cost_sweep_loads_and_covers_the_three_samplers():
    sweep = load_sampling_cost()
    assert set(sweep.samplers) == {"ddpm", "ddim", "dpm-solver++"}
    assert sweep.n >= 200 and all(c.n == sweep.n for c in sweep.costs)
    assert sweep.get("ddpm", 1000).eta == 1.0
    assert "lscpu" not in sweep.machine and sweep.machine.strip()
    ddpm = sweep.of("ddpm")
    assert ddpm[-1].seconds_per_image > 10 * sweep.of("dpm-solver++")[0].seconds_per_image
