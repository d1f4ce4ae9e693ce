"""Shared widget helpers (diffusion_edu.viz.widgets)."""

import math

import pytest

from diffusion_edu.viz.widgets import log_slider


@pytest.mark.parametrize("value, low, high", [(0.008, -4, -0.3), (1e-4, -5, -2), (0.02, -3, -0.5)])
def test_log_slider_starts_exactly_on_its_value_and_spans_the_range(value, low, high):
    slider = log_slider("x", value, low, high)
    assert slider.value == pytest.approx(value, rel=1e-12)  # not snapped to a nearby grid point
    assert abs(slider.min - low) <= slider.step / 2 and abs(slider.max - high) <= slider.step / 2
    grid_index = (math.log10(value) - slider.min) / slider.step
    assert grid_index == pytest.approx(round(grid_index), abs=1e-9)
