"""What every noise predictor shares (diffusion_edu.models.common): the checkpoint name of a
model's class, configs as plain data and back, seeing through compile/DDP wrappers, and the
"no condition" batch for classifier-free guidance."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from diffusion_edu.models.common import (
    MODEL_CLASSES,
    build_model,
    config_from_dict,
    config_to_dict,
    forward_flops,
    model_kind,
    null_condition,
    unwrap,
)
from diffusion_edu.models.dit import DiT, DiTConfig
from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.models.unet import UNet, UNetConfig


class _DDPLike(nn.Module):
    """Holds the real model as ``.module``, as DistributedDataParallel does."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: object) -> torch.Tensor:
        return self.module(*args)


class _PromptModel(nn.Module):
    """Conditioned on token ids (B, L); "no prompt" is all padding (token 0)."""

    null_label = 99  # must be ignored: the model's own null_condition comes first

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(cond)

    def forward(self, x_t: torch.Tensor, t: object, cond: object = None) -> torch.Tensor:
        return x_t


def test_model_kind_names_each_registered_class(tiny_unet) -> None:  # noqa: ANN001
    assert set(MODEL_CLASSES) == {"unet", "toy_mlp", "dit", "autoencoder", "latent"}
    assert model_kind(tiny_unet()) == "unet"
    assert model_kind(ToyNoisePredictor(ToyMLPConfig(hidden=8, depth=1))) == "toy_mlp"
    assert model_kind(_DDPLike(torch.compile(tiny_unet()))) == "unet"  # through wrappers


def test_model_kind_of_an_unregistered_module_says_how_to_register_it(tiny_unet) -> None:  # noqa: ANN001
    with pytest.raises(TypeError, match="MODEL_CLASSES") as info:
        model_kind(nn.Linear(2, 2))
    assert "Linear" in str(info.value)

    class MyUNet(UNet):  # a subclass is not the registered class: it could not be rebuilt
        pass

    with pytest.raises(TypeError, match="MODEL_CLASSES"):
        model_kind(MyUNet(tiny_unet().config))


def test_unet_config_round_trips_through_plain_data(tiny_unet) -> None:  # noqa: ANN001
    config = tiny_unet(channel_mults=(1, 2, 2)).config
    plain = config_to_dict(config)
    assert plain["channel_mults"] == [1, 2, 2]  # a list: safe for weights_only loading
    assert not any(isinstance(v, tuple) for v in plain.values())
    assert plain.keys() == {f.name for f in dataclasses.fields(config)}
    back = config_from_dict("unet", plain)
    assert back == config and back.channel_mults == (1, 2, 2)


def test_toy_mlp_config_round_trips_through_plain_data() -> None:
    config = ToyMLPConfig(hidden=16, depth=2, num_classes=3, prediction="v")
    plain = config_to_dict(config)
    assert plain["hidden"] == 16 and plain["num_classes"] == 3 and plain["prediction"] == "v"
    assert config_from_dict("toy_mlp", plain) == config


def test_config_from_dict_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown model kind 'gan'.*unet, toy_mlp"):
        config_from_dict("gan", {})


def test_build_model_makes_a_fresh_model_of_the_named_kind(tiny_unet) -> None:  # noqa: ANN001
    config = tiny_unet(channel_mults=(1, 2)).config
    unet = build_model("unet", config_to_dict(config))
    assert type(unet) is UNet and unet.config == config
    toy = build_model("toy_mlp", {"hidden": 8, "depth": 1, "num_classes": 2})
    assert type(toy) is ToyNoisePredictor
    assert toy.config == ToyMLPConfig(hidden=8, depth=1, num_classes=2)
    assert toy(torch.randn(3, 2), 5).shape == (3, 2)


def test_unwrap_sees_through_compile_and_ddp_wrappers(tiny_unet) -> None:  # noqa: ANN001
    model = tiny_unet()
    compiled = torch.compile(model)
    assert compiled is not model and compiled._orig_mod is model
    assert unwrap(compiled) is model
    assert unwrap(_DDPLike(model)) is model
    assert unwrap(_DDPLike(compiled)) is model
    assert unwrap(torch.compile(_DDPLike(model))) is model
    assert unwrap(model) is model


def test_null_condition_of_a_labelled_model_is_its_null_label(tiny_unet) -> None:  # noqa: ANN001
    model = tiny_unet()  # 10 classes: label 10 means "no label"
    labels = torch.tensor([3, 0, 9])
    null = null_condition(model, labels)
    assert torch.equal(null, torch.full_like(labels, 10))
    assert null.dtype == labels.dtype and torch.equal(labels, torch.tensor([3, 0, 9]))
    toy = ToyNoisePredictor(ToyMLPConfig(hidden=8, depth=1, num_classes=2))
    assert torch.equal(null_condition(_DDPLike(toy), labels), torch.full_like(labels, 2))


def test_null_condition_uses_the_models_own_method_for_other_conditions() -> None:
    prompts = torch.tensor([[4, 9, 2, 0], [7, 0, 0, 0]])  # (B, L) token ids
    null = null_condition(_PromptModel(), prompts)
    assert null.shape == (2, 4) and torch.equal(null, torch.zeros_like(prompts))
    assert torch.equal(null_condition(_DDPLike(_PromptModel()), prompts), torch.zeros(2, 4).long())


def test_null_condition_of_an_unconditional_model_is_none(tiny_unet) -> None:  # noqa: ANN001
    labels = torch.tensor([1, 2])
    assert null_condition(tiny_unet(num_classes=None), labels) is None
    assert null_condition(ToyNoisePredictor(ToyMLPConfig(hidden=8, depth=1)), labels) is None


def test_model_for_config_builds_the_class_of_the_config_and_refuses_others() -> None:
    from diffusion_edu.models import DiT, DiTConfig, UNet, UNetConfig, model_for_config

    assert type(model_for_config(UNetConfig(base_channels=8, groups=4))) is UNet
    assert type(model_for_config(DiTConfig(hidden_size=16, depth=1, num_heads=2))) is DiT
    with pytest.raises(TypeError, match="not the config of a course model"):
        model_for_config({"base_channels": 8})


def test_forward_flops_of_a_one_block_dit_match_the_count_by_hand() -> None:
    """A DiT of one block on 28 x 28 digits, 4 x 4 patches: N = 49 tokens of width D = 48.
    Each matrix product (m x k) @ (k x n) is 2 m k n operations; the attention's two
    products must be counted too (the fused CPU kernel alone would count 0)."""
    N, D, P = 49, 48, 16  # tokens, width, values per patch (4 x 4 x 1)
    by_hand = (
        2 * N * P * D  # patch embedding
        + 2 * D * D * 2  # timestep MLP: two D x D layers
        + 2 * D * 6 * D  # the block's adaLN-Zero regression: 6 vectors of D
        + 2 * N * D * 3 * D  # q, k, v
        + 2 * (2 * N * N * D)  # q k^T and (weights) v, over all heads
        + 2 * N * D * D  # attention output projection
        + 2 * (2 * N * D * 4 * D)  # MLP, ratio 4
        + 2 * D * 2 * D  # final layer's adaptive LayerNorm: shift and scale
        + 2 * N * D * P  # final linear map back to patches
    )
    model = DiT(DiTConfig(depth=1, hidden_size=D, num_heads=4, num_classes=10))
    assert forward_flops(model) == by_hand


def test_forward_flops_grow_with_the_model_and_cost_a_unet_more_than_a_dit_of_its_size() -> None:
    small = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1))
    dit = DiT(DiTConfig(hidden_size=48, depth=5, num_heads=4))
    deeper = DiT(DiTConfig(hidden_size=48, depth=10, num_heads=4))
    assert forward_flops(deeper) > 1.9 * forward_flops(dit)
    # about the same parameters, but the U-Net convolves every pixel at full resolution
    assert forward_flops(small) > 3 * forward_flops(dit)
    assert forward_flops(dit, shape=(1, 28, 28)) == forward_flops(dit)
