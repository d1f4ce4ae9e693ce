"""The 2015 U-Net's shape arithmetic (diffusion_edu.models.unet2015) against the paper's Fig. 1
(Ronneberger, Fischer & Brox 2015) and against PyTorch's own convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusion_edu.models.unet2015 import (
    conv_output_size,
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
