"""Lesson 13's pictures and calculator (diffusion_edu.viz.costs_viz): the stability sweep is the
toy's seeded runs, every figure is labelled and fits the notebook, the rule figure shows one line
per layout, and the calculator redraws with the estimate of its controls, presets included."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math

import pytest
import torch

from diffusion_edu.costs import SD_V1, GenerationSetup, SpeedRow, Throughput, estimate_cost
from diffusion_edu.toy2d import make_toy_data, train_and_sample_toy
from diffusion_edu.viz.costs_viz import (
    RulePoint,
    cost_calculator_widget,
    plot_cost_estimates,
    plot_data_types,
    plot_flops_rule,
    plot_speed_rows,
    plot_stability,
    stability_sweep,
)
from diffusion_edu.viz.plots import FIGURE_WIDTH

THROUGHPUT = Throughput((1, 16), (1e10, 2e10), model="test", threads=2)
OURS = GenerationSetup("ours", 28, False, 1, 200_433, 0.2213, 50, True)


@pytest.fixture(scope="module")
def sweep():  # noqa: ANN201
    data = make_toy_data("spiral", n=400, seed=0)
    return stability_sweep(data, lrs=(1e-2, 3e-1), seeds=(0, 1), steps=12, n_samples=50)


def test_stability_sweep_is_the_toys_seeded_runs(sweep) -> None:  # noqa: ANN001
    assert set(sweep.runs) == {(1e-2, 0), (1e-2, 1), (3e-1, 0), (3e-1, 1)}
    data = make_toy_data("spiral", n=400, seed=0)
    again = train_and_sample_toy(data, lr=1e-2, steps=12, seed=1, n_samples=50)
    assert sweep.runs[(1e-2, 1)].losses == again.losses  # same seed, same run
    assert sweep.runs[(1e-2, 0)].losses != sweep.runs[(1e-2, 1)].losses  # seeds differ
    finals = sweep.final_losses(1e-2, last=5)
    assert finals[1] == pytest.approx(sum(again.losses[-5:]) / 5)
    with pytest.raises(ValueError, match="at least one"):
        stability_sweep(data, lrs=(), seeds=(0,))


def test_stability_figure_has_a_panel_per_lr_and_a_curve_per_seed(sweep, assert_labelled,
                                                                  shown_png_width) -> None:  # noqa: ANN001  # fmt: skip
    fig = plot_stability(sweep)
    assert len(fig.axes) == 2
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    assert shown_png_width(fig) <= 950
    assert_labelled(fig)


def test_data_types_figure_shows_points_and_image_panels(assert_labelled, fake_digits) -> None:  # noqa: ANN001
    images, _ = fake_digits(8)
    points = torch.randn(50, 2)
    fig = plot_data_types(
        points, make_toy_data("spiral", n=100), [("a", images), ("b", images[:4])]
    )
    assert len(fig.axes) == 3 and len(fig.axes[1].images) == 1
    assert fig.get_figwidth() <= FIGURE_WIDTH
    assert_labelled(fig)
    with pytest.raises(ValueError, match="panel"):
        plot_data_types(points, points, [])


def test_rule_figure_draws_a_line_per_layout_and_one_label_per_spot(assert_labelled) -> None:  # noqa: ANN001
    points = [
        RulePoint("a", "U-Net", 1000, 100, 0.2 * 2 * 1000 * 100),
        RulePoint("b 4x pixels", "U-Net", 1000, 400, 0.2 * 2 * 1000 * 400),
        RulePoint("c 4x params", "U-Net", 4000, 100, 0.2 * 2 * 4000 * 100),
        RulePoint("d", "DiT", 1000, 49, 0.7 * 2 * 1000 * 49),
    ]
    assert points[0].share == pytest.approx(0.2)
    fig = plot_flops_rule(points)
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # share-1 diagonal + one line per layout
    labels = [t.get_text() for t in ax.texts]
    assert "b 4x pixels\nc 4x params" in labels  # the same spot, one label
    assert_labelled(fig)
    with pytest.raises(ValueError):
        plot_flops_rule([])


def test_speed_rows_figure_has_a_bar_per_row(assert_labelled) -> None:  # noqa: ANN001
    rows = [
        SpeedRow("DDPM-1000", 1000, 1.8, 0.93, 0.5, "x"),
        SpeedRow("DDIM-50", 50, 0.09, 0.9, 0.8, "x"),
    ]
    fig = plot_speed_rows(rows)
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]
    assert fig.axes[0].get_xscale() == "log"
    assert_labelled(fig)
    with pytest.raises(ValueError):
        plot_speed_rows([])


def test_cost_figure_writes_each_estimate_and_marks_a_second_a_minute_an_hour(
    assert_labelled, shown_png_width
) -> None:  # noqa: ANN001
    estimates = [estimate_cost(SD_V1, THROUGHPUT), estimate_cost(OURS, THROUGHPUT)]
    fig = plot_cost_estimates(estimates, note="a note")
    assert shown_png_width(fig) <= 950
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Stable Diffusion v1", "ours"]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "1 s" in texts and "1 min" in texts and "1 h" in texts
    assert f"{estimates[0].flops_per_image:.3g} FLOPs" in texts
    assert "a note" in ax.get_title()
    assert_labelled(fig)


def _title(live) -> str:  # noqa: ANN001
    return live.last_figure.axes[0].get_title()


def test_calculator_redraws_with_the_estimate_of_its_controls() -> None:
    shares = {"pixel U-Net": 0.2213, "SD layout": SD_V1.share}
    live = cost_calculator_widget(THROUGHPUT, shares, {"SD": SD_V1, "ours": OURS}, [SD_V1])
    c = live.controls
    assert c["image_size"].value == 512 and c["space"].value == "latents, f = 8"
    first = live.last_figure.axes[0].texts[0].get_text()
    sd = estimate_cost(SD_V1, THROUGHPUT)
    assert f"{sd.flops_per_image:.3g} FLOPs" in first
    c["space"].value = "pixels"  # 64x the positions
    pixel = estimate_cost(
        GenerationSetup("p", 512, False, 1, 860e6, SD_V1.share, 50, True), THROUGHPUT
    )
    assert f"{pixel.flops_per_image:.3g} FLOPs" in live.last_figure.axes[0].texts[0].get_text()
    c["guidance"].value = False
    assert "50 calls" in live.last_figure.axes[0].texts[0].get_text()
    c["speedup"].value = 100.0
    assert "what-if speed-up (NOT measured)" in _title(live)
    live.preset.value = "ours"  # a preset sets every control
    assert (c["image_size"].value, c["space"].value, c["steps"].value) == (28, "pixels", 50)
    assert c["parameters"].value == pytest.approx(OURS.parameters, rel=0.02)
    assert c["layout"].value == "pixel U-Net"


def test_calculator_rounds_a_side_the_autoencoder_cannot_divide() -> None:
    live = cost_calculator_widget(THROUGHPUT, {"SD layout": SD_V1.share}, {"SD": SD_V1})
    live.controls["image_size"].value = 28  # 28 / 8 is not whole
    label = [t.get_text() for t in live.last_figure.axes[0].get_yticklabels()][0]
    assert "rounded to 32" in label


def test_calculator_refuses_empty_presets_or_layouts() -> None:
    with pytest.raises(ValueError, match="preset"):
        cost_calculator_widget(THROUGHPUT, {}, {"SD": SD_V1})
    with pytest.raises(ValueError, match="preset"):
        cost_calculator_widget(THROUGHPUT, {"x": 0.1}, {})
    assert math.isfinite(estimate_cost(OURS, THROUGHPUT).seconds_per_image)
