"""Lesson 02's and 03's pictures, widgets and animation (diffusion_edu.viz.forward_viz): every
figure has a title and labelled axes, and moving a slider redraws without error (headless:
MPLBACKEND=Agg, no kernel)."""

import matplotlib
import pytest
import torch

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
