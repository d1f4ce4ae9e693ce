"""The noise-prediction U-Net (diffusion_edu.models.unet): shapes, conditioning, the time step,
overfitting, bad input."""

import pytest
import torch
from torch.testing import assert_close

from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters

TINY = dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, num_heads=2)


def _randomise_output_layer(model: UNet) -> UNet:
    # Zero-initialised layers (each residual block's last conv, attention's output, the output
    # conv) make an untrained model predict 0 whatever its inputs. Give them weights so that
    # differences inside the network become visible at the output.
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.05)
    return model


@pytest.mark.parametrize(
    "size, mults", [(28, (1, 2, 2)), (32, (1, 2, 2, 2)), (28, (1, 2, 2, 2)), (20, (1, 2))]
)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_output_has_the_input_shape(size, mults, batch, num_classes):
    model = UNet(
        UNetConfig(
            image_size=size,
            channel_mults=mults,
            base_channels=16,
            num_res_blocks=1,
            num_classes=num_classes,
            num_heads=2,
        )
    )
    x = torch.randn(batch, 1, size, size)
    labels = torch.arange(batch) % 10 if num_classes else None
    assert model(x, torch.randint(1, 1001, (batch,)), labels).shape == x.shape


def test_colour_images_work():
    model = UNet(UNetConfig(image_size=32, in_channels=3, **TINY))
    x = torch.randn(2, 3, 32, 32)
    assert model(x, 10).shape == x.shape


# --------------------------------------------------------------------------- patches
def test_patch_size_2_keeps_the_shape_and_has_no_full_resolution_level():
    model = UNet(UNetConfig(image_size=28, num_classes=10, patch_size=2, **TINY))
    x = torch.randn(3, 1, 28, 28)
    assert model(x, torch.tensor([1, 500, 1000]), torch.tensor([0, 1, 2])).shape == x.shape
    assert model.conv_in.in_channels == 4 and model.conv_out.out_channels == 4
    seen = []  # the resolution every convolution works at
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    model(x, 10)
    for hook in hooks:
        hook.remove()
    assert max(seen) == 14 and min(seen) == 7


def test_each_output_pixel_comes_from_its_own_patch_channel():
    # pixel_unshuffle stacks the 4 pixels of each 2 x 2 patch as 4 channels of one position
    # (channel c = pixel (c // 2, c % 2) of the patch) and pixel_shuffle puts them back.
    model = _randomise_output_layer(UNet(UNetConfig(image_size=8, patch_size=2, **TINY)))
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    unshuffled = torch.nn.functional.pixel_unshuffle(x, 2)  # (1, 4, 4, 4)
    assert_close(unshuffled[0, :, 0, 0], torch.tensor([0.0, 1.0, 8.0, 9.0]))
    assert_close(torch.nn.functional.pixel_shuffle(unshuffled, 2), x)
    # and a change to one pixel moves the prediction (the model sees every pixel)
    y = x.clone()
    y[0, 0, 7, 7] += 5.0
    assert not torch.allclose(model(x, 10), model(y, 10))


def test_a_patched_u_net_overfits_a_handful_of_noisy_images():
    losses = _overfit_losses(patch_size=2)
    assert losses[0] > 0.8 and min(losses[-10:]) < 0.1 * losses[0], (losses[0], losses[-1])


def test_a_size_the_patches_do_not_divide_is_a_clear_error():
    with pytest.raises(ValueError, match="patch_size must be >= 1 and divide image_size=28"):
        UNetConfig(patch_size=3)
    model = UNet(UNetConfig(image_size=28, patch_size=2, **TINY))
    with pytest.raises(ValueError, match=r"multiples of 2, got \(27, 28\): crop or pad"):
        model(torch.randn(1, 1, 27, 28), 5)


def test_untrained_model_predicts_zero_noise():
    model = UNet(UNetConfig(**TINY))
    assert torch.equal(model(torch.randn(2, 1, 28, 28), 5), torch.zeros(2, 1, 28, 28))


def test_the_prediction_depends_on_t():
    # (the embedding itself: test_models_embeddings.py)
    model = _randomise_output_layer(UNet(UNetConfig(**TINY)))
    x = torch.randn(1, 1, 28, 28)
    assert not torch.allclose(model(x, 10), model(x, 800), atol=1e-4)
    assert_close(model(x, 10), model(x, torch.tensor([10])))


def test_labels_change_the_prediction_and_none_means_the_null_label():
    model = _randomise_output_layer(UNet(UNetConfig(num_classes=10, **TINY)))
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([300, 300])
    assert model.null_label == 10
    assert not torch.allclose(model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([7, 7])))
    assert_close(model(x, t, None), model(x, t, torch.tensor([10, 10])))


def test_count_parameters_counts_trainable_parameters():
    model = UNet(UNetConfig(**TINY))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    model.conv_in.weight.requires_grad_(False)
    assert (
        count_parameters(model)
        == sum(p.numel() for p in model.parameters()) - model.conv_in.weight.numel()
    )
    default = count_parameters(UNet(UNetConfig(num_classes=10)))
    assert 0.5e6 < default < 2e6, "the default should stay small enough to train on a CPU"


def test_every_parameter_gets_a_gradient():
    model = UNet(UNetConfig(num_classes=10, **TINY))
    _randomise_output_layer(model)
    model(
        torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 10])
    ).square().sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient reaches {missing}"


def _overfit_losses(patch_size: int = 1) -> list[float]:
    """Memorise the noise in 8 fixed (x_t, t, eps) triples: the loss of each of 100 steps."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_size=16, num_classes=4, patch_size=patch_size, **TINY))
    x_t = torch.randn(8, 1, 16, 16)
    t = torch.randint(1, 1001, (8,))
    labels = torch.arange(8) % 4
    eps = torch.randn(8, 1, 16, 16)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(100):
        loss = (model(x_t, t, labels) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_overfits_a_handful_of_noisy_images():
    # The loss must fall far below its start.
    losses = _overfit_losses()
    assert losses[0] > 0.8  # ~ E[eps^2] = 1 for a model that predicts 0
    assert min(losses[-10:]) < 0.1 * losses[0], (
        f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"
    )


# --------------------------------------------------------------------------- bad input
def test_bad_config_is_rejected_with_reasons():
    with pytest.raises(ValueError, match="groups=8 must divide"):
        UNetConfig(base_channels=12)
    with pytest.raises(ValueError, match="channel_mults"):
        UNetConfig(channel_mults=())
    with pytest.raises(ValueError, match="num_res_blocks"):
        UNetConfig(num_res_blocks=0)
    with pytest.raises(ValueError, match="dropout"):
        UNetConfig(dropout=1.5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=torch.randn(2, 3, 28, 28)), ValueError, r"x_t must have shape \(B, 1, H, W\)"),
        (dict(x=torch.randn(1, 28, 28)), ValueError, "x_t must have shape"),
        (dict(t=torch.tensor([1, 2, 3])), ValueError, r"t must be an int or have shape \(2,\)"),
        (dict(t="5"), TypeError, "t must be an int"),
        (dict(labels=torch.tensor([1, 11])), ValueError, r"labels must lie in 0\.\.9"),
        (dict(labels=torch.tensor([-1, 0])), ValueError, "labels must lie"),
        (dict(labels=torch.tensor([1.0, 2.0])), ValueError, "integer class ids"),
    ],
)
def test_bad_inputs_give_clear_errors(kwargs, error, match):
    model = UNet(UNetConfig(num_classes=10, **TINY))
    args = dict(x=torch.randn(2, 1, 28, 28), t=torch.tensor([1, 2]), labels=None) | kwargs
    with pytest.raises(error, match=match):
        model(args["x"], args["t"], args["labels"])


def test_labels_for_an_unconditional_model_are_an_error():
    model = UNet(UNetConfig(**TINY))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 1, 28, 28), 3, torch.tensor([1]))
