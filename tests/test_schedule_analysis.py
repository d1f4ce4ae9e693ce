"""Schedule analysis in diffusion_edu.schedules: where log-SNR crosses 0, how many steps are
(almost) pure noise, and the one entry point for the named schedules (lesson 04's claims)."""

from __future__ import annotations

import pytest

from diffusion_edu.schedules import (
    PURE_NOISE_ALPHA_BAR,
    NoiseSchedule,
    log_snr_zero_crossing,
    make_schedule,
    summarize_schedule,
)


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
    assert "t=11" in str(summary) and "linear" in str(summary)


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
