"""Lesson 07's pictures (diffusion_edu.viz.training_viz): the live monitor, Min-SNR, copies."""

from __future__ import annotations

import pytest
import torch
from matplotlib.text import Text

from diffusion_edu import DiffusionLoss, NoiseSchedule, TensorBatches, TrainConfig, Trainer
from diffusion_edu.training import min_snr_weight
from diffusion_edu.viz.training_viz import (
    TrainingMonitor,
    plot_min_snr_weights,
    plot_nearest_training_digits,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _tiny_trainer(make_unet, steps: int) -> Trainer:  # noqa: ANN001
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    config = TrainConfig(steps=steps, batch_size=8, precision="fp32", warmup_steps=1)
    return Trainer(make_unet(), DiffusionLoss(NoiseSchedule.linear(T=50)),
                   TensorBatches(images, labels), config, "cpu", verbose=False,
                   progress=False)  # fmt: skip


def test_training_monitor_snapshots_every_k_steps_and_at_the_end(tiny_unet) -> None:  # noqa: ANN001
    trainer = _tiny_trainer(tiny_unet, steps=5)
    monitor = TrainingMonitor(trainer, every=2, sample_steps=2)
    for record in trainer.run():
        monitor(record)
    assert [step for step, _ in monitor.snapshots] == [2, 4, 5]
    assert all(images.shape == (10, 1, 28, 28) for _, images in monitor.snapshots)
    fig = monitor.figure()
    titles = [ax.get_title() for ax in fig.axes]
    assert "Training loss" in titles and any("Digits 0-9" in t for t in titles)
    with pytest.raises(ValueError, match="every"):
        TrainingMonitor(trainer, every=0)


def test_training_monitor_takes_six_snapshots_however_many_steps_fit(tiny_unet) -> None:  # noqa: ANN001
    trainer = _tiny_trainer(tiny_unet, steps=30)
    monitor = TrainingMonitor(trainer, sample_steps=1)  # every=None: total_steps // 6
    for record in trainer.run():
        monitor(record)
    assert [step for step, _ in monitor.snapshots] == [5, 10, 15, 20, 25, 30]


def test_min_snr_picture_marks_the_down_weighted_timesteps() -> None:
    schedule = NoiseSchedule.cosine()
    fig = plot_min_snr_weights(schedule, gamma=5.0)
    weight_line = fig.axes[1].get_lines()[0]
    torch.testing.assert_close(
        torch.as_tensor(weight_line.get_ydata()), min_snr_weight(schedule.snr[1:], 5.0)
    )
    crossing = int((schedule.snr[1:] > 5.0).sum())
    assert any(f"t <= {crossing}" in text.get_text() for text in fig.axes[1].texts)


def test_nearest_training_digits_finds_an_exact_copy() -> None:
    train = torch.rand(20, 1, 28, 28) * 2 - 1
    samples = torch.cat([train[7:8], torch.rand(2, 1, 28, 28) * 2 - 1])  # first: a copy
    fig = plot_nearest_training_digits(samples, train, n=3)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0] == "0.0" and float(labels[1]) > 1.0


def test_training_monitor_takes_six_snapshots_when_the_steps_do_not_divide_by_six(
    tiny_unet,
) -> None:  # noqa: ANN001
    trainer = _tiny_trainer(tiny_unet, steps=32)
    monitor = TrainingMonitor(trainer, sample_steps=1)
    for record in trainer.run():
        monitor(record)
    assert [step for step, _ in monitor.snapshots] == [6, 12, 18, 24, 30, 32]


def test_lesson_figures_fit_jupyterlabs_width_with_legible_text(shown_png_width) -> None:
    # JupyterLab's output area is ~934 px wide at a laptop's width; a wider PNG is shrunk, its
    # text with it. Lesson 07's sizes: the full 1,000-step schedule, ten sample/copy pairs.
    train = torch.rand(20, 1, 28, 28) * 2 - 1
    figures = {
        "plot_min_snr_weights": plot_min_snr_weights(NoiseSchedule.cosine(), gamma=5.0),
        "plot_nearest_training_digits": plot_nearest_training_digits(train[:10], train, n=10),
    }
    for name, fig in figures.items():
        assert fig.get_figwidth() <= 9.6, f"{name}: {fig.get_figwidth():.1f} in wide"
        assert shown_png_width(fig) <= 1000, f"{name}: {shown_png_width(fig)} px wide"
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
        assert min(sizes) >= 8, f"{name}: a {min(sizes)} pt text"
