"""Measured recipes (diffusion_edu.recipes): CLI lines that parse back, the shipped model's
recipe, the choice said aloud, and the steps-vs-quality table behind a time budget's plan."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion_edu import pretrained_info
from diffusion_edu.cli import build_parser
from diffusion_edu.recipes import (
    MODEL_SIZES,
    QUICK_STEPS,
    RECIPES,
    STEPS_VS_QUALITY,
    TWO_MINUTE_BUDGET,
    digits_recipe,
    expectation_for,
    expected_quality,
)


def test_recipe_commands_parse_back_to_the_same_training_settings() -> None:
    """The CLI command a recipe prints trains exactly what the notebook trains."""
    label_recipes = [r for r in RECIPES.values() if r.model_config.num_classes is not None]
    assert len(label_recipes) == len(RECIPES) - 1  # all but lesson 09's text recipe
    for recipe in label_recipes:
        args = build_parser().parse_args(recipe.cli_command().split()[3:])
        c = recipe.train_config
        assert (args.steps, args.minutes, args.batch_size, args.lr) == (
            c.steps, c.minutes, c.batch_size, c.lr)  # fmt: skip
        assert (args.warmup_steps, args.ema_decay, args.seed) == (
            c.warmup_steps, c.ema_decay, c.seed)  # fmt: skip
        assert (args.min_snr_gamma, args.label_dropout) == (
            recipe.min_snr_gamma, recipe.cond_dropout)  # fmt: skip
        assert args.schedule == recipe.schedule
        size = dataclasses.replace(MODEL_SIZES[args.model_size], num_classes=10)
        assert size == recipe.model_config


def test_the_shipped_model_was_trained_with_the_pretrained_recipe() -> None:
    def settings(command: str) -> dict[str, object]:
        args = vars(build_parser().parse_args(command.split()[3:]))
        return {k: v for k, v in args.items() if k not in ("out", "checkpoint_every")}

    shipped = pretrained_info("mnist").command
    assert settings(shipped) == settings(RECIPES["pretrained"].cli_command())


def test_the_shipped_text_model_was_trained_with_the_text_recipe() -> None:
    import torch

    from diffusion_edu.checkpoints import load_checkpoint
    from diffusion_edu.recipes import text_trainer

    recipe = RECIPES["text"]
    shipped = load_checkpoint(pretrained_info("mnist-text").weights)
    assert shipped.model_config == recipe.model_config
    assert shipped.train_config == recipe.train_config.to_dict()
    assert shipped.loss == recipe.loss().to_dict()
    assert shipped.step == recipe.train_config.steps
    # the trainer the script and lesson 09 use: captioned digits, a text model, seeded weights
    trainer = text_trainer(verbose=False, progress=False)
    images, tokens = trainer.data.tensors
    assert images.shape[0] == tokens.shape[0] == 4 * (4500 - 105)
    assert tokens.dtype == torch.long and tokens.shape[1] == recipe.model_config.text_length
    again = text_trainer(verbose=False, progress=False)
    assert all(
        torch.equal(a, b)
        for a, b in zip(trainer.model.parameters(), again.model.parameters(), strict=True)
    )
    with pytest.raises(ValueError, match="no --model-size preset"):
        recipe.cli_command()  # the command line trains label models; the script trains this


def test_recipe_choice_is_said_aloud_and_quick_mode_cuts_the_steps() -> None:
    recipe, why = digits_recipe("cpu", quick=False)
    assert recipe.name == "two_minutes" and "CPU" in why and "2,000 steps" in why
    assert recipe.train_config.minutes == TWO_MINUTE_BUDGET
    quick, why = digits_recipe("cpu", quick=True)
    assert quick.train_config.steps == QUICK_STEPS and "Quick mode" in why
    assert quick.train_config.minutes is None  # a few steps: nothing to fit
    assert quick.model_config == recipe.model_config  # same model, fewer steps


def test_a_cpu_without_bf16_is_warned_that_training_takes_longer(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("diffusion_edu.recipes.autocast_dtype", lambda device: None)
    _, why = digits_recipe("cpu", quick=False)
    assert "float32" in why and "USE_PRETRAINED" in why and "fewer steps" in why
    monkeypatch.setattr("diffusion_edu.recipes.autocast_dtype", lambda device: torch.bfloat16)
    assert "float32" not in digits_recipe("cpu", quick=False)[1]


def test_expected_quality_quotes_the_measured_rows_around_the_planned_steps() -> None:
    steps = sorted(STEPS_VS_QUALITY)
    assert steps == sorted(set(steps)) and len(steps) >= 4
    agreements = [STEPS_VS_QUALITY[s][0] for s in steps]
    assert agreements == sorted(agreements)  # longer training never measured worse
    low, high = steps[1], steps[2]
    middle = expected_quality((low + high) // 2)
    for s in (low, high):
        assert f"{STEPS_VS_QUALITY[s][0]:.1%} after {s:,} steps" in middle
    exact = expected_quality(high)
    assert f"after {high:,} steps" in exact and f"after {low:,} steps" not in exact
    assert f"after {steps[0]:,} steps" in expected_quality(steps[0] // 2)  # below the table
    assert f"after {steps[-1]:,} steps" in expected_quality(10 * steps[-1])  # above it
    recipe = RECIPES["five_minutes"]
    assert recipe.train_config.steps in STEPS_VS_QUALITY  # the table covers the whole recipe


def test_the_table_speaks_only_for_the_five_minute_recipe() -> None:
    five = RECIPES["five_minutes"]
    other_length = dataclasses.replace(five.train_config, steps=700, minutes=None, seed=3)
    assert expectation_for(five.model_config, five.loss(), other_length) is expected_quality
    faster = dataclasses.replace(five.train_config, lr=1e-3)
    assert expectation_for(five.model_config, five.loss(), faster) is None
    plain_loss = dataclasses.replace(five.loss(), min_snr_gamma=0.0)
    assert expectation_for(five.model_config, plain_loss, five.train_config) is None
    bigger = dataclasses.replace(five.model_config, base_channels=32)
    assert expectation_for(bigger, five.loss(), five.train_config) is None


def test_dit_presets_have_the_documented_sizes() -> None:
    """recipes.DIT_SIZES' comments (and ``train --help``) state the parameter counts; "small"
    is the DiT of about the small U-Net's size, for a same-size comparison (lesson 10)."""
    from diffusion_edu.models import DiT, UNet, count_parameters
    from diffusion_edu.recipes import DIT_SIZES, SMALL_UNET

    documented = {"tiny": 12e3, "small": 0.22e6, "default": 0.47e6, "large": 2.4e6}
    for name, config in DIT_SIZES.items():
        n = count_parameters(DiT(dataclasses.replace(config, num_classes=10)))
        assert abs(n - documented[name]) <= 0.05 * documented[name], (name, n)
    small_dit = count_parameters(DiT(dataclasses.replace(DIT_SIZES["small"], num_classes=10)))
    assert 0.9 <= small_dit / count_parameters(UNet(SMALL_UNET)) <= 1.2


def test_the_fast_preset_reads_2x2_patches_and_has_the_documented_size() -> None:
    """MODEL_SIZES["fast"]: about the small U-Net's parameters (0.2M), no full-resolution
    level; the two-minute recipe trains it (docs/performance.md)."""
    from diffusion_edu.models import UNet, count_parameters
    from diffusion_edu.recipes import FAST_UNET, SMALL_UNET

    assert FAST_UNET.patch_size == 2 and not FAST_UNET.attention
    assert count_parameters(UNet(FAST_UNET)) == 202_276
    assert 0.95 <= count_parameters(UNet(FAST_UNET)) / count_parameters(UNet(SMALL_UNET)) <= 1.05
    assert RECIPES["two_minutes"].model_config == FAST_UNET


def test_the_patched_preset_is_bigger_but_reads_2x2_patches() -> None:
    """MODEL_SIZES["patched"]: 1.75M parameters (8.7x the small U-Net) on 2 x 2 patches, with
    attention at 7x7; the larger network tried for issue 12 (docs/performance.md)."""
    from diffusion_edu.models import UNet, count_parameters

    config = dataclasses.replace(MODEL_SIZES["patched"], num_classes=10)
    assert config.patch_size == 2 and config.attention and config.num_res_blocks == 2
    assert count_parameters(UNet(config)) == 1_748_068
    x = torch.randn(3, 1, 28, 28)
    out = UNet(config)(x, torch.tensor([1, 500, 999]), torch.tensor([0, 4, 10]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_the_two_minute_record_measured_this_recipe_and_meets_the_goal() -> None:
    """data/results/two_minutes.json (scripts/measure_two_minutes.py): two cold-start runs of
    the recipe's own command, each >= 95% class agreement, Frechet distance <= 2x the floor, and
    at most 3 minutes wall. A changed recipe must be measured again."""
    import json

    from script_modules import load_script

    from diffusion_edu.data import repo_data_dir

    measure = load_script("measure_two_minutes")
    record = json.loads((repo_data_dir() / measure.RESULTS_FILE).read_text())
    recipe = RECIPES["two_minutes"]
    assert record["recipe"] == recipe.name and record["command"] == recipe.cli_command()
    assert str(dict(recipe.sampling)) in record["evaluated_on"]
    assert "native bfloat16: no" in record["machine"]  # the slower kind of CPU
    floor = record["frechet_floor_same_n"]
    assert len(record["runs"]) >= 2
    for run in record["runs"]:
        assert measure.meets_goal(run, floor) and run["meets_goal"], run
        assert run["steps"] <= recipe.train_config.steps
        assert run["frechet_distance"] == pytest.approx(run["frechet_vs_floor"] * floor, rel=0.01)


def test_the_goal_check_refuses_a_run_that_misses_any_part() -> None:
    from script_modules import load_script

    meets_goal = load_script("measure_two_minutes").meets_goal
    good = {"class_agreement": 0.96, "frechet_distance": 0.5, "wall_minutes": 2.9}
    assert meets_goal(good, floor=0.29)
    assert not meets_goal({**good, "class_agreement": 0.94}, floor=0.29)
    assert not meets_goal({**good, "frechet_distance": 0.59}, floor=0.29)  # > 2 x 0.29
    assert not meets_goal({**good, "wall_minutes": 3.1}, floor=0.29)


def test_a_run_with_a_recipes_settings_is_that_recipe_and_gets_its_sampling() -> None:
    from diffusion_edu.recipes import recipe_for

    two = RECIPES["two_minutes"]
    longer = dataclasses.replace(two.train_config, steps=5000, minutes=None, seed=7)
    assert recipe_for(two.model_config, two.loss(), longer) is two
    assert recipe_for(two.model_config, two.loss(), dataclasses.replace(longer, lr=1e-3)) is None
    five = RECIPES["five_minutes"]
    assert recipe_for(five.model_config, five.loss(), five.train_config) is five
    assert expectation_for(two.model_config, two.loss(), two.train_config) is None  # no table
    command = two.sample_command(out="runs/two")
    assert command == (
        "python -m diffusion_edu sample --checkpoint runs/two/checkpoint.pt --sampler ddim "
        "--steps 50 --eta 1 --guidance 2 --out runs/two/samples.png"
    )
    args = build_parser().parse_args(command.split()[3:])
    assert (args.sampler, args.steps, args.eta, args.guidance) == ("ddim", 50, 1.0, 2.0)
    # a recipe without its own sampling setting samples like the shipped model
    assert five.sampling_settings() == pretrained_info("mnist").recommended
