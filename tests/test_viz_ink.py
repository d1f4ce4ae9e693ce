"""Lesson 01's pictures, widgets and animation (diffusion_edu.viz.ink): every figure has a title
and labelled axes, and moving a slider redraws without error (headless: MPLBACKEND=Agg, no
kernel)."""

import matplotlib
import pytest
import torch

from diffusion_edu.physics import heat_equation, noise_walk, random_walk
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz import ink

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def walk():
    return random_walk(300, 40, D=1.0, drop_radius=1.0, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.1)


def test_lesson01_figures_are_labelled(walk, schedule, assert_labelled):
    assert_labelled(ink.plot_ink_drop(walk, [0, 10, 40]))
    assert_labelled(ink.plot_variance_growth(walk))
    c0 = torch.zeros(31, 31, dtype=torch.float64)
    c0[15, 15] = 1.0
    assert_labelled(ink.plot_concentration(heat_equation(c0, [0.0, 5.0]), [0.0, 5.0]))
    c1 = torch.zeros(61, dtype=torch.float64)
    c1[30] = 1.0
    x = torch.arange(61, dtype=torch.float64) - 30
    assert_labelled(ink.plot_heat_profiles(x, heat_equation(c1, [0.0, 5.0]), [0.0, 5.0], 1.0))
    start = torch.full((200, 1), 0.5)
    plain = noise_walk(start, schedule, shrink=False, generator=torch.Generator().manual_seed(2))
    shrinking = noise_walk(start, schedule, generator=torch.Generator().manual_seed(2))
    assert_labelled(ink.plot_noise_walks(plain, shrinking, schedule))


def test_ink_widget_slider_redraws(walk, assert_labelled):
    live = ink.ink_widget(walk, max_D=2.0)
    first = live.last_figure
    live.controls["step"].value = 30
    assert live.last_figure is not first
    assert "t = 30" in live.last_figure.axes[0].get_title()
    live.controls["D"].value = 2.0
    assert "D = 2" in live.last_figure._suptitle.get_text()
    assert_labelled(live.last_figure)
    assert live.widget.children  # something to display


def test_noise_walk_widget_slider_redraws(assert_labelled):
    live = ink.noise_walk_widget(n_copies=100, T=30)
    live.controls["x0"].value = -2.0
    assert "x_0 = -2" in live.last_figure._suptitle.get_text()
    live.controls["beta"].value = 0.1
    assert_labelled(live.last_figure)


def test_animate_ink_returns_html(walk):
    html = ink.animate_ink(walk, n_frames=3)
    assert "<script" in html and "img" in html.lower()
