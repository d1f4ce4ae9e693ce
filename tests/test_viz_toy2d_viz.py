"""Lesson 05's 2-D toy pictures and widgets (diffusion_edu.viz.toy2d_viz): the figures build
with titles and labels, and the explorers' and trainer's callbacks redraw without error."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch

from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import (
    HyperparameterSweep,
    ToyRunResult,
    make_moons,
    make_moons_labelled,
    train_and_sample_toy,
)
from diffusion_edu.viz.toy2d_viz import (
    HyperparameterTrainer,
    ScoreFieldExplorer,
    animate_reverse_2d,
    guidance_explorer,
    plot_conditional_samples,
    plot_data_quality,
    plot_forward_2d,
    plot_hyperparameter_sweep,
    plot_loss_curve,
    plot_reverse_snapshots,
    plot_samples_vs_data,
    plot_score_fields,
    plot_sweep_losses,
    plot_toy_run,
)


def _titles(fig) -> list[str]:  # noqa: ANN001
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_toy2d_figures_and_widget() -> None:
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1))
    schedule, data = NoiseSchedule.cosine(T=20), make_moons(100)
    for fig in (
        plot_forward_2d(data, schedule, [0, 10, 20]),
        plot_score_fields(model, schedule, data, [1, 10]),
        plot_loss_curve([1.0] * 60 + [0.5] * 60),
    ):
        assert _titles(fig) and all(ax.get_xlabel() for ax in fig.axes if ax.get_title())
    explorer = ScoreFieldExplorer(model, schedule, data)
    before = explorer.image_widget.value
    explorer.t.value = 15
    assert explorer.image_widget.value != before and "t=15" in explorer.ax.get_title()
    xs = torch.randn(21, 30, 2)
    timesteps = list(range(20, -1, -1))
    assert _titles(plot_reverse_snapshots(xs, timesteps, data, k=4))
    assert _titles(plot_samples_vs_data(xs[-1], data, xs[0], (0.1, 0.5)))
    html = animate_reverse_2d(xs, timesteps, data, max_frames=5)
    assert "<script" in html


def test_conditional_figures_and_guidance_slider() -> None:
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1, num_classes=2, T=20))
    schedule = NoiseSchedule.cosine(T=20)
    points, labels = make_moons_labelled(200, seed=0)
    # Samples exactly on class 0 / class 1 data: the titles must say 100%.
    fig = plot_conditional_samples(
        {0: points[labels == 0][:50], 1: points[labels == 1][:50]}, points, labels
    )
    titles = _titles(fig)
    assert len(titles) == 2 and all("100% of samples land on class" in t for t in titles)
    assert all(ax.get_xlabel() for ax in fig.axes)
    live = guidance_explorer(model, schedule, points, labels, n=20)
    assert "w = 1" in live.last_figure._suptitle.get_text()
    live.controls["guidance"].value = 3.0
    assert "w = 3" in live.last_figure._suptitle.get_text()


def _fake_run(lr: float, bs: int, distance: float) -> object:
    samples = torch.randn(30, 2, generator=torch.Generator().manual_seed(bs))
    return ToyRunResult(
        lr, bs, "cosine", 20, 40, tuple([1.0] * 20 + [0.5] * 20), samples, distance, 0.1
    )


def test_hyperparameter_figures_and_trainer_widget() -> None:
    data = make_moons(200)
    runs = [_fake_run(lr, bs, d) for lr, d in ((1e-4, 0.5), (1e-2, float("inf"))) for bs in (8, 64)]
    sweep = HyperparameterSweep((1e-4, 1e-2), (8, 64), tuple(runs))
    fig = plot_hyperparameter_sweep(sweep, data)
    titles = _titles(fig)
    assert len(titles) == 4 and "lr=1e-04, batch=8" in titles[0] and "0.500" in titles[0]
    assert "diverged" in titles[-1]
    losses = plot_sweep_losses(sweep, window=5)
    assert [ax.get_title() for ax in losses.axes] == ["lr = 1e-04", "lr = 1e-02"]
    assert all(ax.get_xlabel() == "training step" for ax in losses.axes)
    assert len(losses.axes[0].get_legend().get_texts()) == 2  # one line per batch size
    run = train_and_sample_toy(data, steps=3, n_samples=10, batch_size=4, T=20)
    assert len(_titles(plot_toy_run(run, data))) == 2
    trainer = HyperparameterTrainer(data, steps=3, n_samples=10)
    assert trainer.last_run is None  # nothing trains until Train is pressed
    trainer.lr.value, trainer.batch_size.value = 1e-3, 16
    trainer.schedule.value, trainer.T.value = "linear", 25
    result = trainer.train()
    assert (result.lr, result.batch_size, result.schedule, result.T) == (1e-3, 16, "linear", 25)
    assert result.steps == 3 and "done" in trainer.status.value
    assert "linear schedule, T=25, 3 steps" in trainer.last_figure.axes[0].get_title()


def test_data_quality_figure() -> None:
    data = make_moons(200)
    sets = {"clean": data, "tiny": data[:8]}
    fig = plot_data_quality(sets, {"clean": data[:50], "tiny": data[:8]}, {"tiny": "copies: 90%"})
    titles = _titles(fig)
    assert len(titles) == 4 and "(8 points)" in titles[1] and "copies: 90%" in titles[3]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
