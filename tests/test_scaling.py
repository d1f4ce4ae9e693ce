"""diffusion_edu.scaling: one line of lesson 10's quality-against-compute figure.

A small untrained latent model stands in for the shipped one, so the runs take seconds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion_edu.data import load_mnist
from diffusion_edu.latent import encode_latents
from diffusion_edu.models import (
    Autoencoder,
    AutoencoderConfig,
    DiTConfig,
    LatentDiffusion,
    LatentDiffusionConfig,
    UNet,
    UNetConfig,
    forward_flops,
    latent_scale_factor,
)
from diffusion_edu.scaling import ScalingPoint, ScalingRun, ScalingSettings, training_gflops
from diffusion_edu.schedules import make_schedule

TINY_DIT = DiTConfig(image_size=7, in_channels=4, patch_size=1, hidden_size=16, depth=1,
                     num_heads=2, num_classes=10)  # fmt: skip
SETTINGS = ScalingSettings(batch_size=8, per_class=1, sampler_steps=3, warmup_steps=2)


@pytest.fixture(scope="module")
def latent_model(digits) -> LatentDiffusion:
    """An untrained autoencoder, with its latents' scale factor (as a shipped model has)."""
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig()).eval()
    scale = latent_scale_factor(encode_latents(ae, digits[0]))
    model = LatentDiffusion(LatentDiffusionConfig(ae.config, TINY_DIT, scale_factor=scale))
    model.autoencoder.load_state_dict(ae.state_dict())
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    train = load_mnist("train", verbose=False)
    pick = torch.arange(0, len(train.images), 150)  # 30 digits, every class
    return train.images[pick], train.labels[pick], load_mnist("test", verbose=False).images[:50]


def _run(latent_model, digits, config=TINY_DIT, settings=SETTINGS) -> ScalingRun:
    images, labels, heldout = digits
    return ScalingRun(config, latent_model, images, labels, heldout, make_schedule("linear"),
                      settings, desc="test")  # fmt: skip


def test_training_gflops_is_three_forward_passes_per_example() -> None:
    assert training_gflops(2_000_000, 128, 1000) == pytest.approx(3 * 2e6 * 128 * 1000 / 1e9)
    assert training_gflops(10, 1, 0) == 0.0
    with pytest.raises(ValueError, match="batch_size > 0"):
        training_gflops(10, 0, 5)


def test_a_run_scores_each_milestone_with_its_compute(latent_model, digits) -> None:
    run = _run(latent_model, digits)
    assert run.forward_flops == forward_flops(run.model.denoiser)
    points = list(run.measure([4, 2], progress=False))  # any order: measured increasing
    assert [p.steps for p in points] == [2, 4]
    assert run.trainer is not None and run.trainer.step == 4
    for p in points:
        assert isinstance(p, ScalingPoint)
        assert p.training_gflops == pytest.approx(
            training_gflops(run.forward_flops, SETTINGS.batch_size, p.steps), abs=0.01
        )
        assert 0.0 <= p.class_agreement <= 1.0 and 0.0 <= p.class_agreement_guided <= 1.0
        assert p.frechet_distance > 0 and p.seconds_per_image > 0
    assert points[1].training_seconds >= points[0].training_seconds
    assert set(points[0].to_dict()) == {f.name for f in dataclasses.fields(ScalingPoint)}


def test_the_autoencoder_stays_frozen_and_the_denoiser_learns(latent_model, digits) -> None:
    run = _run(latent_model, digits)
    before_ae = {k: v.clone() for k, v in run.model.autoencoder.state_dict().items()}
    before_dn = {k: v.clone() for k, v in run.model.denoiser.state_dict().items()}
    list(run.measure([3], progress=False))
    for k, v in run.model.autoencoder.state_dict().items():
        torch.testing.assert_close(v, before_ae[k])
    # the shipped model's autoencoder is copied, never trained in place
    for k, v in latent_model.autoencoder.state_dict().items():
        torch.testing.assert_close(v, before_ae[k])
    assert any(not torch.equal(v, before_dn[k]) for k, v in run.model.denoiser.state_dict().items())
    assert run.model.scale_factor == pytest.approx(latent_model.scale_factor)


def test_the_same_seed_gives_the_same_point(latent_model, digits) -> None:
    """What lesson 10 relies on when it recomputes a point of the shipped record."""
    a = list(_run(latent_model, digits).measure([3], progress=False))[0]
    b = list(_run(latent_model, digits).measure([3], progress=False))[0]
    assert (a.class_agreement, a.frechet_distance, a.frechet_distance_guided) == (
        b.class_agreement, b.frechet_distance, b.frechet_distance_guided,
    )  # fmt: skip


def test_a_unet_denoiser_runs_too(latent_model, digits) -> None:
    unet = UNetConfig(image_size=7, in_channels=4, base_channels=8, channel_mults=(1, 2),
                      num_res_blocks=1, attention=False, num_classes=10)  # fmt: skip
    run = _run(latent_model, digits, config=unet)
    assert isinstance(run.model.denoiser, UNet)
    assert [p.steps for p in run.measure([1], progress=False)] == [1]


def test_bad_input_gets_a_clear_error(latent_model, digits) -> None:
    images, labels, heldout = digits
    with pytest.raises(TypeError, match="load_pretrained\\('mnist-latent'\\)"):
        ScalingRun(TINY_DIT, UNet(UNetConfig(image_size=7, in_channels=4)), images, labels,
                   heldout, make_schedule("linear"))  # fmt: skip
    with pytest.raises(ValueError, match="num_classes=10"):
        _run(latent_model, digits, config=dataclasses.replace(TINY_DIT, num_classes=None))
    run = _run(latent_model, digits)
    with pytest.raises(ValueError, match="positive step counts"):
        next(run.measure([0, 2]))
    list(run.measure([1], progress=False))
    with pytest.raises(RuntimeError, match="make a new one"):
        next(run.measure([2]))
