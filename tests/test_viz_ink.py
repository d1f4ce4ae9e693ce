"""Lesson 01's pictures, widgets and animation (diffusion_edu.viz.ink): every figure has a title
and labelled axes, and moving a slider redraws without error (headless: MPLBACKEND=Agg, no
kernel)."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.text import Text

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
    first_png = bytes(live.image.widget.value)
    live.controls["step"].value = 30
    assert bytes(live.image.widget.value) != first_png
    assert "t = 30" in live.last_figure.axes[0].get_title()
    # drawn in place: the dots are the particles at step 30, the curve the variance up to it
    dots = live.last_figure.axes[0].collections[0].get_offsets()
    assert np.allclose(dots, walk.positions[30].numpy())
    assert len(live.last_figure.axes[1].lines[1].get_xdata()) == 31
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


def _drawn_paths(ax) -> list[np.ndarray]:  # noqa: ANN001
    """The y values of every path drawn on ``ax`` (not the flat 0-line)."""
    return [
        np.asarray(line.get_ydata(), dtype=float) for line in ax.lines if len(line.get_ydata()) > 2
    ]


def test_noise_walks_fit_jupyterlabs_width_and_show_every_path(schedule):
    start = torch.full((50, 1), 0.5)
    plain = noise_walk(start, schedule, shrink=False, generator=torch.Generator().manual_seed(3))
    shrinking = noise_walk(start, schedule, generator=torch.Generator().manual_seed(3))
    # A shrinking path that strays further than any plain one (the old limits, taken from the
    # plain walk alone, cut it off), and a plain path at exactly the old limit.
    shrinking.states[40, 1, 0] = 1.5 * float(plain.states[:, :12].abs().max()) + 4.0
    fig = ink.plot_noise_walks(plain, shrinking, schedule)
    width, _ = fig.get_size_inches()
    assert width <= 9.6  # JupyterLab's default output width at dpi 100: no shrinking of the text
    for ax in fig.axes[:2]:
        low, high = ax.get_ylim()
        for path in _drawn_paths(ax):
            assert low < path.min() and path.max() < high, f"a path leaves {ax.get_title()!r}"
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()  # one scale: comparable spreads


def test_noise_walk_widget_in_place_matches_a_fresh_figure():
    # The widget changes one figure's data in place; it must show what plot_noise_walks draws.
    live = ink.noise_walk_widget(n_copies=100, T=30, seed=0)
    live.controls["x0"].value = -2.0
    live.controls["beta"].value = 0.1
    schedule = NoiseSchedule.from_betas(torch.full((30,), live.controls["beta"].value,
                                                   dtype=torch.float64))  # fmt: skip
    start = torch.full((100, 1), -2.0)
    plain = noise_walk(start, schedule, shrink=False, generator=torch.Generator().manual_seed(0))
    shrinking = noise_walk(start, schedule, generator=torch.Generator().manual_seed(0))
    reference = ink.plot_noise_walks(plain, shrinking, schedule)
    for shown, expected in zip(live.last_figure.axes[:3], reference.axes[:3], strict=True):
        assert len(shown.lines) == len(expected.lines)
        for a, b in zip(shown.lines, expected.lines, strict=True):
            np.testing.assert_allclose(a.get_ydata(), b.get_ydata(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(shown.get_ylim(), expected.get_ylim(), rtol=1e-3)
    assert live.last_figure._suptitle.get_text() == reference._suptitle.get_text()


def test_lesson01_figures_fit_jupyterlabs_output_width(walk, schedule, shown_png_width):
    # JupyterLab at a common laptop width shows outputs about 934 px wide; a wider PNG is shrunk,
    # and its text with it. Each figure: <= 9.6 inches at dpi 100, <= 1000 px as displayed,
    # every panel kept, no text under 8 pt.
    c0 = torch.zeros(31, 31, dtype=torch.float64)
    c0[13:18, 13:18] = 1.0
    times = [0.0, 5.0, 20.0, 60.0]
    c1 = torch.zeros(61, dtype=torch.float64)
    c1[30] = 1.0
    x = torch.arange(61, dtype=torch.float64) - 30
    start = torch.full((200, 1), 0.8)
    plain = noise_walk(start, schedule, shrink=False, generator=torch.Generator().manual_seed(2))
    shrinking = noise_walk(start, schedule, generator=torch.Generator().manual_seed(2))
    figures = {  # name: (figure, panels it must show)
        "ink drop, 4 times (lesson 01)": (ink.plot_ink_drop(walk, [0, 2, 10, 40]), 4),
        "ink drop, 6 times (wraps)": (ink.plot_ink_drop(walk, [0, 1, 2, 5, 10, 40]), 6),
        "variance growth": (ink.plot_variance_growth(walk), 2),
        "concentration, 4 times": (ink.plot_concentration(heat_equation(c0, times), times), 4),
        "heat profiles": (
            ink.plot_heat_profiles(x, heat_equation(c1, [5.0, 20.0]), [5.0, 20.0], 1.0),
            1,
        ),
        "noise walks": (ink.plot_noise_walks(plain, shrinking, schedule), 3),
    }
    for name, (fig, panels) in figures.items():
        width_in, _ = fig.get_size_inches()
        assert width_in <= 9.6, f"{name}: {width_in:.2f} inches wide"
        width_px = shown_png_width(fig)
        assert width_px <= 1000, f"{name}: the displayed PNG is {width_px} px wide"
        assert len(fig.axes) == panels, f"{name}: {len(fig.axes)} panels, expected {panels}"
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
        assert min(sizes) >= 8, f"{name}: text at {min(sizes)} pt"
        plt.close(fig)
