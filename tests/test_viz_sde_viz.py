"""Lesson 12's pictures and widget (diffusion_edu.viz.sde_viz): what each figure shows is what
the library computed (straightness in the titles, the closed-form band, the first step count
that reaches the goal), every sampler choice runs, and the widget redraws on every control."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusion_edu import NoiseSchedule
from diffusion_edu.sde import VPSDE, euler_maruyama, path_straightness
from diffusion_edu.viz.sde_viz import (
    SAMPLER_CHOICES,
    animate_paths_2d,
    plot_forward_sde,
    plot_langevin,
    plot_paths_2d,
    plot_steps_vs_quality,
    sampler_paths_widget,
    toy_paths,
)

S = NoiseSchedule.linear(T=100, scale_to_T=True)
POINT = torch.tensor([0.5, -0.25])


class EpsOracle(nn.Module):
    def forward(self, x_t, t, labels=None):  # noqa: ANN001, ANN201
        ab = S.alpha_bars[t].to(x_t).view(-1, 1)
        return (x_t - ab.sqrt() * POINT) / (1 - ab).sqrt()


class FlowOracle(nn.Module):
    prediction = "flow"

    def forward(self, x_t, t, labels=None):  # noqa: ANN001, ANN201
        u = (t.to(x_t) / S.T).view(-1, 1)
        return (x_t - (1 - u) * POINT) / u - POINT


MODELS = {"eps": EpsOracle(), "flow": FlowOracle()}
DATA = POINT.expand(50, 2) + 0.01 * torch.randn(50, 2, generator=torch.Generator().manual_seed(0))


def test_forward_sde_figure_draws_every_path_and_the_closed_form_band() -> None:
    sde = VPSDE(NoiseSchedule.linear())
    x0s = torch.tensor([-1.5, 1.5])
    starts = x0s.repeat_interleave(3).view(-1, 1)
    paths = euler_maruyama(sde, starts, steps=50, keep_path=True)
    fig = plot_forward_sde(paths, sde, x0s)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 6  # one dashed mean per start, one line per path
    mean_line = ax.lines[0]
    m_end, _ = sde.marginal(1.0)
    assert mean_line.get_ydata()[-1] == pytest.approx(m_end * -1.5)
    assert len(ax.collections) == 2  # the two +-2 std bands


def test_paths_figure_titles_carry_the_measured_straightness() -> None:
    x_T = torch.randn(20, 2, generator=torch.Generator().manual_seed(1))
    paths = {name: toy_paths(name, MODELS, S, x_T, steps=10)[0] for name in SAMPLER_CHOICES}
    fig = plot_paths_2d(paths, DATA, n_lines=5)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    for name, title in zip(paths, titles, strict=True):
        assert title.startswith(name)
        assert f"straightness {path_straightness(paths[name]).mean().item():.2f}" in title
    flow = paths["ODE: Euler (flow model)"]
    assert path_straightness(flow).min().item() > 0.9999  # one data point: straight lines
    assert "straightness 1.00" in titles[3]


def test_toy_paths_count_model_calls_and_start_every_sampler_from_x_T() -> None:
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    for name, (_, how) in SAMPLER_CHOICES.items():
        steps = S.T if how == "sde" else 6  # Euler-Maruyama needs small steps (lesson 12)
        path, calls = toy_paths(name, MODELS, S, x_T, steps=steps)
        assert path.shape == (steps + 1, 8, 2) and torch.equal(path[0], x_T)
        assert calls == (11 if how == "heun" else steps)
        assert (path[-1] - POINT).abs().max().item() < 0.2, name  # the oracles reach the point
    with pytest.raises(ValueError, match="choice must be one of"):
        toy_paths("RK4", MODELS, S, x_T, 5)
    with pytest.raises(ValueError, match=r"needs models\['flow'\]"):
        toy_paths("ODE: Heun (flow model)", {"eps": MODELS["eps"]}, S, x_T, 5)


def test_the_widget_redraws_for_every_sampler_and_step_count() -> None:
    x_T = torch.randn(30, 2, generator=torch.Generator().manual_seed(3))
    live = sampler_paths_widget(MODELS, S, DATA, x_T, max_steps=20, n_lines=5)
    first = live.last_figure._suptitle.get_text()
    assert "ODE: Euler (flow model), 10 steps: 10 model calls" in first
    assert "straightness 1.00" in first
    live.controls["sampler"].value = "ODE: Heun (DDPM model)"
    assert "19 model calls" in live.last_figure._suptitle.get_text()
    live.controls["steps"].value = 3
    assert "3 steps: 5 model calls" in live.last_figure._suptitle.get_text()
    assert len(live.draw_seconds) == 3


def test_langevin_and_animation_show_every_panel() -> None:
    pts = torch.randn(40, 2)
    fig = plot_langevin({"start": pts, "Langevin": pts * 0.5}, DATA)
    assert [ax.get_title() for ax in fig.axes] == ["start", "Langevin"]
    x_T = torch.randn(10, 2, generator=torch.Generator().manual_seed(4))
    paths = {"a": toy_paths("ODE: Euler (flow model)", MODELS, S, x_T, 4)[0],
             "b": toy_paths("ODE: Euler = DDIM (DDPM model)", MODELS, S, x_T, 12)[0]}  # fmt: skip
    html = animate_paths_2d(paths, DATA, frames=5)
    assert "<script" in html and html.count("data:image/png") >= 5
    with pytest.raises(ValueError, match="at least one path"):
        plot_paths_2d({}, DATA)


def test_steps_vs_quality_marks_the_first_step_count_that_reaches_the_goal() -> None:
    fig = plot_steps_vs_quality({"flow": {4: 0.90, 8: 0.975, 16: 0.99},
                                 "ddpm": {4: 0.5, 8: 0.8, 16: 0.96}})  # fmt: skip
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert notes == ["8 steps: 98%"]  # flow reaches 97% at 8; the DDPM line never does


def test_steps_vs_quality_marks_a_distance_goal_from_below() -> None:
    fig = plot_steps_vs_quality({"flow": {4: 1.2, 8: 0.5, 16: 0.4}}, goal=0.6,
                                higher_is_better=False, fmt=lambda v: f"{v:.2f}")  # fmt: skip
    assert [t.get_text() for t in fig.axes[0].texts] == ["8 steps: 0.50"]
