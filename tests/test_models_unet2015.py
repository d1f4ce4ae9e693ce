"""The 2015 U-Net's shape arithmetic (diffusion_edu.models.unet2015) against the paper's Fig. 1
(Ronneberger, Fischer & Brox 2015) and against PyTorch's own convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusion_edu.models.unet2015 import (
    conv_output_size,
    conv_parameters,
    unet2015_skip_pairs,
    unet2015_stages,
)


def test_unet2015_shapes_match_the_paper() -> None:
    stages = unet2015_stages(572)
    sizes = [s.out_shape[-1] for s in stages]
    # Ronneberger et al. 2015, Fig. 1
    for size in (570, 568, 284, 282, 280, 140, 136, 68, 64, 32, 30, 28, 56, 52, 104, 100, 392, 388):
        assert size in sizes
    assert stages[-1].out_shape == (2, 388, 388)
    assert max(s.out_shape[0] for s in stages) == 1024
    assert conv_output_size(28, 3, padding=1) == 28
    assert conv_output_size(28, 3, padding=1, stride=2) == 14
    with pytest.raises(ValueError, match="odd"):
        unet2015_stages(570)  # 570 -> 566 -> 283: odd, cannot pool


@pytest.mark.parametrize(
    "size, kernel, padding, stride",
    [(572, 3, 0, 1), (28, 3, 1, 2), (7, 3, 1, 2), (64, 2, 0, 2), (30, 5, 2, 1), (9, 4, 1, 3)],
)
def test_conv_output_size_matches_nn_conv2d(size: int, kernel: int, padding: int, stride: int):
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
    with torch.no_grad():
        out = conv(torch.zeros(1, 1, size, size))  # (1, 1, H', W')
    assert conv_output_size(size, kernel, padding, stride) == out.shape[-1]


def test_unet2015_skips_join_a_down_step_to_its_crop_and_concat() -> None:
    stages = unet2015_stages(572)
    pairs = unet2015_skip_pairs(stages)
    assert len(pairs) == 4
    for a, b in pairs:
        down, concat = stages[a], stages[b]
        assert down.part == "down" and concat.name.startswith("crop + concat")
        assert down.level == concat.level
        # the skip is cropped: the down feature map is LARGER than where it is concatenated
        assert down.out_shape[-1] > concat.in_shape[-1]
        assert concat.out_shape[0] == 2 * down.out_shape[0]  # channels: up-conv's + skip's
    assert [stages[a].level for a, _ in pairs] == [3, 2, 1, 0]  # deepest first


def _pytorch_layer(name: str, in_channels: int, out_channels: int) -> nn.Module | None:
    """The PyTorch layer a 2015 stage stands for (built on the meta device: shapes only)."""
    if name.startswith("conv3x3"):
        return nn.Conv2d(in_channels, out_channels, 3, device="meta")  # unpadded
    if name.startswith("up 2x"):  # upsample, then the 2x2 "up-conv" halving the channels
        return nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(in_channels, out_channels, 2, device="meta")
        )
    if name.startswith("conv1x1"):
        return nn.Conv2d(in_channels, out_channels, 1, device="meta")
    return None  # max pooling, crop + concat: no weights


@pytest.mark.parametrize("depth", [4, 2])
def test_unet2015_parameters_match_pytorch_layers(depth: int) -> None:
    stages = unet2015_stages(572, depth)
    for s in stages:
        layer = _pytorch_layer(s.name, s.in_shape[0], s.out_shape[0])
        want = 0 if layer is None else sum(p.numel() for p in layer.parameters())
        assert s.params == want, s.name
    if depth == 4:  # the paper's network, 1 input channel, 2 classes
        assert sum(s.params for s in stages) == 31_030_658
    assert conv_parameters(64, 128, 3) == 3 * 3 * 64 * 128 + 128
