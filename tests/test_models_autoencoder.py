"""The autoencoder (diffusion_edu.models.autoencoder) and its training (diffusion_edu.latent):
shapes, the KL term, the scale factor, learning through the one loop, the reconstruction of
held-out digits against a bound; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.data import load_mnist
from diffusion_edu.latent import (
    AutoencoderLoss,
    encode_latents,
    psnr,
    reconstruction_mse,
    train_autoencoder,
)
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.metrics import class_agreement
from diffusion_edu.models import build_model, config_to_dict, count_parameters, model_kind
from diffusion_edu.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    kl_divergence,
    latent_scale_factor,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SMALL = AutoencoderConfig()  # the default: 14,097 parameters


def _digits(split: str = "train"):  # noqa: ANN202
    return load_mnist(split, verbose=False)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    ("image_size", "in_channels", "latent_channels", "kl_weight"),
    [(28, 1, 4, 1e-6), (28, 1, 2, 0.0), (16, 3, 8, 1e-4), (4, 1, 1, 0.0)],
)
def test_encode_and_decode_shapes(
    image_size: int, in_channels: int, latent_channels: int, kl_weight: float
) -> None:
    config = AutoencoderConfig(image_size, in_channels, latent_channels, 8, kl_weight)
    model = Autoencoder(config)
    x = torch.rand(3, in_channels, image_size, image_size) * 2 - 1
    z = model.encode(x)
    assert z.shape == (3, latent_channels, image_size // 4, image_size // 4)
    assert model.latent_shape == tuple(z.shape[1:])
    assert model.decode(z).shape == x.shape
    out = model(x, torch.randn_like(z))
    assert out.images.shape == x.shape and out.mean.shape == z.shape
    assert (out.logvar is None) == (kl_weight == 0)


def test_default_autoencoder_is_small_and_maps_28x28_to_7x7x4() -> None:
    model = Autoencoder()
    assert model.latent_shape == (4, 7, 7)
    assert count_parameters(model) == 14_097  # the number in AutoencoderConfig's docstring
    assert count_parameters(model) * 4 < 1e6  # float32 weights well under a megabyte


def test_encode_is_the_deterministic_mean_and_noise_moves_the_training_pass() -> None:
    torch.manual_seed(0)
    model = Autoencoder(SMALL)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    mean, logvar = model.encode_distribution(x)
    assert_close(model.encode(x), mean)
    assert_close(model.encode(x), model.encode(x))
    assert_close(model(x).images, model.decoder(mean))  # no noise: decoded from the mean
    noisy = model(x, torch.ones_like(mean)).images
    assert_close(noisy, model.decoder(mean + (0.5 * logvar).exp()))


def test_decode_clamps_to_the_pixel_range() -> None:
    model = Autoencoder(SMALL)
    with torch.no_grad():
        model.decoder[-1].bias.fill_(5.0)  # push every pixel far above 1
    images = model.decode(torch.zeros(2, 4, 7, 7))
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert_close(images, torch.ones_like(images))


# ----------------------------------------------------------------------------- the KL term
def test_kl_divergence_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 7, 7, generator=g), torch.randn(3, 4, 7, 7, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(dim=1)
    assert_close(kl_divergence(mean, logvar), expected)
    assert_close(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_loss_is_the_pixel_mse_plus_the_weighted_kl_per_pixel() -> None:
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(base_channels=8, kl_weight=0.5))
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    loss = AutoencoderLoss()(model, (x,), torch.Generator().manual_seed(3))
    noise = torch.randn(4, 4, 7, 7, generator=torch.Generator().manual_seed(3))
    out = model(x, noise)
    mse = (out.images - x).square().mean()
    kl = kl_divergence(out.mean, out.logvar).mean()
    assert_close(loss, mse + 0.5 * kl / 784)
    plain = Autoencoder(AutoencoderConfig(base_channels=8, kl_weight=0.0))
    plain_loss = AutoencoderLoss()(plain, (x,), torch.Generator())
    assert_close(plain_loss, (plain(x).images - x).square().mean())


# ----------------------------------------------------------------------------- scale factor
def test_scale_factor_is_one_over_the_std_of_all_latent_values() -> None:
    g = torch.Generator().manual_seed(0)
    latents = 3.0 + 0.25 * torch.randn(400, 4, 7, 7, generator=g)
    factor = latent_scale_factor(latents)
    assert factor == pytest.approx(1 / float(latents.double().flatten().std()), rel=1e-12)
    assert factor == pytest.approx(4.0, rel=0.01)  # 1 / 0.25
    scaled = latents * factor
    assert float(scaled.std()) == pytest.approx(1.0, rel=1e-5)


def test_scaled_latents_of_the_training_digits_have_unit_std() -> None:
    torch.manual_seed(0)
    model = Autoencoder(SMALL)  # untrained: its latents have some arbitrary spread
    digits = _digits().images[:1000]
    latents = encode_latents(model, digits)
    assert float(latents.std()) != pytest.approx(1.0, abs=0.1)  # so scaling has work to do
    scaled = latents * latent_scale_factor(latents)
    assert float(scaled.std()) == pytest.approx(1.0, abs=1e-4)


def test_scale_factor_refuses_constant_latents() -> None:
    with pytest.raises(ValueError, match="constant or not finite"):
        latent_scale_factor(torch.zeros(10, 4, 7, 7))
    with pytest.raises(ValueError, match="at least two"):
        latent_scale_factor(torch.ones(1))


# ----------------------------------------------------------------------------- learning
def test_autoencoder_overfits_a_few_digits_through_the_loop(tmp_path) -> None:  # noqa: ANN001
    # Measured: MSE 0.025 (PSNR 22 dB) after these 300 steps, ~4 s on one core.
    digits, labels = _digits().images[:8], _digits().labels[:8]
    config = TrainConfig(steps=300, batch_size=8, lr=1e-2, warmup_steps=10, ema_decay=None)
    trainer = train_autoencoder(digits, SMALL, config, "cpu", verbose=False, progress=False)
    model = trainer.model
    mse = reconstruction_mse(model, digits)
    baseline = float((digits - digits.mean(dim=0)).square().mean())  # the mean digit's error
    assert mse < 0.05 and mse < baseline / 4, (mse, baseline)
    with torch.no_grad():
        assert class_agreement(model.decode(model.encode(digits)), labels) == 1.0
    # ...and it went through the loop's checkpoints like any model
    path = trainer.save(tmp_path / "ae.pt")
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_kind == "autoencoder" and model_kind(model) == "autoencoder"
    rebuilt = checkpoint.build_model(ema=False)
    assert_close(rebuilt.encode(digits), model.encode(digits))
    assert build_model("autoencoder", config_to_dict(SMALL)).config == SMALL


@pytest.mark.slow
def test_reconstruction_of_held_out_digits_beats_a_bound() -> None:
    # The test: a short training (~8 s on one core) on the 4,500 bundled training
    # digits, then the 500 held-out digits must come back close and still readable.
    # Measured with these settings: MSE 0.052 (PSNR 18.9 dB), class agreement 0.946; the
    # default 2,000-step training reaches MSE 0.0088 and 0.984 (real digits: 0.986).
    train, test = _digits("train"), _digits("test")
    config = TrainConfig(steps=200, batch_size=32, lr=1e-2, warmup_steps=30)
    trainer = train_autoencoder(train.images, SMALL, config, "cpu", verbose=False, progress=False)
    model = trainer.ema_model
    mse = reconstruction_mse(model, test.images)
    assert mse < 0.08, f"held-out reconstruction MSE {mse:.4f} (PSNR {psnr(mse):.1f} dB)"
    with torch.no_grad():
        recon = model.decode(model.encode(test.images))
    assert class_agreement(recon, test.labels) >= 0.90


def test_psnr_of_known_errors() -> None:
    assert psnr(4.0) == pytest.approx(0.0)  # error as large as the range
    assert psnr(0.04) == pytest.approx(20.0)
    assert psnr(1.0, data_range=1.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="mse must be > 0"):
        psnr(0.0)
    assert math.isfinite(psnr(1e-12))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 30}, "image_size must be a positive multiple of 4"),
        ({"image_size": 0}, "image_size must be a positive multiple of 4"),
        ({"latent_channels": 0}, "latent_channels must be an integer >= 1"),
        ({"base_channels": 2.5}, "base_channels must be an integer >= 1"),
        ({"kl_weight": -1e-6}, "kl_weight must be >= 0"),
        ({"kl_weight": float("nan")}, "kl_weight must be a number"),
    ],
)
def test_bad_config_says_what_is_wrong(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutoencoderConfig(**changes)


def test_wrong_image_or_latent_shape_says_what_to_do() -> None:
    model = Autoencoder(SMALL)
    with pytest.raises(ValueError, match=r"shape \(B, 1, 28, 28\).*AutoencoderConfig"):
        model.encode(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"shape \(B, 1, 28, 28\)"):
        model.encode(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"latents of shape \(B, 4, 7, 7\).*encode"):
        model.decode(torch.zeros(2, 4, 14, 14))


def test_loss_check_refuses_wrong_data_and_models(tiny_unet) -> None:  # noqa: ANN001
    model = Autoencoder(SMALL)
    config = TrainConfig(steps=1, batch_size=2)
    with pytest.raises(ValueError, match=r"pixels in \[-1, 1\].*127.5"):
        Trainer(model, AutoencoderLoss(), TensorBatches(torch.rand(4, 1, 28, 28) * 255), config,
                "cpu", verbose=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\).*load_mnist"):
        Trainer(model, AutoencoderLoss(), TensorBatches(torch.zeros(4, 1, 14, 14)), config,
                "cpu", verbose=False)  # fmt: skip
    with pytest.raises(TypeError, match="DiffusionLoss"):
        Trainer(tiny_unet(), AutoencoderLoss(), TensorBatches(torch.zeros(4, 1, 28, 28)), config,
                "cpu", verbose=False)  # fmt: skip
