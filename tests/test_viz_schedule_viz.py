"""Lesson 04's schedule pictures and explorer (diffusion_edu.viz.schedule_viz): the figures
build with titles and labels, and the explorer's slider callbacks redraw without error. The
schedule maths itself is tested in test_schedules.py."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz.plots import LessonFigure
from diffusion_edu.viz.schedule_viz import (
    ScheduleExplorer,
    evenly_spaced_timesteps,
    plot_noised_rows,
    plot_schedule_comparison,
)

DIGIT = torch.linspace(-1, 1, 28 * 28).reshape(1, 28, 28)


def _titles(fig) -> list[str]:  # noqa: ANN001
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_evenly_spaced_timesteps() -> None:
    assert evenly_spaced_timesteps(1000, 5) == [0, 250, 500, 750, 1000]
    with pytest.raises(ValueError):
        evenly_spaced_timesteps(10, 1)


def test_schedule_figures_have_titles_and_labels() -> None:
    fig = plot_schedule_comparison()
    assert isinstance(fig, LessonFigure) and fig._repr_png_()[:4] == b"\x89PNG"
    assert len(_titles(fig)) == 3 and all(ax.get_xlabel() == "step t" for ax in fig.axes)
    fig = plot_noised_rows(DIGIT, n=5)
    assert len(fig.axes) == 10 and fig.axes[0].get_ylabel() == "linear"


def test_schedule_explorer_redraws_and_shows_errors() -> None:
    explorer = ScheduleExplorer(DIGIT, n_images=5)
    first_png = explorer.image_widget.value
    assert first_png[:4] == b"\x89PNG"
    explorer.kind.value = "cosine"  # a slider callback
    assert explorer.image_widget.value != first_png
    assert explorer.lines[1].get_color() == "#00798c"
    explorer.update(kind="linear", T=100)
    _, ab_line, _ = explorer.lines
    torch.testing.assert_close(
        torch.as_tensor(ab_line.get_ydata()), NoiseSchedule.linear(T=100).alpha_bars
    )
    good_png = explorer.image_widget.value
    explorer.beta_end.value = 1.0  # invalid: NoiseSchedule.linear raises ValueError
    assert explorer.error is not None and "beta_end" in explorer.status.value
    assert explorer.image_widget.value == good_png  # the last good plot stays
    explorer.beta_end.value = 0.02
    assert explorer.error is None
    assert explorer.s.layout.display == "none" and explorer.beta_end.layout.display is None
    assert len(explorer.redraw_times) >= 4
    with pytest.raises(ValueError, match="unknown"):
        explorer.update(beta=0.1)


def test_schedule_explorer_is_rendered_at_the_size_it_is_shown() -> None:
    from PIL import Image

    explorer = ScheduleExplorer(DIGIT, n_images=5)
    png = Image.open(io.BytesIO(bytes(explorer.image_widget.value)))
    width_in, height_in = explorer.fig.get_size_inches()
    # One PNG pixel per screen pixel: the PNG is as wide as the widget shows it, which fits
    # JupyterLab's default output width (about 960 px), and no taller than a laptop screen.
    assert png.size == (round(width_in * explorer.dpi), round(height_in * explorer.dpi))
    assert explorer.image_widget.width == str(png.size[0]) and png.size[0] <= 960
    assert png.size[1] <= 600 and explorer.dpi >= 96  # not 72 dpi, stretched


def test_schedule_explorer_says_so_when_log_snr_never_crosses_0() -> None:
    explorer = ScheduleExplorer(DIGIT, n_images=5)
    explorer.update(kind="linear", T=10)  # alpha_bar_T = 0.90: half-destroyed is never reached
    assert "never crosses 0" in explorer.status.value and "110%" not in explorer.status.value
    assert "never reaches 0" in explorer.suptitle.get_text()
    assert not any(line.get_visible() for line in explorer.half_lines)
    explorer.update(kind="cosine", T=10)
    assert "crosses 0 at t=5 (50% of the way)" in explorer.status.value


def test_schedule_explorer_error_shows_the_value_in_short() -> None:
    explorer = ScheduleExplorer(DIGIT, n_images=5)
    explorer.beta_end.value = 10**explorer.beta_end.max  # the slider's top: 1.00237...
    assert explorer.error is not None and "got 1.002." in explorer.status.value
    assert "1.0023" not in explorer.status.value and "choose a smaller value" in explorer.error
