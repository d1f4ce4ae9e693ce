"""Lesson 06's U-Net anatomy (diffusion_edu.viz.unet_viz): shape tracing, the parameter
breakdown, removing the skips, and light checks that the figures build with titles. The 2015
U-Net's arithmetic is tested in test_models_unet2015.py."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import skip_pairs
from diffusion_edu.viz.unet_viz import (
    draw_unet2015_diagram,
    draw_unet_diagram,
    parameter_breakdown,
    plot_parameter_breakdown,
    plot_time_embedding,
    remove_skips,
    trace_unet,
)


def _titles(fig) -> list[str]:  # noqa: ANN001
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


@pytest.mark.parametrize("size", [28, 32])
def test_trace_unet_shapes(size: int) -> None:
    model = UNet(UNetConfig(image_size=size))  # channels 32, 64, 64; 2 res blocks per level
    stages = trace_unet(model)
    by_name = {s.name: s for s in stages}
    half, quarter = (size + 1) // 2, ((size + 1) // 2 + 1) // 2
    assert by_name["conv_in"].out_shape == (32, size, size)
    assert by_name["down 0.1"].out_shape == (32, size, size)
    assert by_name["downsample 0"].out_shape == (32, half, half)
    assert by_name["down 1.0"].out_shape == (64, half, half)
    assert by_name["downsample 1"].out_shape == (64, quarter, quarter)
    assert by_name["mid attention"].out_shape == (64, quarter, quarter)
    # upsampling blocks see their input concatenated with the skip: 64 + 64 channels
    assert by_name["up 2.0"].in_shape == (128, quarter, quarter)
    assert by_name["up 0.0"].in_shape == (64 + 32, size, size)
    assert stages[-1].out_shape == (1, size, size)  # eps_hat matches x_t pixel for pixel
    assert sum(s.params for s in stages) + count_parameters(model.time_mlp) + sum(
        count_parameters(m) for m in (model.norm_out,)
    ) == count_parameters(model)
    # each skip joins a down block to an up block of the same resolution
    for a, b in skip_pairs(stages):
        assert stages[a].out_shape[1:] == stages[b].in_shape[1:]
    assert len(skip_pairs(stages)) == 6
    assert not model._forward_hooks and not model.conv_in._forward_hooks  # hooks removed


def test_parameter_breakdown_adds_up() -> None:
    model = UNet(UNetConfig(num_classes=10))
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == count_parameters(model)
    assert parts["label embedding"] == 11 * model.config.time_embed_dim


def test_remove_skips_zeroes_only_the_skip_channels() -> None:
    torch.manual_seed(0)
    cfg = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False)
    model = UNet(cfg)
    for p in model.parameters():  # zero-initialised layers would hide any difference
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 28, 28)
    with_skips = model(x, 5)
    seen = []
    block = model.up_blocks[-1][0]
    handles = remove_skips(model)
    spy = block.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    without = model(x, 5)
    spy.remove()
    assert not torch.allclose(with_skips, without)
    assert torch.count_nonzero(seen[0][:, -8:]) == 0 and torch.count_nonzero(seen[0][:, :-8]) > 0
    for h in handles:
        h.remove()
    torch.testing.assert_close(model(x, 5), with_skips)


def test_unet_figures_have_titles() -> None:
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1))
    for fig in (
        draw_unet_diagram(model),
        draw_unet2015_diagram(),
        plot_parameter_breakdown(model),
        plot_time_embedding(dim=16, T=100),
    ):
        assert _titles(fig)
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_title())
