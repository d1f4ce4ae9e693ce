"""The noise-prediction U-Net: ``model(x_t, t, labels) -> eps_hat``.

How this differs from the 2015 U-Net in the course's source article
------------------------------------------------------------------
Ronneberger et al. (2015) built the U-Net for *segmentation*: each level is two 3x3
convolutions + ReLU **without padding** (so every convolution shrinks the image by 2 pixels and
the skip connections must be cropped), max-pooling to go down, and "up-convolution" (upsample,
then a 2x2 convolution halving the channels) to go up. The diffusion U-Net (Ho et al. 2020,
after PixelCNN++) keeps the shape of the idea - a downsampling stack, an upsampling stack, and
skip connections between levels of the same resolution - but changes the parts:

* **Padded 3x3 convolutions**: the output has exactly the input's size, because eps_hat must
  match x_t pixel for pixel. No cropping of skips.
* **Residual blocks with GroupNorm and SiLU** instead of plain conv + ReLU: they train stably
  with small batches, and SiLU is smooth.
* **A time embedding** added inside every residual block, so one network serves every noise
  level t (and, here, a class embedding for the digit label, the "prompt").
* **Self-attention** at the lowest resolution, so far-apart pixels can talk.
* **Strided convolution** down and **nearest-neighbour upsampling + 3x3 convolution** up.

The output layer is zero-initialised, so an untrained model predicts eps_hat = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.targets import Target, check_target

__all__ = ["UNet", "UNetConfig", "count_parameters"]


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet`. The defaults (~1M parameters) train on a laptop CPU.

    Attributes:
        image_size: height = width of the images (28 for MNIST; any size works).
        in_channels: 1 for grey-scale, 3 for colour.
        base_channels: channels at the first (full-resolution) level.
        channel_mults: one entry per level; level i has ``base_channels * channel_mults[i]``
            channels, and every level but the last halves the resolution (28 -> 14 -> 7).
        num_res_blocks: residual blocks per level on the way down (and up).
        attention: self-attention at the lowest resolution.
        num_heads: attention heads.
        num_classes: number of class labels for conditioning (10 for digits), or None.
        dropout: dropout inside residual blocks.
        groups: GroupNorm groups (must divide every level's channels).
        prediction: what the network outputs (:mod:`diffusion_edu.targets`): ``"eps"``
            (the noise, DDPM's choice and the course's default), ``"x0"``, ``"v"`` or ``"flow"``.
            The loss trains it to that target and the samplers read it back.
    """

    image_size: int = 28
    in_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention: bool = True
    num_heads: int = 4
    num_classes: int | None = None
    dropout: float = 0.0
    groups: int = 8
    prediction: Target = "eps"

    def __post_init__(self) -> None:
        check_target(self.prediction)
        problems = []
        if self.image_size < 4:
            problems.append(f"image_size must be >= 4, got {self.image_size}")
        if self.in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {self.in_channels}")
        if not self.channel_mults or any(m < 1 for m in self.channel_mults):
            problems.append(f"channel_mults must be positive integers, got {self.channel_mults}")
        if self.num_res_blocks < 1:
            problems.append(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        for m in self.channel_mults:
            if (self.base_channels * m) % self.groups:
                problems.append(
                    f"groups={self.groups} must divide every level's channels "
                    f"(base_channels * mult = {self.base_channels * m})"
                )
                break
        if (
            self.attention
            and self.channel_mults
            and (self.base_channels * self.channel_mults[-1]) % self.num_heads
        ):
            problems.append("num_heads must divide the channels at the lowest level")
        if self.num_classes is not None and self.num_classes < 1:
            problems.append(f"num_classes must be None or >= 1, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise ValueError("invalid UNetConfig: " + "; ".join(problems) + ".")

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.base_channels


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv, add the time(+label) embedding, then again; plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # (B, out, 1, 1) broadcast over pixels
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, ch: int, num_heads: int, groups: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        qkv = qkv.reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = qkv.permute(1, 0, 2, 4, 3).unbind(0)  # each (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        h = h.permute(0, 1, 3, 2).reshape(B, C, H, W)
        return x + self.out(h)


class UNet(nn.Module):
    """Noise-prediction U-Net: ``model(x_t, t, labels=None) -> eps_hat`` of x_t's shape.

    (``eps_hat`` for the default ``config.prediction = "eps"``; another target otherwise.)

    * ``x_t``: ``(B, C, H, W)`` noisy images.
    * ``t``: int or LongTensor ``(B,)``: the timestep of each image (1..T).
    * ``labels``: LongTensor ``(B,)`` of class ids, or None. The extra class id
      ``model.null_label`` (= num_classes) means "no label"; training replaces some labels with
      it so that the same model can also predict unconditionally (classifier-free guidance).
    """

    config_class = UNetConfig

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        chs = [config.base_channels * m for m in config.channel_mults]
        emb_dim = config.time_embed_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(config.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        # One extra embedding row: the learned "no label" class for classifier-free guidance.
        self.label_emb = (
            nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None
        )
        self.conv_in = nn.Conv2d(config.in_channels, chs[0], 3, padding=1)

        def block(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, config.groups, config.dropout)

        # Downsampling stack: at each level, residual blocks (each output saved for a skip),
        # then a strided conv that halves the resolution (not after the last level).
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        ch = chs[0]
        for level, out_ch in enumerate(chs):
            self.down_blocks.append(
                nn.ModuleList(
                    [block(ch if j == 0 else out_ch, out_ch) for j in range(config.num_res_blocks)]
                )
            )
            ch = out_ch
            last = level == len(chs) - 1
            self.downsamples.append(
                nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1)
            )

        # Bottleneck (lowest resolution): res block, attention, res block.
        self.mid1 = block(ch, ch)
        self.mid_attn = (
            SelfAttention(ch, config.num_heads, config.groups)
            if config.attention
            else nn.Identity()
        )
        self.mid2 = block(ch, ch)

        # Upsampling stack, mirror image: each residual block takes the matching skip
        # (concatenated along channels), then upsampling to the next level's size.
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for level in reversed(range(len(chs))):
            out_ch = chs[level]
            self.up_blocks.append(
                nn.ModuleList(
                    [
                        block((ch if j == 0 else out_ch) + out_ch, out_ch)
                        for j in range(config.num_res_blocks)
                    ]
                )
            )
            ch = out_ch
            self.upsamples.append(nn.Conv2d(ch, ch, 3, padding=1) if level > 0 else nn.Identity())

        self.norm_out = nn.GroupNorm(config.groups, ch)
        self.conv_out = nn.Conv2d(ch, config.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # an untrained model predicts eps_hat = 0
        nn.init.zeros_(self.conv_out.bias)

    @property
    def null_label(self) -> int | None:
        """The class id that means "no label" (None for an unconditional model)."""
        return self.config.num_classes

    @property
    def prediction(self) -> Target:
        """What the network outputs: ``"eps"`` (default), ``"x0"``, ``"v"`` or ``"flow"``."""
        return self.config.prediction

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The vector every residual block receives: time embedding (+ label embedding)."""
        emb = self.time_mlp(sinusoidal_embedding(t, self.config.base_channels))  # (B, emb_dim)
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full_like(t, self.config.num_classes)
            emb = emb + self.label_emb(labels)
        return emb

    def forward(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        t, labels = self._check_inputs(x_t, t, labels)
        emb = self.embed(t, labels)
        h = self.conv_in(x_t)  # (B, chs[0], H, W)
        skips = []
        for blocks, down in zip(self.down_blocks, self.downsamples, strict=True):
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
            h = down(h)  # (B, ch, H/2, W/2) except at the last level
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for blocks, up in zip(self.up_blocks, self.upsamples, strict=True):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)  # (B, ch + skip_ch, H, W) in
            if skips:  # go up to the next level's size (7 -> 14 -> 28; odd sizes work too)
                h = up(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)

    def _check_inputs(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels:
            raise ValueError(
                f"x_t must have shape (B, {cfg.in_channels}, H, W), got {tuple(x_t.shape)}."
            )
        B = x_t.shape[0]
        if isinstance(t, int):
            t = torch.full((B,), t, dtype=torch.long, device=x_t.device)
        elif not isinstance(t, torch.Tensor):
            raise TypeError(
                f"t must be an int or a tensor of shape ({B},), got {type(t).__name__}."
            )
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must be an int or have shape ({B},), got {tuple(t.shape)}.")
        t = t.to(x_t.device)
        if labels is not None:
            if cfg.num_classes is None:
                raise ValueError(
                    "this UNet is unconditional (num_classes=None) but labels were given; "
                    "build it with UNetConfig(num_classes=...) or call it with labels=None."
                )
            labels = torch.as_tensor(labels, device=x_t.device)
            if labels.shape != (B,) or labels.is_floating_point():
                raise ValueError(
                    f"labels must be integer class ids of shape ({B},), got {tuple(labels.shape)}."
                )
            if labels.numel() and (labels.min() < 0 or labels.max() > cfg.num_classes):
                raise ValueError(
                    f"labels must lie in 0..{cfg.num_classes - 1} "
                    f"(or {cfg.num_classes}: 'no label'), got values from "
                    f"{labels.min().item()} to {labels.max().item()}."
                )
        return t, labels


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
