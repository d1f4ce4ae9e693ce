"""The shape arithmetic of the original U-Net (Ronneberger, Fischer & Brox 2015).

"U-Net: Convolutional Networks for Biomedical Image Segmentation" (MICCAI 2015, Fig. 1):

* every 3x3 convolution is **unpadded** and followed by a ReLU, so it trims one pixel from
  each border (572 -> 570);
* a downsampling step is two such convs, then a **2x2 max pool** with stride 2 (halves the
  size; the next step doubles the channels: 64, 128, 256, 512, 1024 at the bottom);
* an upsampling step is a 2x upsampling followed by a 2x2 convolution that **halves the
  channels** ("up-conv 2x2"), a **crop-and-concat** with the feature map of the matching
  down step (cropped, because unpadded convs left it larger), then two 3x3 convs + ReLU;
* a final 1x1 conv maps to the 2 classes.

With the paper's 572 x 572 input the output is 388 x 388: the output is smaller than the
input. Diffusion U-Nets (:mod:`diffusion_edu.models.unet`) pad their convolutions instead, so
``eps_hat`` has the shape of ``x_t``. This module only does the arithmetic (no weights are
built: the shapes, and how many weights each stage would have); the pictures are in
``viz/unet_viz.py``, which sits on top and is never imported from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Part",
    "Stage",
    "conv_output_size",
    "conv_parameters",
    "skip_pairs",
    "unet2015_stages",
    "unet2015_skip_pairs",
]

Part = Literal["in", "down", "mid", "up", "out"]


@dataclass(frozen=True)
class Stage:
    """One stage of a U-Net and the shape of what comes out of it.

    Attributes:
        name: e.g. ``"down 1.0"`` (level 1, block 0), ``"downsample 0"``, ``"mid attention"``.
        part: ``"in"``, ``"down"`` (downsampling stack), ``"mid"`` (bottleneck), ``"up"``
            (upsampling stack) or ``"out"``.
        level: resolution level, 0 = full size, 1 = half size, ...
        in_shape, out_shape: ``(C, H, W)`` of the stage's input and output (batch dropped).
        params: trainable parameters in this stage.
        skip: True if this stage's output is saved for a skip connection (down stack), or its
            input includes one (up stack).
    """

    name: str
    part: Part
    level: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    skip: bool = False


def skip_pairs(stages: Sequence[Stage]) -> list[tuple[int, int]]:
    """Index pairs (down stage, up stage) joined by a skip connection: last saved, first used."""
    saved = [i for i, s in enumerate(stages) if s.part == "down" and s.skip]
    used = [i for i, s in enumerate(stages) if s.part == "up" and s.skip]
    return list(zip(reversed(saved), used, strict=False))


def conv_output_size(size: int, kernel: int = 3, padding: int = 0, stride: int = 1) -> int:
    """Output side length of a convolution: ``floor((size + 2 * padding - kernel) / stride) + 1``.

    (PyTorch's ``nn.Conv2d`` documentation, "Shape".) With ``kernel=3, padding=0`` (the 2015
    U-Net's "unpadded" convolution) each conv trims one pixel from every border: 572 -> 570.
    With ``padding=1`` (diffusion U-Nets) the size stays.
    """
    if size + 2 * padding < kernel:
        raise ValueError(f"a {kernel}x{kernel} conv does not fit in {size} px (+{padding} pad).")
    return (size + 2 * padding - kernel) // stride + 1


def conv_parameters(in_channels: int, out_channels: int, kernel: int) -> int:
    """Weights and biases of a ``kernel x kernel`` convolution: ``k * k * C_in * C_out + C_out``.

    (``nn.Conv2d(in_channels, out_channels, kernel)`` has exactly this many parameters; so has
    the transposed convolution ``nn.ConvTranspose2d`` often used for the 2015 "up-conv".)
    """
    return kernel * kernel * in_channels * out_channels + out_channels


def unet2015_stages(input_size: int = 572, depth: int = 4, base_channels: int = 64) -> list[Stage]:
    """Shapes through the original U-Net (Ronneberger, Fischer & Brox 2015, Fig. 1).

    Downsampling step: two unpadded 3x3 convs + ReLU, then 2x2 max pooling (halves the size,
    channels double at the next step). Upsampling step: 2x upsampling followed by a 2x2 conv
    that halves the channels ("up-conv"), concatenation with the CROPPED feature map from the
    matching down step, then two unpadded 3x3 convs + ReLU. Final 1x1 conv to 2 classes.
    With the paper's 572 x 572 input the output is 388 x 388.

    ``params`` is what each stage's weights would number (:func:`conv_parameters`): a 3x3 conv
    has ``9 C_in C_out + C_out``, the 2x2 up-conv ``4 C_in C_out + C_out``, the 1x1 conv
    ``C_in * 2 + 2``; pooling and crop-and-concat have none. With the paper's 64 base channels
    and one input channel that adds up to 31,030,658.
    """
    stages: list[Stage] = []
    size, ch = input_size, 1

    def add(
        name: str, part: Part, level: int, new_ch: int, new_size: int, skip: bool, kernel: int
    ) -> None:
        """Append a stage; ``kernel`` is its convolution's size (0: no weights)."""
        nonlocal size, ch
        params = conv_parameters(ch, new_ch, kernel) if kernel else 0
        stages.append(
            Stage(name, part, level, (ch, size, size), (new_ch, new_size, new_size), params, skip)
        )
        size, ch = new_size, new_ch

    for level in range(depth + 1):
        out_ch = base_channels * 2**level
        part: Part = "down" if level < depth else "mid"
        add(f"conv3x3+ReLU {level}a", part, level, out_ch, conv_output_size(size), False, 3)
        add(f"conv3x3+ReLU {level}b", part, level, out_ch, conv_output_size(size), level < depth, 3)
        if level < depth:
            if size % 2:
                raise ValueError(f"size {size} at level {level} is odd: 2x2 pooling needs even.")
            add(f"maxpool 2x2 {level}", "down", level + 1, ch, size // 2, False, 0)
    for level in reversed(range(depth)):
        out_ch = base_channels * 2**level
        add(f"up 2x + conv2x2 {level}", "up", level, out_ch, size * 2, False, 2)
        skip_ch = out_ch
        # concatenation with the cropped skip: channels double, size unchanged, no weights
        add(f"crop + concat {level}", "up", level, out_ch + skip_ch, size, True, 0)
        add(f"conv3x3+ReLU {level}a'", "up", level, out_ch, conv_output_size(size), False, 3)
        add(f"conv3x3+ReLU {level}b'", "up", level, out_ch, conv_output_size(size), False, 3)
    add("conv1x1 (2 classes)", "out", 0, 2, size, False, 1)
    return stages


def unet2015_skip_pairs(stages: Sequence[Stage]) -> list[tuple[int, int]]:
    """(down stage, concat stage) index pairs of the 2015 U-Net, deepest first."""
    return skip_pairs(stages)
