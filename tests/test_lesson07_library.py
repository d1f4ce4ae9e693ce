"""Lesson 07's library pieces: the Min-SNR exercise, the measured recipes, the training views."""

from __future__ import annotations

import dataclasses

import matplotlib
import pytest
import torch

from diffusion_edu import NoiseSchedule, TrainConfig, Trainer, UNet, min_snr_weight
from diffusion_edu.cli import build_parser
from diffusion_edu.exercises.lesson07 import check_min_snr_weight, solution_min_snr_weight
from diffusion_edu.recipes import MODEL_SIZES, QUICK_STEPS, RECIPES, digits_recipe
from diffusion_edu.viz.training_viz import (
    TrainingMonitor,
    plot_min_snr_weights,
    plot_nearest_training_digits,
)

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ----------------------------------------------------------------------------- exercise
def test_min_snr_solution_passes_and_is_1_for_noisy_images() -> None:
    assert check_min_snr_weight(solution_min_snr_weight).ok
    snr = torch.tensor([0.01, 1.0, 5.0, 50.0, 5000.0])
    torch.testing.assert_close(min_snr_weight(snr, 5.0), torch.tensor([1, 1, 1, 0.1, 0.001]))


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda snr, g: snr.clamp(max=g), "divide it by SNR"),
        (lambda snr, g: snr.clamp(min=g) / snr, "max instead of min"),
        (lambda snr, g: snr / snr.clamp(max=g), "upside down"),
        (lambda snr, g: snr.clamp(max=g) / g, "you divided by gamma"),
        (lambda snr, g: None, "return"),
        (lambda snr, g: snr[:3], "shape"),
    ],
)
def test_min_snr_checker_names_the_mistake(wrong, hint: str) -> None:  # noqa: ANN001
    result = check_min_snr_weight(wrong)
    assert not result.ok and hint in result.message


# ----------------------------------------------------------------------------- recipes
def test_recipe_commands_parse_back_to_the_same_training_settings() -> None:
    """The CLI command a recipe prints trains exactly what the notebook trains."""
    for recipe in RECIPES.values():
        args = build_parser().parse_args(recipe.cli_command().split()[3:])
        c = recipe.train_config
        assert (args.steps, args.batch_size, args.lr, args.min_snr_gamma) == (
            c.steps, c.batch_size, c.lr, c.min_snr_gamma)  # fmt: skip
        assert (args.warmup_steps, args.ema_decay, args.label_dropout, args.seed) == (
            c.warmup_steps, c.ema_decay, c.label_dropout, c.seed)  # fmt: skip
        assert args.schedule == recipe.schedule
        size = dataclasses.replace(MODEL_SIZES[args.model_size], num_classes=10)
        assert size == recipe.model_config


def test_the_shipped_model_was_trained_with_the_pretrained_recipe() -> None:
    from diffusion_edu import pretrained_info

    def settings(command: str) -> dict[str, object]:
        args = vars(build_parser().parse_args(command.split()[3:]))
        return {k: v for k, v in args.items() if k not in ("out", "checkpoint_every")}

    shipped = pretrained_info("mnist").command
    assert settings(shipped) == settings(RECIPES["pretrained"].cli_command())


def test_recipe_choice_is_said_aloud_and_quick_mode_cuts_the_steps() -> None:
    recipe, why = digits_recipe("cpu", quick=False)
    assert recipe.name == "five_minutes" and "CPU" in why and "1,500 steps" in why
    quick, why = digits_recipe("cpu", quick=True)
    assert quick.train_config.steps == QUICK_STEPS and "Quick mode" in why
    assert quick.model_config == recipe.model_config  # same model, fewer steps


# ----------------------------------------------------------------------------- views
def _tiny_trainer(steps: int) -> Trainer:
    torch.manual_seed(0)
    model = UNet(dataclasses.replace(MODEL_SIZES["tiny"], num_classes=10))
    images = torch.rand(32, 1, 28, 28) * 2 - 1
    labels = torch.arange(32) % 10
    config = TrainConfig(steps=steps, batch_size=8, precision="fp32", warmup_steps=1)
    return Trainer(model, NoiseSchedule.linear(T=50), images, labels, config, "cpu",
                   verbose=False, progress=False)  # fmt: skip


def test_training_monitor_snapshots_every_k_steps_and_at_the_end() -> None:
    trainer = _tiny_trainer(steps=5)
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


def test_a_cpu_without_bf16_is_warned_that_training_takes_longer(monkeypatch) -> None:
    monkeypatch.setattr("diffusion_edu.recipes.autocast_dtype", lambda device: None)
    _, why = digits_recipe("cpu", quick=False)
    assert "float32" in why and "USE_PRETRAINED" in why
    monkeypatch.setattr("diffusion_edu.recipes.autocast_dtype", lambda device: torch.bfloat16)
    assert "float32" not in digits_recipe("cpu", quick=False)[1]


def test_show_images_draws_minus_one_as_black_and_plus_one_as_white() -> None:
    from diffusion_edu.viz.plots import show_images

    images = torch.full((4, 1, 28, 28), -1.0)
    images[:, :, 10:18, 10:18] = 1.0  # a white square on black
    for kwargs in ({}, {"labels": ["a", "b", "c", "d"]}):
        fig = show_images(images, nrow=4, **kwargs)
        shown = torch.as_tensor(fig.axes[0].get_images()[0].get_array())
        assert shown[3:7, 3:7].max() == 0.0  # background: black (0), not grey
        assert shown.max() == 1.0
