"""diffusion_edu.schedules: NoiseSchedule's values with provenance, the t convention,
monotonicity, formulas and bad input; then the schedule analysis of lesson 04 (where log-SNR
crosses 0, how many steps are (almost) pure noise) and make_schedule, the one entry point for
the named schedules."""

import math

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu.schedules import (
    PURE_NOISE_ALPHA_BAR,
    NoiseSchedule,
    log_snr_zero_crossing,
    make_schedule,
    summarize_schedule,
)

ALL = [NoiseSchedule.linear, NoiseSchedule.cosine, NoiseSchedule.sigmoid]


def test_linear_matches_ddpm_section_4():
    # Ho et al. 2020, Sec. 4: T = 1000, beta_1 = 1e-4 rising linearly to beta_T = 0.02.
    s = NoiseSchedule.linear()
    assert s.T == 1000
    assert s.betas.shape == (1001,) and s.betas.dtype == torch.float64
    assert s.betas[0] == 0 and s.alphas[0] == 1 and s.alpha_bars[0] == 1
    assert_close(s.betas[1], torch.tensor(1e-4, dtype=torch.float64))
    assert_close(s.betas[1000], torch.tensor(0.02, dtype=torch.float64))
    assert_close(s.betas[2] - s.betas[1], torch.tensor((0.02 - 1e-4) / 999, dtype=torch.float64))


def test_linear_alpha_bar_T_is_the_well_known_4e_minus_5():
    # prod_{t=1}^{1000} (1 - beta_t) for DDPM's schedule is ~4.04e-5 (sqrt ~ 0.0064): x_T keeps
    # 0.6% of the signal, which is why x_T ~ N(0, I) is a good approximation.
    expected = math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000))
    s = NoiseSchedule.linear()
    assert_close(s.alpha_bars[-1].item(), expected, rtol=1e-9, atol=0)
    assert 4.0e-5 < expected < 4.1e-5


def test_posterior_variance_by_hand_at_t2():
    # DDPM Eq. 7 written out with plain floats for the linear schedule at t = 2:
    # beta_tilde_2 = (1 - alpha_bar_1) / (1 - alpha_bar_2) * beta_2
    beta_1, beta_2 = 1e-4, 1e-4 + (0.02 - 1e-4) / 999
    alpha_bar_1 = 1 - beta_1
    alpha_bar_2 = alpha_bar_1 * (1 - beta_2)
    by_hand = (1 - alpha_bar_1) / (1 - alpha_bar_2) * beta_2
    assert abs(by_hand - 5.4531e-5) < 1e-8  # the number itself, ~ beta_2 * 0.455
    s = NoiseSchedule.linear()
    assert_close(s.posterior_variance[2].item(), by_hand, rtol=1e-12, atol=0)
    # t = 1: given x_1 and x_0, x_0 is known exactly -> no variance left.
    assert s.posterior_variance[1] == 0


@pytest.mark.parametrize("make", ALL)
def test_alpha_bar_decreases_from_1_to_near_0(make):
    s = make()
    assert s.alpha_bars[0] == 1
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all(), "alpha_bar must strictly decrease"
    assert s.alpha_bars[-1] < 1e-4, "defaults should end at (almost) pure noise"
    assert ((s.betas[1:] > 0) & (s.betas[1:] < 1)).all()


@pytest.mark.parametrize("make", ALL)
def test_derived_quantities_follow_their_definitions(make):
    s = make(T=50)
    assert_close(s.alphas, 1 - s.betas)
    assert_close(s.alpha_bars[1:], torch.cumprod(1 - s.betas[1:], 0))
    assert_close(s.snr[1:], s.alpha_bars[1:] / (1 - s.alpha_bars[1:]))
    assert_close(s.sqrt_alpha_bars**2 + s.sqrt_one_minus_alpha_bars**2, torch.ones(51).double())
    assert math.isinf(s.snr[0].item())


def test_cosine_matches_its_defining_formula():
    # Nichol & Dhariwal 2021, Eq. 17: alpha_bar(t) = f(t) / f(0),
    # f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2). Clipping at max_beta only bites at the end.
    T, s_off = 1000, 0.008
    s = NoiseSchedule.cosine(T=T, s=s_off)

    def f(t: int) -> float:
        return math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2

    for t in [1, 10, 250, 500, 750, 900, 990]:
        assert_close(s.alpha_bars[t].item(), f(t) / f(0), rtol=1e-9, atol=1e-12)
    assert s.betas.max() <= 0.999
    assert_close(s.betas[-1].item(), 0.999)  # the last step is clipped


def test_sigmoid_matches_chen_2023():
    T, start, end, tau = 200, -3.0, 3.0, 0.7
    s = NoiseSchedule.sigmoid(T=T, start=start, end=end, tau=tau)

    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    v0, v1 = sig(start / tau), sig(end / tau)
    for t in [1, 50, 100, 150, 190]:
        expected = (v1 - sig((t / T * (end - start) + start) / tau)) / (v1 - v0)
        assert_close(s.alpha_bars[t].item(), expected, rtol=1e-9, atol=1e-12)


def test_cosine_keeps_more_signal_than_linear_in_the_middle():
    # The reason cosine exists: linear destroys small images too early.
    lin, cos = NoiseSchedule.linear(), NoiseSchedule.cosine()
    assert cos.alpha_bars[500] > 2 * lin.alpha_bars[500]


def test_from_betas_adds_index_0_and_round_trips_through_dict():
    betas = torch.tensor([0.1, 0.2, 0.3])
    s = NoiseSchedule.from_betas(betas)
    assert s.T == 3
    assert_close(s.betas, torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))
    assert_close(s.alpha_bars[3].item(), 0.9 * 0.8 * 0.7)
    again = NoiseSchedule.from_dict(s.to_dict())
    assert again == s and again.name == s.name


@pytest.mark.parametrize("T", [0, -5, 2.5, True, "100"])
def test_bad_T_is_rejected_with_a_clear_error(T):
    with pytest.raises(ValueError, match="T .*integer >= 1"):
        NoiseSchedule.linear(T=T)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta_start": 0.0}, "beta_start must be .* between 0 and 1"),
        ({"beta_end": 1.0}, "beta_end must be .* between 0 and 1"),
        ({"beta_end": float("nan")}, "beta_end"),
        ({"beta_start": -0.1}, "beta_start"),
    ],
)
def test_bad_linear_betas_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseSchedule.linear(**kwargs)


@pytest.mark.parametrize(
    "betas, match",
    [
        ([0.1, 1.5], r"beta_2 = 1.5"),
        ([0.1, float("nan")], "finite"),
        ([0.1, float("inf")], "finite"),
        ([], "empty"),
        ([[0.1, 0.2]], "1-D"),
        ([0.0, 0.1, 0.2], "index 0"),  # someone passed the T+1 array: say how to fix it
        ([-0.2], "strictly between 0 and 1"),
    ],
)
def test_bad_betas_are_rejected_with_what_is_wrong(betas, match):
    with pytest.raises(ValueError, match=match):
        NoiseSchedule.from_betas(betas)


def test_bad_cosine_and_sigmoid_arguments():
    with pytest.raises(ValueError, match="max_beta"):
        NoiseSchedule.cosine(max_beta=1.0)
    with pytest.raises(ValueError, match="s must be"):
        NoiseSchedule.cosine(s=-1.0)
    with pytest.raises(ValueError, match="start < end"):
        NoiseSchedule.sigmoid(start=3.0, end=-3.0)
    with pytest.raises(ValueError, match="tau"):
        NoiseSchedule.sigmoid(tau=0.0)


# ----------------------------------------------------------------------------- analysis
@pytest.mark.parametrize(
    "schedule",
    [
        NoiseSchedule.linear(),
        NoiseSchedule.cosine(),
        NoiseSchedule.sigmoid(),
        NoiseSchedule.cosine(T=7),
    ],
)
def test_log_snr_zero_crossing_is_the_first_step_with_alpha_bar_at_most_half(
    schedule: NoiseSchedule,
) -> None:
    t = log_snr_zero_crossing(schedule)
    # brute force over every step
    first = next(s for s in range(1, schedule.T + 1) if schedule.alpha_bars[s] <= 0.5)
    assert t == first
    assert schedule.log_snr[t] <= 0 < schedule.log_snr[t - 1]


def test_crossing_where_the_closed_forms_put_it() -> None:
    # linear: alpha_bar_t = prod(1 - beta_s) ~ exp(-sum beta_s); sum = ln 2 at t ~ 260 of 1000.
    assert abs(log_snr_zero_crossing(NoiseSchedule.linear()) - 260) <= 2
    # cosine: f(t)/f(0) = 1/2 where (t/T + s)/(1 + s) = 1/2 (almost): t ~ T/2 - s T/2.
    assert abs(log_snr_zero_crossing(NoiseSchedule.cosine()) - 496) <= 2
    # a schedule that never gets that noisy
    never = NoiseSchedule.linear(T=10, beta_start=1e-4, beta_end=1e-3)
    assert log_snr_zero_crossing(never) == 11


def test_summary_counts_pure_noise_steps() -> None:
    schedule = NoiseSchedule.linear()
    summary = summarize_schedule(schedule, threshold=0.01)
    count = sum(1 for t in range(1, 1001) if schedule.alpha_bars[t] < 0.01)
    assert summary.pure_noise_fraction == pytest.approx(count / 1000)
    assert (
        schedule.alpha_bars[summary.t_pure_noise]
        < 0.01
        <= schedule.alpha_bars[summary.t_pure_noise - 1]
    )
    assert summary.t_half == log_snr_zero_crossing(schedule)
    assert summary.alpha_bar_T == pytest.approx(schedule.alpha_bars[-1].item())
    # the lesson's claim: linear wastes far more steps on pure noise than cosine
    assert (
        summary.pure_noise_fraction
        > 3 * summarize_schedule(NoiseSchedule.cosine()).pure_noise_fraction
    )


def test_summary_of_a_schedule_that_never_reaches_pure_noise() -> None:
    gentle = NoiseSchedule.linear(T=10, beta_start=1e-4, beta_end=1e-3)
    summary = summarize_schedule(gentle)
    assert summary.threshold == PURE_NOISE_ALPHA_BAR
    assert (summary.t_half, summary.t_pure_noise, summary.pure_noise_fraction) == (11, 11, 0.0)
    assert not summary.crosses_zero and not summary.reaches_pure_noise
    text = str(summary)
    assert "linear" in text and "never crosses 0" in text and "never falls below 0.01" in text
    assert "t=11" not in text and "110%" not in text  # T + 1 is a marker, not a step to quote


@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [1, 2, 5, 10, 20, 50, 100, 1000])
def test_summary_text_agrees_with_the_curve_at_small_T(kind, T) -> None:
    """What the lesson 04 explorer prints (its T slider starts at 10) matches alpha_bar itself:
    a crossing step is quoted only if alpha_bar reaches 1/2 there, never as "110% of the way"."""
    schedule = make_schedule(kind, T=T)
    summary, text = summarize_schedule(schedule), str(summarize_schedule(schedule))
    crossings = [t for t in range(1, T + 1) if schedule.alpha_bars[t] <= 0.5]  # brute force
    if crossings:
        assert summary.crosses_zero and summary.t_half == crossings[0]
        assert f"crosses 0 at t={crossings[0]} ({crossings[0] / T:.0%} of the way)" in text
    else:
        assert not summary.crosses_zero and schedule.alpha_bars[T] > 0.5
        assert "never crosses 0" in text and "crosses 0 at" not in text
    percentages = [int(word[1:-1]) for word in text.split() if word.startswith("(") and "%" in word]
    assert all(0 <= p <= 100 for p in percentages)
    noisy = [t for t in range(1, T + 1) if schedule.alpha_bars[t] < PURE_NOISE_ALPHA_BAR]
    assert (f"from t={noisy[0]}" in text) if noisy else ("never falls below" in text)


def test_linear_beta_error_names_the_value_in_short_and_says_what_to_do() -> None:
    # The lesson 04 slider's largest beta_end: 10 ** (0 + its grid shift) = 1.0023744672545447.
    with pytest.raises(ValueError) as error:
        NoiseSchedule.linear(beta_end=1.0023744672545447)
    message = str(error.value)
    assert "got 1.002." in message and "1.00237" not in message
    assert "strictly between 0 and 1" in message and "choose a smaller value" in message
    with pytest.raises(ValueError, match="got 0. .*choose a positive value"):
        NoiseSchedule.linear(beta_start=0.0)
    # Rounding never makes an invalid value look like a bound it is not: 1 + 1e-7 stays visible.
    with pytest.raises(ValueError, match=r"got 1\.0000001\b"):
        NoiseSchedule.linear(beta_end=1.0000001)
    with pytest.raises(ValueError, match=r"beta_2 = 1\.002\.$"):
        NoiseSchedule.from_betas([0.1, 1.0023744672545447])


def test_make_schedule_dispatches_and_validates() -> None:
    assert make_schedule() == NoiseSchedule.linear()
    assert make_schedule("linear", T=20, beta_end=0.1) == NoiseSchedule.linear(T=20, beta_end=0.1)
    assert make_schedule("cosine", T=50) == NoiseSchedule.cosine(T=50)
    assert make_schedule("cosine", T=50, s=0.1) == NoiseSchedule.cosine(T=50, s=0.1)
    assert make_schedule("sigmoid", T=50, tau=0.5) == NoiseSchedule.sigmoid(T=50, tau=0.5)
    with pytest.raises(ValueError):
        make_schedule("linear", beta_end=1.0)
    with pytest.raises(ValueError, match="kind"):
        make_schedule("quadratic")  # type: ignore[arg-type]


def test_linear_scaled_to_a_short_chain_keeps_ddpms_beta_T_times_T() -> None:
    """scale_to_T multiplies DDPM's betas by 1000 / T (capped at 0.1 and 0.9)."""
    short = NoiseSchedule.linear(T=100, scale_to_T=True)
    assert short.betas[1].item() == pytest.approx(1e-3) and short.betas[
        100
    ].item() == pytest.approx(0.2)
    assert short.betas[100].item() * 100 == pytest.approx(
        NoiseSchedule.linear().betas[1000].item() * 1000
    )
    assert short.alpha_bars[-1] < 1e-3  # a short chain still ends in (almost) pure noise
    assert NoiseSchedule.linear(T=100).alpha_bars[-1] > 0.3  # unscaled, it would not
    tiny = NoiseSchedule.linear(T=10, scale_to_T=True)  # 1e-4 * 100 = 0.01; 0.02 * 100 capped
    assert tiny.betas[1].item() == pytest.approx(0.01) and tiny.betas[10].item() == pytest.approx(
        0.9
    )
    assert NoiseSchedule.linear(scale_to_T=True) == NoiseSchedule.linear()  # T = 1000: unchanged
