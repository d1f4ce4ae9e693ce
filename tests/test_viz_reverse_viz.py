"""Lesson 08's pictures, widgets and animation (diffusion_edu.viz.reverse_viz): each control
changes what is drawn, figures are labelled and at most FIGURE_WIDTH wide, bad input gets a clear
error (headless: MPLBACKEND=Agg, no kernel; a tiny untrained U-Net stands in for the model)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from diffusion_edu.samplers import Trajectory, sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz import reverse_viz
from diffusion_edu.viz.plots import FIGURE_WIDTH

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.cosine(T=40)  # short: every sampler runs in a blink


@pytest.fixture
def model(tiny_unet, one_thread):  # noqa: ANN001, ANN201
    net = tiny_unet(seed=3).eval()
    with torch.no_grad():  # a fresh U-Net predicts exactly 0 (zero-initialised output layer):
        torch.nn.init.normal_(net.conv_out.weight, std=0.3)  # make it depend on x_t, t, label
    return net


def _pixels(live) -> np.ndarray:  # noqa: ANN001
    """The picture a LivePlot shows now, as an array."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(live.image.widget.value)))


def _trajectories(model, schedule) -> dict[str, Trajectory]:  # noqa: ANN001
    common = dict(labels=[1, 2], guidance=2.0, seed=0, return_trajectory=True, progress=False)
    return {
        "DDPM": sample(model, schedule, sampler="ddpm", **common),
        "DDIM": sample(model, schedule, sampler="ddim", steps=8, **common),
    }


# ----------------------------------------------------------------------------- watching it
def test_animation_and_snapshots_show_both_samplers_at_shared_timesteps(
    model, schedule, assert_labelled, shown_png_width
) -> None:
    runs = _trajectories(model, schedule)
    html = reverse_viz.animate_reverse(runs, index=1, frames=5)
    assert "<script" in html and "http" not in html.split("<script")[0]  # offline player
    assert reverse_viz._frame_times(runs, 100) == runs["DDIM"].timesteps  # DDIM's grid: 9 t's
    assert reverse_viz._frame_times(runs, 5) == [40, 30, 20, 10, 0]
    fig = reverse_viz.plot_reverse_snapshots(runs, index=1, n=5)
    titles = [ax.get_title() for ax in fig.axes]
    assert "t = 40" in titles and "t = 0" in titles
    assert fig.get_figwidth() <= FIGURE_WIDTH and shown_png_width(fig) <= 960
    assert_labelled(fig)


def test_snapshots_show_the_right_states(model, schedule) -> None:
    runs = _trajectories(model, schedule)
    fig = reverse_viz.plot_reverse_snapshots(runs, index=0, n=5)
    from diffusion_edu.viz.plots import make_grid

    ddim = runs["DDIM"]
    i = ddim.timesteps.index(20)  # third column: t = 20; DDIM's rows are the 3rd and 4th
    np.testing.assert_allclose(fig.axes[10 + 2].images[0].get_array(), make_grid(ddim.xs[i, :1]))
    np.testing.assert_allclose(fig.axes[15 + 2].images[0].get_array(),
                               make_grid(ddim.x0_hats[i, :1]))  # fmt: skip


def test_watching_needs_trajectories(model, schedule) -> None:
    runs = _trajectories(model, schedule)
    with pytest.raises(ValueError, match="at least one"):
        reverse_viz.animate_reverse({})
    with pytest.raises(TypeError, match="Trajectory"):
        reverse_viz.plot_reverse_snapshots({"x": torch.zeros(3)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="index 5"):
        reverse_viz.animate_reverse(runs, index=5)


# ----------------------------------------------------------------------------- widgets
def test_variability_widget_eta_and_steps_change_the_picture(model, schedule) -> None:
    live = reverse_viz.variability_widget(model, schedule, label=3, n=3, steps=(5, 10, 20))
    title = live.last_figure._suptitle.get_text()
    assert "eta = 0.0" in title and title.endswith("max difference 0")  # identical runs
    before = _pixels(live)
    live.controls["eta"].value = 1.0
    assert "eta = 1.0" in live.last_figure._suptitle.get_text()
    assert not live.last_figure._suptitle.get_text().endswith("max difference 0")
    assert not np.array_equal(before, _pixels(live))
    before = _pixels(live)
    live.controls["steps"].value = 5
    assert "DDIM-5" in live.last_figure._suptitle.get_text()
    assert not np.array_equal(before, _pixels(live))
    assert live.last_figure.get_figwidth() <= FIGURE_WIDTH


def test_digit_grid_widget_previews_then_draws_and_every_control_changes_it(
    model, schedule
) -> None:
    live = reverse_viz.digit_grid_widget(model, schedule, steps=10, preview_steps=2)
    assert len(live.draw_seconds) == 2  # the preview, then the picture asked for
    assert "DPM-Solver++(2M)-10" in live.last_figure._suptitle.get_text()
    for name, value in [("guidance", 1.0), ("steps", 5), ("sampler", "ddim"), ("eta", 1.0)]:
        before = _pixels(live)
        live.controls[name].value = value
        assert not np.array_equal(before, _pixels(live)), name
    title = live.last_figure._suptitle.get_text()
    assert "DDIM-5, eta 1, guidance 1" in title
    assert live.last_figure.get_figwidth() <= FIGURE_WIDTH
    # eta only matters to DDIM: the solver's samples are reused, only the title says so
    live.controls["sampler"].value = "dpm-solver++"
    assert "eta 1: DDIM only" in live.last_figure._suptitle.get_text()


def test_digit_grid_widget_guides_only_in_its_interval(model, schedule) -> None:
    """With a guidance interval that holds none of the visited timesteps, the guidance slider
    no longer changes the digits (w = 1 everywhere); the title names the interval."""
    from diffusion_edu.samplers import sampling_timesteps

    visited = set()
    for sampler in ("dpm-solver++", "ddim"):
        for steps in (3, 10):
            visited |= set(sampling_timesteps(sampler, schedule.T, steps))
    hi = next(t for t in range(schedule.T, 0, -1) if t not in visited)  # (hi - 1, hi]: no step
    live = reverse_viz.digit_grid_widget(model, schedule, steps=10, preview_steps=3,
                                         guidance_interval=(hi - 1, hi))  # fmt: skip
    assert f"at {hi - 1} < t <= {hi}" in live.last_figure._suptitle.get_text()
    before = _pixels(live)
    live.controls["guidance"].value = 4.0
    np.testing.assert_array_equal(_pixels(live)[40:], before[40:])  # below the title: the same
    everywhere = reverse_viz.digit_grid_widget(model, schedule, steps=10, preview_steps=3)
    before = _pixels(everywhere)
    everywhere.controls["guidance"].value = 4.0
    assert not np.array_equal(before, _pixels(everywhere))


def test_digit_grid_widget_rejects_a_preview_without_steps(model, schedule) -> None:
    with pytest.raises(ValueError, match="preview_steps"):
        reverse_viz.digit_grid_widget(model, schedule, preview_steps=0)


def test_interpolation_figure_and_morph_widget(assert_labelled, shown_png_width) -> None:
    frames = torch.rand(9, 1, 28, 28) * 2 - 1
    weights = torch.linspace(0, 1, 9).tolist()
    norms = {"slerp": [1.0] * 9, "lerp": [0.7] * 9}
    fig = reverse_viz.plot_interpolation({"slerp": frames, "lerp": -frames}, weights, norms)
    assert "w = 0.50\n|x_T| = 0.70" in [ax.get_title() for ax in fig.axes]
    assert shown_png_width(fig) <= 960
    assert_labelled(fig)
    live = reverse_viz.morph_widget(frames, weights, title="morph")
    before = _pixels(live)
    live.controls["frame"].value = 4
    assert "w = 0.50" in live.last_figure._suptitle.get_text()
    assert not np.array_equal(before, _pixels(live))
    assert len(live.widget.children[0].children) == 2  # the play button and the slider
    with pytest.raises(ValueError, match="one frame per weight"):
        reverse_viz.morph_widget(frames[:3], weights)
    with pytest.raises(ValueError, match="one row"):
        reverse_viz.plot_interpolation({"slerp": frames[:2]}, weights, norms)


def test_sdedit_widget_and_strip(model, schedule, assert_labelled, shown_png_width) -> None:
    originals = torch.rand(2, 1, 28, 28) * 2 - 1
    live = reverse_viz.sdedit_widget(model, schedule, originals, [5, 6], t_values=[0, 20, 40],
                                     steps=None, guidance=2.0)  # fmt: skip
    assert "t* = 20" in live.last_figure._suptitle.get_text()
    before = _pixels(live)
    live.controls["t_star"].value = 40
    assert "t* = 40" in live.last_figure._suptitle.get_text()
    assert not np.array_equal(before, _pixels(live))
    live.controls["t_star"].value = 0  # t* = 0: the original comes back unchanged
    bottom_left = live.last_figure.axes[4].images[0].get_array()
    top_left = live.last_figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(bottom_left, top_left)
    assert live.last_figure.get_figwidth() <= FIGURE_WIDTH
    assert "asked 5, reads" in live.last_figure.axes[4].get_title()
    fig = reverse_viz.plot_sdedit_strip(originals[0], {0: originals[0], 40: originals[1]},
                                        new_label=5, old_label=3)  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == ["original\n(a 3)", "t* = 0", "t* = 40"]
    assert fig.axes[1].get_xlabel().startswith("reads ")
    assert shown_png_width(fig) <= 960
    with pytest.raises(ValueError, match="one new label per original"):
        reverse_viz.sdedit_widget(model, schedule, originals, [5], t_values=[0, 40])


def test_lesson_sized_figures_fit_the_width(model, schedule, shown_png_width) -> None:
    # At the lesson's sizes: ten digits in the grid, 6 runs, 9 morph frames, 8 SDEdit columns.
    live = reverse_viz.digit_grid_widget(model, schedule, steps=5, preview_steps=1)
    assert shown_png_width(live.last_figure) <= 960
    strip = {t: torch.zeros(1, 28, 28) for t in range(0, 41, 5)}  # 9 columns
    fig = reverse_viz.plot_sdedit_strip(torch.zeros(1, 28, 28), strip, new_label=8, old_label=3)
    assert shown_png_width(fig) <= 960
    runs = _trajectories(model, schedule)
    assert shown_png_width(reverse_viz.plot_reverse_snapshots(runs, n=9)) <= 960
