"""Lesson 05's 2-D toy pictures and widgets (diffusion_edu.viz.toy2d_viz): the figures build
with titles and labels, and the explorers' and trainer's callbacks redraw without error."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch
from matplotlib.text import Text

from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import (
    HyperparameterSweep,
    ToyRunResult,
    add_outliers,
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
    plot_toy_data,
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


def test_reverse_snapshots_fit_jupyterlabs_width_in_rows_of_three() -> None:
    data = make_moons(100)
    xs = torch.randn(21, 30, 2)
    timesteps = list(range(20, -1, -1))
    fig = plot_reverse_snapshots(xs, timesteps, data, k=6)
    width, height = fig.get_size_inches()
    assert width <= 9.6 and height * 100 <= 700  # legible at JupyterLab's ~960 px, dpi 100
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["t=20", "t=16", "t=12", "t=8", "t=4", "t=0"]
    odd = plot_reverse_snapshots(xs, timesteps, data, k=5)
    assert sum(ax.get_visible() for ax in odd.axes) == 5  # the sixth panel is left empty


def test_trainer_says_when_its_picture_no_longer_matches_the_settings() -> None:
    data = make_moons(200)
    trainer = HyperparameterTrainer(data, steps=3, n_samples=10)
    first = trainer.status.value
    trainer.batch_size.value = 64  # before any run: nothing to contradict
    assert trainer.status.value == first and "press Train" in first
    trainer.train()
    done = trainer.status.value
    assert done.startswith("done in")
    said = {done}
    for control, value in ((trainer.T, 25), (trainer.schedule, "linear"), (trainer.lr, 1e-3)):
        control.value = value
        status = trainer.status.value
        assert status.startswith("press Train for") and "(the picture is" in status
        assert "batch 64, cosine, T=100)" in status  # what the picture shows
        assert status not in said  # every change is answered by a different line
        said.add(status)
    assert "lr=1e-03, batch 64, linear, T=25 (" in trainer.status.value  # what Train would do
    trainer.T.value, trainer.schedule.value, trainer.lr.value = 100, "cosine", 1e-2
    assert trainer.status.value == done  # back to the settings of the picture
    trainer.batch_size.value = 16
    trainer.train()
    assert trainer.status.value.startswith("done in") and trainer.last_run.batch_size == 16


def test_every_lesson_figure_fits_jupyterlabs_width_with_legible_text(shown_png_width) -> None:
    # JupyterLab's output area is ~934 px wide at a laptop's width; a wider PNG is shrunk, its
    # text with it. Same panel counts as lesson 05, fewer points.
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1))
    schedule, data = NoiseSchedule.cosine(T=100), make_moons(100)
    xs, timesteps = torch.randn(101, 30, 2), list(range(100, -1, -1))
    lrs, batch_sizes = (1e-4, 1e-2, 1e-1), (16, 256)
    sweep = HyperparameterSweep(
        lrs, batch_sizes, tuple(_fake_run(lr, bs, 0.5) for lr in lrs for bs in batch_sizes)
    )
    points, labels = make_moons_labelled(100, seed=0)
    sets = {"clean": data, "30% outliers": add_outliers(data, 0.3, seed=0), "8 points": data[:8]}
    note = "off the spiral: 31%, copies: 100%"
    figures = {
        "plot_toy_data": plot_toy_data(data, "The data: 2,000 points on a spiral"),
        "plot_forward_2d": plot_forward_2d(data, schedule, [0, 10, 30, 60, 100]),
        "plot_loss_curve": plot_loss_curve([1.0] * 60 + [0.5] * 60),
        "plot_score_fields": plot_score_fields(model, schedule, data, [2, 15, 40, 90]),
        "plot_reverse_snapshots": plot_reverse_snapshots(xs, timesteps, data, k=6),
        "plot_samples_vs_data": plot_samples_vs_data(xs[-1], data, xs[0], (0.1, 0.5)),
        "plot_conditional_samples": plot_conditional_samples(
            {0: points[:20], 1: points[-20:]}, points, labels, "Same model, two prompts"
        ),
        "plot_hyperparameter_sweep": plot_hyperparameter_sweep(sweep, data),
        "plot_sweep_losses": plot_sweep_losses(sweep, window=5),
        "plot_toy_run": plot_toy_run(sweep.results[0], data),
        "plot_data_quality": plot_data_quality(sets, sets, dict.fromkeys(sets, note)),
    }
    for name, fig in figures.items():
        assert fig.get_figwidth() <= 9.6, f"{name}: {fig.get_figwidth():.1f} in wide"
        assert shown_png_width(fig) <= 1000, f"{name}: {shown_png_width(fig)} px wide"
        if name == "plot_conditional_samples":
            continue  # its class legend is drawn at 7 pt (a known exception)
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
        assert min(sizes) >= 8, f"{name}: a {min(sizes)} pt text"


def test_forward_and_score_panels_wrap_into_rows_read_like_text() -> None:
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1))
    schedule, data = NoiseSchedule.cosine(T=100), make_moons(100)
    forward = plot_forward_2d(data, schedule, [0, 10, 30, 60, 100])
    shown = [ax for ax in forward.axes if ax.get_visible()]
    assert [ax.get_title().split()[0] for ax in shown] == ["t=0", "t=10", "t=30", "t=60", "t=100"]
    assert [ax.get_subplotspec().rowspan.start for ax in shown] == [0, 0, 0, 1, 1]  # 3 + 2
    assert len(forward.axes) == 6 and not forward.axes[5].get_visible()
    fields = plot_score_fields(model, schedule, data, [2, 15, 40, 90])
    panels = [ax for ax in fields.axes if ax.get_title()]  # the colour bar has no title
    assert [ax.get_title().split()[0] for ax in panels] == ["t=2", "t=15", "t=40", "t=90"]
    assert [ax.get_subplotspec().rowspan.start for ax in panels] == [0, 0, 1, 1]  # 2 x 2
    assert len(fields.axes) == 5  # four panels and one colour bar shared by them
