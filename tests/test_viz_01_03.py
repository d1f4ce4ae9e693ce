"""Plots and widgets of lessons 01-03: every figure has a title and labelled axes, and moving
a slider redraws without error (headless: MPLBACKEND=Agg, no kernel)."""

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from diffusion_edu import NoiseSchedule, q_sample
from diffusion_edu.physics import heat_equation, noise_walk, random_walk
from diffusion_edu.viz import forward_viz, ink

matplotlib.use("Agg")


def _assert_labelled(fig: Figure) -> None:
    """A title (figure or axes) and, on every axes that shows a data plot, both axis labels."""
    titles = [fig._suptitle.get_text() if fig._suptitle else ""]
    titles += [ax.get_title() for ax in fig.axes]
    assert any(t.strip() for t in titles), "figure has no title"
    for ax in fig.axes:
        if ax.images and not ax.lines and not ax.collections:
            continue  # an image panel: pixels, no axes to label
        assert ax.get_xlabel().strip(), f"axes {ax.get_title()!r} has no x label"
        assert ax.get_ylabel().strip(), f"axes {ax.get_title()!r} has no y label"
    plt.close(fig)


@pytest.fixture(scope="module")
def walk():
    return random_walk(300, 40, D=1.0, drop_radius=1.0, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.1)


@pytest.fixture(scope="module")
def digits():
    g = torch.Generator().manual_seed(1)
    return (torch.rand(4, 1, 28, 28, generator=g) > 0.7).float() * 2 - 1  # (B, 1, 28, 28)


# ----------------------------------------------------------------------------- lesson 01
def test_lesson01_figures_are_labelled(walk, schedule):
    _assert_labelled(ink.plot_ink_drop(walk, [0, 10, 40]))
    _assert_labelled(ink.plot_variance_growth(walk))
    c0 = torch.zeros(31, 31, dtype=torch.float64)
    c0[15, 15] = 1.0
    _assert_labelled(ink.plot_concentration(heat_equation(c0, [0.0, 5.0]), [0.0, 5.0]))
    c1 = torch.zeros(61, dtype=torch.float64)
    c1[30] = 1.0
    x = torch.arange(61, dtype=torch.float64) - 30
    _assert_labelled(ink.plot_heat_profiles(x, heat_equation(c1, [0.0, 5.0]), [0.0, 5.0], 1.0))
    start = torch.full((200, 1), 0.5)
    plain = noise_walk(start, schedule, shrink=False, generator=torch.Generator().manual_seed(2))
    shrinking = noise_walk(start, schedule, generator=torch.Generator().manual_seed(2))
    _assert_labelled(ink.plot_noise_walks(plain, shrinking, schedule))


def test_ink_widget_slider_redraws(walk):
    live = ink.ink_widget(walk, max_D=2.0)
    first = live.last_figure
    live.controls["step"].value = 30
    assert live.last_figure is not first
    assert "t = 30" in live.last_figure.axes[0].get_title()
    live.controls["D"].value = 2.0
    assert "D = 2" in live.last_figure._suptitle.get_text()
    _assert_labelled(live.last_figure)
    assert live.widget.children  # something to display


def test_noise_walk_widget_slider_redraws():
    live = ink.noise_walk_widget(n_copies=100, T=30)
    live.controls["x0"].value = -2.0
    assert "x_0 = -2" in live.last_figure._suptitle.get_text()
    live.controls["beta"].value = 0.1
    _assert_labelled(live.last_figure)


def test_animate_ink_returns_html(walk):
    html = ink.animate_ink(walk, n_frames=3)
    assert "<script" in html and "img" in html.lower()


# ----------------------------------------------------------------------------- lesson 02
def test_lesson02_figures_are_labelled(digits, schedule):
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(digits.shape, generator=g)
    _assert_labelled(forward_viz.plot_gaussian_noise(noise))
    raw = ((digits + 1) * 127.5).round().to(torch.uint8)
    _assert_labelled(forward_viz.plot_normalization(raw, digits))
    _assert_labelled(forward_viz.plot_augmentations(digits, [digits.flip(-1)]))
    _assert_labelled(forward_viz.plot_noise_levels(digits, schedule, [0, 50, 100], noise))
    _assert_labelled(forward_viz.plot_snr(digits, schedule, [0, 50, 100], noise))


def test_noise_level_widget_slider_redraws(digits, schedule):
    live = forward_viz.noise_level_widget(digits, schedule)
    live.controls["t"].value = 80
    assert "SNR(t = 80)" in live.last_figure.axes[1].get_title()
    live.controls["t"].value = 0  # no noise: SNR is infinite, must not crash
    _assert_labelled(live.last_figure)


# ----------------------------------------------------------------------------- lesson 03
def test_lesson03_figures_are_labelled(digits, schedule):
    chain = noise_walk(
        digits, schedule, save_at=[0, 50, 100], generator=torch.Generator().manual_seed(4)
    )
    g = torch.Generator().manual_seed(5)
    jump = torch.stack(
        [
            q_sample(digits, int(t), schedule, torch.randn(digits.shape, generator=g))
            for t in chain.ts
        ]
    )
    _assert_labelled(forward_viz.plot_chain_vs_closed_form(chain.ts, chain.states, jump, schedule))
    _assert_labelled(forward_viz.plot_pixel_histograms(chain, jump, schedule, x0_value=1.0))
    _assert_labelled(forward_viz.plot_end_state(chain.states[-1]))
    html = forward_viz.animate_forward_chain(chain)
    assert "<script" in html


def test_forward_chain_widget_slider_redraws(digits, schedule):
    chain = noise_walk(
        digits, schedule, save_at=[0, 50, 100], generator=torch.Generator().manual_seed(6)
    )
    live = forward_viz.forward_chain_widget(chain)
    live.controls["t"].value = 100
    assert "t = 100" in live.last_figure._suptitle.get_text()
    _assert_labelled(live.last_figure)
