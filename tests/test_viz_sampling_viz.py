"""Lesson 08's figures: what sampling costs (one line per sampler, the floor band) and the
noise-prediction error against t. Each is labelled, at most FIGURE_WIDTH wide, and draws what
it is given; bad input gets a clear error."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle

from diffusion_edu import NoiseSchedule
from diffusion_edu.metrics import NoiseErrorCurve, SamplingCost, SamplingCostSweep
from diffusion_edu.viz.plots import FIGURE_WIDTH
from diffusion_edu.viz.sampling_viz import (
    SAMPLER_COLORS,
    plot_noise_prediction_error,
    plot_sampling_cost,
)


def _cost(sampler: str, steps: int) -> SamplingCost:
    return SamplingCost(
        sampler=sampler, steps=steps, n=200, guidance=1.0, eta=0.0, model_calls=steps,
        seconds_per_image=0.001 * steps, class_agreement=min(0.5 + 0.01 * steps, 0.95),
        frechet_distance=1 + 10 / steps, frechet_floor=0.7, frechet_floor_low=0.55,
        frechet_floor_high=0.9,
    )  # fmt: skip


SWEEP = SamplingCostSweep(
    costs=tuple(
        _cost(s, k) for s, ks in (("ddpm", (10, 100, 1000)), ("ddim", (5, 10, 50)),
                                  ("dpm-solver++", (5, 10, 15))) for k in ks
    ),  # fmt: skip
    command="python scripts/measure_sampling_cost.py", machine="a CPU", date="2026-12-01",
    timing="fixed batch", n=200, guidance=1.0,
)  # fmt: skip


def _data_lines(ax):
    return [line for line in ax.lines if len(line.get_xdata()) > 1 and line.get_marker() == "o"]


def test_sampling_cost_figure_has_one_line_per_sampler_in_each_panel(assert_labelled):
    fig = plot_sampling_cost(SWEEP, highlight=[("dpm-solver++", 15), ("ddim", 50)])
    assert fig.get_size_inches()[0] <= FIGURE_WIDTH
    time_ax, agree_ax, fd_ax = fig.axes
    for ax in fig.axes:
        lines = _data_lines(ax)
        assert [line.get_color() for line in lines] == list(SAMPLER_COLORS.values())
        assert ax.get_xscale() == "log"
        assert len(ax.collections) == 2  # the two highlight rings
    ddim = _data_lines(time_ax)[1]
    np.testing.assert_allclose(ddim.get_xdata(), [5, 10, 50])
    np.testing.assert_allclose(ddim.get_ydata(), [0.005, 0.01, 0.05])
    np.testing.assert_allclose(_data_lines(agree_ax)[2].get_ydata(), [55.0, 60.0, 65.0])
    band = [p for p in fd_ax.patches if isinstance(p, (Rectangle, PolyCollection))]
    assert band, "the real-vs-real floor band is missing"
    low, high = band[0].get_bbox().y0, band[0].get_bbox().y1
    assert (low, high) == pytest.approx((0.55, 0.9))
    assert_labelled(fig)


def test_sampling_cost_figure_takes_a_plain_list_and_refuses_what_it_cannot_draw():
    fig = plot_sampling_cost(list(SWEEP.of("ddim")))
    assert len(_data_lines(fig.axes[0])) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="no results to plot"):
        plot_sampling_cost([])
    with pytest.raises(ValueError, match=r"cannot highlight \[\('ddim', 7\)\]"):
        plot_sampling_cost(SWEEP, highlight=[("ddim", 7)])


def test_noise_error_figure_draws_the_model_and_the_ideal(assert_labelled):
    curve = NoiseErrorCurve(timesteps=(1, 10, 100), eps_mse=(0.8, 0.3, 0.01),
                            x0_mse=(1e-4, 1e-3, 0.05), snr=(8000.0, 300.0, 0.2), n=10,
                            repeats=1)  # fmt: skip
    ideal = NoiseErrorCurve(timesteps=(1, 10, 100), eps_mse=(0.7, 0.2, 0.005),
                            x0_mse=(1e-5, 5e-4, 0.02), snr=(8000.0, 300.0, 0.2), n=10,
                            repeats=1)  # fmt: skip
    fig = plot_noise_prediction_error(curve, ideal, schedule=NoiseSchedule.linear(T=100))
    assert fig.get_size_inches()[0] <= FIGURE_WIDTH
    eps_ax, x0_ax = fig.axes[:2]
    drawn = [line for line in eps_ax.lines if len(line.get_xdata()) == 3]
    assert len(drawn) == 2
    np.testing.assert_allclose(drawn[0].get_ydata(), curve.eps_mse)
    np.testing.assert_allclose(drawn[1].get_ydata(), ideal.eps_mse)
    assert x0_ax.get_yscale() == "log"
    np.testing.assert_allclose(x0_ax.lines[0].get_ydata(), curve.x0_mse)
    (top,) = eps_ax.child_axes  # the top axis: the noise level of x_t
    assert "sqrt(1 - alpha_bar_t)" in top.get_xlabel()
    assert_labelled(fig)
    alone = plot_noise_prediction_error(curve)
    assert len(alone.axes) == 2 and not alone.axes[0].child_axes
    plt.close(alone)
