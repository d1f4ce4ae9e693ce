"""Latent diffusion (LatentDiffusion in diffusion_edu.models.autoencoder, diffusion_edu.latent):
the config and the registry, encoding and decoding, training in the one loop with the
autoencoder frozen, checkpoints and resume, sample() and sdedit() returning pixels; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.latent import encode_dataset, encode_latents, latent_diffusion
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.models import (
    MODEL_CLASSES,
    build_model,
    config_from_dict,
    config_to_dict,
    decodes_latents,
    model_kind,
)
from diffusion_edu.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    LatentDiffusion,
    LatentDiffusionConfig,
    latent_scale_factor,
)
from diffusion_edu.models.dit import DiTConfig
from diffusion_edu.models.unet import UNetConfig
from diffusion_edu.samplers import sample, sample_steps, sdedit
from diffusion_edu.schedules import make_schedule
from diffusion_edu.training import DiffusionLoss

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

AE = AutoencoderConfig()
TINY_DIT = DiTConfig(
    image_size=7, in_channels=4, patch_size=1, hidden_size=32, depth=2, num_heads=2,
    num_classes=10,
)  # fmt: skip
TINY_UNET = UNetConfig(
    image_size=7, in_channels=4, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
    attention=False, groups=4, num_classes=10,
)  # fmt: skip
SCHEDULE = make_schedule("linear", T=100)


def _randomise_zero_layers(model: torch.nn.Module, std: float = 0.1) -> None:
    # adaLN-Zero (DiT) and the U-Net's zero output layer make a fresh denoiser output 0;
    # give those layers weights so that the sampler has something to follow.
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(std=std)


LatentSetup = tuple[LatentDiffusion, torch.Tensor, torch.Tensor]


def _latent_model(fake_digits, denoiser=TINY_DIT, seed: int = 0) -> LatentSetup:  # noqa: ANN001
    torch.manual_seed(seed)
    images, labels = fake_digits(32, seed)
    model = latent_diffusion(Autoencoder(AE), denoiser, images)
    return model, images, labels


# ----------------------------------------------------------------------------- config, registry
@pytest.mark.parametrize("denoiser", [TINY_DIT, TINY_UNET], ids=["dit", "unet"])
def test_config_round_trips_through_plain_data(denoiser) -> None:  # noqa: ANN001
    config = LatentDiffusionConfig(AE, denoiser, scale_factor=0.37)
    plain = config_to_dict(config)
    assert json.loads(json.dumps(plain)) == plain  # plain data only: lists, dicts, numbers
    assert plain["denoiser"]["kind"] == ("dit" if isinstance(denoiser, DiTConfig) else "unet")
    assert config_from_dict("latent", plain) == config
    model = build_model("latent", plain)
    assert isinstance(model, LatentDiffusion) and model.config == config


def test_latent_model_is_registered_and_reads_as_a_latent_model(fake_digits) -> None:  # noqa: ANN001
    model, _, _ = _latent_model(fake_digits)
    assert MODEL_CLASSES["latent"] is LatentDiffusion and model_kind(model) == "latent"
    assert MODEL_CLASSES["autoencoder"] is Autoencoder
    assert decodes_latents(model) and not decodes_latents(model.denoiser)
    assert model.latent_shape == (4, 7, 7) and model.image_shape == (1, 28, 28)
    assert model.prediction == "eps" and model.null_label == 10
    labels = torch.tensor([3, 4])
    assert torch.equal(model.null_condition(labels), torch.full_like(labels, 10))


def test_forward_is_the_denoiser_on_latents(fake_digits) -> None:  # noqa: ANN001
    model, _, labels = _latent_model(fake_digits)
    _randomise_zero_layers(model.denoiser)
    z_t, t = torch.randn(4, 4, 7, 7), torch.tensor([1, 10, 50, 100])
    assert_close(model(z_t, t, labels[:4]), model.denoiser(z_t, t, labels[:4]))


def test_encode_images_scales_and_decode_latents_unscales(fake_digits) -> None:  # noqa: ANN001
    model, images, _ = _latent_model(fake_digits)
    z = model.encode_images(images[:5])
    assert z.shape == (5, 4, 7, 7)
    assert_close(z, model.autoencoder.encode(images[:5]) * model.scale_factor)
    pixels = model.decode_latents(z)
    assert pixels.shape == (5, 1, 28, 28) and pixels.min() >= -1 and pixels.max() <= 1
    assert_close(pixels, model.autoencoder.decode(model.autoencoder.encode(images[:5])))


def test_scale_factor_makes_the_training_latents_unit_std(fake_digits) -> None:  # noqa: ANN001
    model, images, _ = _latent_model(fake_digits)
    raw = encode_latents(model.autoencoder, images)
    assert model.scale_factor == pytest.approx(latent_scale_factor(raw))
    assert float(encode_dataset(model, images).std()) == pytest.approx(1.0, abs=1e-4)


def test_latent_diffusion_copies_the_autoencoder_and_freezes_it(fake_digits) -> None:  # noqa: ANN001
    torch.manual_seed(1)
    autoencoder = Autoencoder(AE)
    images, _ = fake_digits(16)
    model = latent_diffusion(autoencoder, TINY_DIT, images)
    for name, value in autoencoder.state_dict().items():
        assert_close(model.autoencoder.state_dict()[name], value, rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.autoencoder.parameters())
    assert all(p.requires_grad for p in model.denoiser.parameters())
    assert all(p.requires_grad for p in autoencoder.parameters())  # the original is untouched


# ----------------------------------------------------------------------------- the one loop
def _trainer(model: LatentDiffusion, latents, labels, steps: int = 4) -> Trainer:  # noqa: ANN001
    config = TrainConfig(steps=steps, batch_size=8, lr=1e-3, warmup_steps=1, seed=3)
    return Trainer(model, DiffusionLoss(SCHEDULE), TensorBatches(latents, labels), config,
                   "cpu", verbose=False, progress=False)  # fmt: skip


@pytest.mark.parametrize("denoiser", [TINY_DIT, TINY_UNET], ids=["dit", "unet"])
def test_training_moves_the_denoiser_and_never_the_autoencoder(fake_digits, denoiser) -> None:  # noqa: ANN001
    model, images, labels = _latent_model(fake_digits, denoiser)
    autoencoder_before = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    denoiser_before = {k: v.clone() for k, v in model.denoiser.state_dict().items()}
    trainer = _trainer(model, encode_dataset(model, images), labels)
    losses = [r.loss for r in trainer.run()]
    assert len(losses) == 4 and all(0 < loss < 10 for loss in losses)
    for trained in (trainer.model, trainer.ema_model):
        for name, value in autoencoder_before.items():
            assert_close(trained.autoencoder.state_dict()[name], value, rtol=0, atol=0)
    after = model.denoiser.state_dict()
    moved = [k for k, v in denoiser_before.items() if not torch.equal(v, after[k])]
    assert moved, "the denoiser did not train"


def test_checkpoint_rebuilds_a_model_that_samples_the_same_pixels(tmp_path, fake_digits) -> None:  # noqa: ANN001
    model, images, labels = _latent_model(fake_digits)
    trainer = _trainer(model, encode_dataset(model, images), labels)
    list(trainer.run())
    checkpoint = load_checkpoint(trainer.save(tmp_path / "latent.pt"))
    assert checkpoint.model_kind == "latent" and checkpoint.model_config == model.config
    rebuilt = checkpoint.build_model(ema=True)
    assert isinstance(rebuilt, LatentDiffusion)
    assert not any(p.requires_grad for p in rebuilt.autoencoder.parameters())
    z_t, t = torch.randn(3, 4, 7, 7), torch.tensor([5, 50, 99])
    assert_close(rebuilt(z_t, t, labels[:3]), trainer.ema_model(z_t, t, labels[:3]), rtol=0, atol=0)
    kwargs = dict(labels=[0, 1, 2], sampler="ddim", steps=5, seed=0, progress=False)
    assert_close(sample(rebuilt, SCHEDULE, **kwargs), sample(trainer.ema_model, SCHEDULE, **kwargs))


def test_resume_gives_the_same_losses_and_weights(tmp_path: Path, fake_digits) -> None:  # noqa: ANN001
    model, images, labels = _latent_model(fake_digits)
    latents = encode_dataset(model, images)
    fresh = LatentDiffusion(model.config)
    fresh.load_state_dict(model.state_dict())  # the same start for both runs
    straight = _trainer(model, latents, labels, steps=4)
    want = [r.loss for r in straight.run()]

    first = _trainer(fresh, latents, labels, steps=4)
    got = [r.loss for r in first.run(steps=2)]
    first.save(tmp_path / "half.pt")
    checkpoint = load_checkpoint(tmp_path / "half.pt")
    second = _trainer(checkpoint.build_model(ema=False).train(), latents, labels, steps=4)
    second.load_state(checkpoint)
    got += [r.loss for r in second.run()]
    assert got == want  # bit for bit
    for name, value in straight.ema_model.state_dict().items():
        assert_close(second.ema_model.state_dict()[name], value, rtol=0, atol=0)


# ----------------------------------------------------------------------------- sampling
def test_sample_returns_pixels_in_range_and_is_seeded(fake_digits) -> None:  # noqa: ANN001
    model, _, _ = _latent_model(fake_digits)
    _randomise_zero_layers(model.denoiser, std=0.3)
    kwargs = dict(labels=[0, 1, 2, 3], sampler="ddim", steps=5, progress=False)
    images = sample(model, SCHEDULE, seed=0, **kwargs)
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    assert_close(sample(model, SCHEDULE, seed=0, **kwargs), images, rtol=0, atol=0)
    assert not torch.equal(sample(model, SCHEDULE, seed=1, **kwargs), images)
    guided = sample(model, SCHEDULE, seed=0, guidance=2.0, **kwargs)
    assert guided.shape == (4, 1, 28, 28) and not torch.equal(guided, images)


def test_sample_runs_unclipped_in_latent_space_then_decodes(fake_digits) -> None:  # noqa: ANN001
    model, _, labels = _latent_model(fake_digits)
    _randomise_zero_layers(model.denoiser, std=0.3)
    traj = sample(model, SCHEDULE, labels=labels[:4], sampler="ddim", steps=5, seed=0,
                  return_trajectory=True, progress=False)  # fmt: skip
    assert traj.xs.shape == (6, 4, 4, 7, 7) and traj.x0_hats.shape == (5, 4, 4, 7, 7)
    assert traj.images.shape == (4, 1, 28, 28)
    assert traj.x0_hats.abs().max() > 1  # latents are not clipped to [-1, 1]...
    assert_close(traj.images, model.decode_latents(traj.xs[-1]))  # ...the pixels come from them
    # the same run by hand: the sampling loop without clipping, from the same noise
    x_T = torch.randn((4, 4, 7, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        run = sample_steps(model.eval(), SCHEDULE, x_T, labels[:4], "ddim", 5, clip_x0=False)
        assert_close(traj.images, model.decode_latents(list(run)[-1].x_prev))


def test_sdedit_works_on_the_latents_of_the_guides(fake_digits) -> None:  # noqa: ANN001
    model, images, labels = _latent_model(fake_digits)
    _randomise_zero_layers(model.denoiser, std=0.3)
    out = sdedit(model, SCHEDULE, images[:3], t_start=40, labels=labels[:3], steps=4, seed=0)
    assert out.shape == (3, 1, 28, 28) and out.min() >= -1 and out.max() <= 1
    assert_close(sdedit(model, SCHEDULE, images[:3], 40, labels[:3], steps=4, seed=0), out)
    # nothing to undo at t_start = 0: the guides themselves come back
    assert_close(sdedit(model, SCHEDULE, images[:3], 0, labels[:3]), images[:3])


# ----------------------------------------------------------------------------- bad input
def test_diffusion_loss_refuses_pixels_or_unscaled_latents(fake_digits) -> None:  # noqa: ANN001
    model, images, labels = _latent_model(fake_digits)
    with pytest.raises(ValueError, match=r"latents of shape \(N, 4, 7, 7\).*encode_dataset"):
        _trainer(model, images, labels)
    unscaled = encode_dataset(model, images) * 10  # as if the scale factor were forgotten
    with pytest.raises(ValueError, match="standard deviation is .*encode_dataset"):
        _trainer(model, unscaled, labels)


def test_training_a_latent_model_on_a_schedule_without_signal_at_T_warns(fake_digits) -> None:  # noqa: ANN001
    model, images, labels = _latent_model(fake_digits)
    latents = encode_dataset(model, images)
    config = TrainConfig(steps=1, batch_size=2)
    cosine = make_schedule("cosine", T=100)  # alpha_bar_T = 2.4e-7
    with pytest.warns(UserWarning, match="alpha_bar_T = 2.4e-07.*make_schedule\\('linear'\\)"):
        Trainer(model, DiffusionLoss(cosine), TensorBatches(latents, labels), config, "cpu",
                verbose=False)  # fmt: skip


def test_pixel_models_still_refuse_data_off_the_pixel_range(tiny_unet) -> None:  # noqa: ANN001
    config = TrainConfig(steps=1, batch_size=2)
    data = TensorBatches(torch.full((4, 1, 28, 28), 3.0), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pixels in \[-1, 1\]"):
        Trainer(tiny_unet(), DiffusionLoss(SCHEDULE), data, config, "cpu", verbose=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"denoiser": DiTConfig(image_size=28, in_channels=1)}, "in_channels=4 and image_size=7"),
        ({"denoiser": AE}, "denoiser must be a UNetConfig or a DiTConfig"),
        ({"autoencoder": TINY_DIT}, "autoencoder must be an AutoencoderConfig"),
        ({"scale_factor": 0.0}, "scale_factor must be a positive number"),
        ({"scale_factor": float("inf")}, "scale_factor must be finite"),
    ],
)
def test_bad_latent_config_says_what_to_do(changes: dict, message: str) -> None:
    values = dict(autoencoder=AE, denoiser=TINY_DIT, scale_factor=1.0) | changes
    with pytest.raises(ValueError, match=message):
        LatentDiffusionConfig(**values)


def test_latent_model_refuses_wrong_shapes(fake_digits) -> None:  # noqa: ANN001
    model, _, _ = _latent_model(fake_digits)
    with pytest.raises(ValueError, match=r"\(B, 4, 7, 7\)"):
        model(torch.zeros(2, 1, 28, 28), 5)  # pixels where latents belong
    with pytest.raises(ValueError, match=r"shape \(B, 1, 28, 28\)"):
        model.encode_images(torch.zeros(2, 4, 7, 7))
    with pytest.raises(ValueError, match=r"latents of shape \(B, 4, 7, 7\)"):
        model.decode_latents(torch.zeros(2, 1, 28, 28))
    with pytest.raises(TypeError, match="LatentDiffusion"):
        encode_dataset(model.autoencoder, torch.zeros(2, 1, 28, 28))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- signal share
@pytest.mark.parametrize("data_std", [0.5, 1.0, 1.84])
@pytest.mark.parametrize("t", [1, 250, 600, 1000])
def test_signal_share_matches_the_variance_of_q_sample_on_data_of_that_spread(
    t: int, data_std: float
) -> None:
    """Var(sqrt(alpha_bar_t) x_0) / Var(x_t) from q_sample itself (so the same t convention):
    a wrong square root or alpha_bars[t - 1] would miss it."""
    from diffusion_edu.forward import q_sample
    from diffusion_edu.latent import signal_share

    schedule = make_schedule("linear")
    g = torch.Generator().manual_seed(t)
    x0 = torch.randn(200_000, generator=g, dtype=torch.float64) * data_std
    eps = torch.randn(200_000, generator=g, dtype=torch.float64)
    x_t = q_sample(x0, t, schedule, eps)
    noise_part = x_t - q_sample(x0, t, schedule, torch.zeros_like(eps))
    measured = 1 - float(noise_part.var() / x_t.var())
    assert signal_share(schedule, t, data_std) == pytest.approx(measured, abs=0.01)
    if data_std == 1.0:
        assert signal_share(schedule, t) == pytest.approx(float(schedule.alpha_bars[t]))


def test_signal_share_refuses_a_step_outside_the_schedule_and_a_bad_spread() -> None:
    from diffusion_edu.latent import signal_share

    schedule = make_schedule("linear")
    with pytest.raises(ValueError, match=r"t must be in 0\.\.1000"):
        signal_share(schedule, 1001)
    with pytest.raises(ValueError, match="data_std must be > 0"):
        signal_share(schedule, 10, 0.0)
