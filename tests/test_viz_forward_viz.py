"""Lesson 02's and 03's pictures, widgets and animation (diffusion_edu.viz.forward_viz): every
figure has a title and labelled axes, and moving a slider redraws without error (headless:
MPLBACKEND=Agg, no kernel)."""

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.text import Text

from diffusion_edu.forward import q_sample
from diffusion_edu.physics import noise_walk
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.viz import forward_viz

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.1)


@pytest.fixture(scope="module")
def digits():
    g = torch.Generator().manual_seed(1)
    return (torch.rand(4, 1, 28, 28, generator=g) > 0.7).float() * 2 - 1  # (B, 1, 28, 28)


# ----------------------------------------------------------------------------- lesson 02
def test_lesson02_figures_are_labelled(digits, schedule, assert_labelled):
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(digits.shape, generator=g)
    assert_labelled(forward_viz.plot_gaussian_noise(noise))
    raw = ((digits + 1) * 127.5).round().to(torch.uint8)
    assert_labelled(forward_viz.plot_normalization(raw, digits))
    assert_labelled(forward_viz.plot_augmentations(digits, [digits.flip(-1)]))
    assert_labelled(forward_viz.plot_noise_levels(digits, schedule, [0, 50, 100], noise))
    assert_labelled(forward_viz.plot_snr(digits, schedule, [0, 50, 100], noise))


def test_noise_level_widget_slider_redraws(digits, schedule, assert_labelled):
    live = forward_viz.noise_level_widget(digits, schedule)
    live.controls["t"].value = 80
    assert "SNR(t = 80)" in live.last_figure.axes[1].get_title()
    live.controls["t"].value = 0  # no noise: SNR is infinite, must not crash
    assert_labelled(live.last_figure)


def test_noise_level_widget_updated_in_place_shows_exactly_x_t(digits, schedule):
    import numpy as np

    from diffusion_edu.viz.plots import make_grid

    live = forward_viz.noise_level_widget(digits, schedule, seed=0)
    first = live.last_figure
    for t in (80, 3, 80):  # forwards, back, and a value seen before (from the cache)
        live.controls["t"].value = t
        noise = torch.randn(digits.shape, generator=torch.Generator().manual_seed(0))
        x_t = q_sample(digits, t, schedule, noise)
        image_ax, _, hist_ax = live.last_figure.axes
        assert live.last_figure is first  # one figure, changed in place
        np.testing.assert_allclose(image_ax.images[0].get_array(), make_grid(x_t[:16], nrow=4))
        counts, _ = np.histogram(x_t.flatten().numpy(), bins=80, range=(-4, 4), density=True)
        np.testing.assert_allclose(hist_ax.patches[0].get_data().values, counts, rtol=1e-6)
        assert f"x_t at t = {t}" == image_ax.get_title()


# ----------------------------------------------------------------------------- lesson 03
def test_lesson03_figures_are_labelled(digits, schedule, assert_labelled):
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
    assert_labelled(forward_viz.plot_chain_vs_closed_form(chain.ts, chain.states, jump, schedule))
    assert_labelled(forward_viz.plot_pixel_histograms(chain, jump, schedule, x0_value=1.0))
    assert_labelled(forward_viz.plot_end_state(chain.states[-1]))
    html = forward_viz.animate_forward_chain(chain)
    assert "<script" in html


def test_forward_chain_widget_slider_redraws(digits, schedule, assert_labelled):
    chain = noise_walk(
        digits, schedule, save_at=[0, 50, 100], generator=torch.Generator().manual_seed(6)
    )
    live = forward_viz.forward_chain_widget(chain)
    live.controls["t"].value = 100
    assert "t = 100" in live.last_figure._suptitle.get_text()
    assert_labelled(live.last_figure)


# ----------------------------------------------------------------------------- layout


def test_lesson02_and_03_figures_fit_jupyterlabs_output_width(digits, schedule, shown_png_width):
    # JupyterLab at a common laptop width shows outputs about 934 px wide; a wider PNG is shrunk,
    # and its text with it. Each figure, at the lessons' sizes (ten digits, seven steps, four
    # histograms): <= 9.6 inches at dpi 100, <= 1000 px as displayed, every panel kept, no
    # text under 8 pt.
    g = torch.Generator().manual_seed(7)
    ten = torch.cat([digits, digits, digits[:2]])  # (10, 1, 28, 28)
    noise = torch.randn(ten.shape, generator=g)
    raw = ((ten + 1) * 127.5).round().to(torch.uint8)
    seven_ts = [0, 10, 20, 40, 60, 80, 100]
    chain = noise_walk(digits, schedule, save_at=[0, 50, 100], generator=g)
    jump = torch.stack(
        [
            q_sample(digits, int(t), schedule, torch.randn(digits.shape, generator=g))
            for t in chain.ts
        ]
    )
    one_pixel = torch.ones(500, 1)
    hist_ts = [0, 5, 20, 50, 100]
    pixel_chain = noise_walk(one_pixel, schedule, save_at=hist_ts, generator=g)
    pixel_jump = torch.stack(
        [
            q_sample(one_pixel, t, schedule, torch.randn(one_pixel.shape, generator=g))
            for t in hist_ts
        ]
    )
    figures = {  # name: (figure, panels it must show)
        "gaussian noise": (forward_viz.plot_gaussian_noise(noise), 2),
        "normalization": (forward_viz.plot_normalization(raw, ten), 2),
        "augmentations, 10 digits": (
            forward_viz.plot_augmentations(ten, [ten.flip(-1), ten.flip(-2), -ten]),
            40,
        ),
        "noise levels, 7 steps": (
            forward_viz.plot_noise_levels(ten[:4], schedule, seven_ts, noise[:4]),
            28,
        ),
        "snr, 7 steps": (forward_viz.plot_snr(ten[:1], schedule, seven_ts, noise[:1]), 8),
        "snr, 10 steps (wraps)": (
            forward_viz.plot_snr(ten[:1], schedule, list(range(0, 100, 10)), noise[:1]),
            11,
        ),
        "chain vs closed form": (
            forward_viz.plot_chain_vs_closed_form(chain.ts, chain.states, jump, schedule),
            2,
        ),
        "pixel histograms, 4 steps": (
            forward_viz.plot_pixel_histograms(pixel_chain, pixel_jump, schedule, x0_value=1.0),
            4,
        ),
        "end state": (forward_viz.plot_end_state(chain.states[-1]), 2),
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
