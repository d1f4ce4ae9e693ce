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
* Optionally (``text_vocab_size``), a **text encoder** and **cross-attention** at every
  downsampled level, so the pixels can read a typed prompt (lesson 09;
  :mod:`~diffusion_edu.models.text_encoder`).
* **Strided convolution** down and **nearest-neighbour upsampling + 3x3 convolution** up.

The output layer is zero-initialised, so an untrained model predicts eps_hat = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.models.embeddings import (
    check_class_labels,
    sinusoidal_embedding,
    timestep_batch,
)
from diffusion_edu.models.text_encoder import CrossAttention, TextEncoder
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
        text_vocab_size: condition on a prompt instead of a class label: the number of token
            ids (``len(diffusion_edu.text.VOCABULARY)``), or None (no text). The model is then
            called with token ids ``(B, text_length)`` from :func:`diffusion_edu.text.tokenize`.
        text_length: token ids per prompt.
        text_dim: width of the token vectors.
        text_layers: Transformer layers in the text encoder.
        text_heads: attention heads in the text encoder (cross-attention uses ``num_heads``).
        patch_size: 1 = the first level works on the pixels. 2 = each 2 x 2 block of pixels is
            read as one position with 4x the channels (``pixel_unshuffle``: 28 x 28 x 1 ->
            14 x 14 x 4) and the output is put back the same way (``pixel_shuffle``): no
            feature map at full resolution, where much of a U-Net's compute goes. ``image_size``
            stays the size of the images. Simple diffusion downsamples at the start for the
            same reason (Hoogeboom, Heek & Salimans 2023, finding 4); the two-minute recipe
            uses it (docs/performance.md).
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
    text_vocab_size: int | None = None
    text_length: int = 8
    text_dim: int = 64
    text_layers: int = 1
    text_heads: int = 4
    patch_size: int = 1

    def __post_init__(self) -> None:
        check_target(self.prediction)
        problems = []
        if self.image_size < 4:
            problems.append(f"image_size must be >= 4, got {self.image_size}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            problems.append(
                f"patch_size must be >= 1 and divide image_size={self.image_size}, "
                f"got {self.patch_size}"
            )
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
        if self.text_vocab_size is not None:
            if self.num_classes is not None:
                problems.append("give num_classes (labels) or text_vocab_size (prompts), not both")
            if self.text_vocab_size < 3:
                problems.append(f"text_vocab_size must be >= 3, got {self.text_vocab_size}")
            if self.text_length < 1 or self.text_layers < 1:
                problems.append("text_length and text_layers must be >= 1")
            if self.text_dim < 1 or self.text_dim % self.text_heads:
                problems.append(
                    f"text_heads={self.text_heads} must divide text_dim={self.text_dim}"
                )
            if any((self.base_channels * m) % self.num_heads for m in self.channel_mults[1:]):
                problems.append("num_heads must divide the channels of every downsampled level")
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
      For a text model (``config.text_vocab_size``), token ids ``(B, text_length)`` instead;
      the empty prompt (:meth:`null_condition`) is its "no condition".
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
        pixels_in = config.in_channels * config.patch_size**2  # channels after unshuffling
        self.conv_in = nn.Conv2d(pixels_in, chs[0], 3, padding=1)
        text = config.text_vocab_size is not None
        self.text_encoder = (
            TextEncoder(
                config.text_vocab_size,
                config.text_length,
                config.text_dim,
                config.text_layers,
                config.text_heads,
            )  # fmt: skip
            if text
            else None
        )

        def cross(ch: int, level: int) -> nn.Module:  # cross-attention below full resolution
            if level == 0:
                return nn.Identity()
            return CrossAttention(ch, config.text_dim, config.num_heads, config.groups)

        def block(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb_dim, config.groups, config.dropout)

        # Downsampling stack: at each level, residual blocks (each output saved for a skip),
        # then a strided conv that halves the resolution (not after the last level).
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        # With text: one cross-attention after every residual block (identity at level 0).
        self.down_cross = nn.ModuleList() if text else None
        ch = chs[0]
        for level, out_ch in enumerate(chs):
            self.down_blocks.append(
                nn.ModuleList(
                    [block(ch if j == 0 else out_ch, out_ch) for j in range(config.num_res_blocks)]
                )
            )
            if self.down_cross is not None:
                self.down_cross.append(
                    nn.ModuleList([cross(out_ch, level) for _ in range(config.num_res_blocks)])
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
        self.mid_cross = cross(ch, len(chs)) if text else None
        self.mid2 = block(ch, ch)

        # Upsampling stack, mirror image: each residual block takes the matching skip
        # (concatenated along channels), then upsampling to the next level's size.
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.up_cross = nn.ModuleList() if text else None
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
            if self.up_cross is not None:
                self.up_cross.append(
                    nn.ModuleList([cross(out_ch, level) for _ in range(config.num_res_blocks)])
                )
            ch = out_ch
            self.upsamples.append(nn.Conv2d(ch, ch, 3, padding=1) if level > 0 else nn.Identity())

        self.norm_out = nn.GroupNorm(config.groups, ch)
        self.conv_out = nn.Conv2d(ch, pixels_in, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # an untrained model predicts eps_hat = 0
        nn.init.zeros_(self.conv_out.bias)

    @property
    def null_label(self) -> int | None:
        """The class id that means "no label" (None for an unconditional or a text model)."""
        return self.config.num_classes

    @property
    def reads_text(self) -> bool:
        """Whether the model is conditioned on a prompt (token ids) rather than a label."""
        return self.text_encoder is not None

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor | None:
        """The "no condition" shaped like ``cond``: the empty prompt (``<start>`` then padding)
        for a text model, the label ``null_label`` for a class model, None if unconditional."""
        if self.text_encoder is not None:
            null = torch.full_like(cond, self.text_encoder.pad_id)
            null[:, 0] = cond[:, 0]  # every prompt starts with the same <start> token
            return null
        if self.config.num_classes is None:
            return None
        return torch.full_like(cond, self.config.num_classes)

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
        if self.text_encoder is not None:  # labels are token ids (B, L)
            tokens = labels if labels is not None else self._empty_prompts(x_t.shape[0], x_t)
            context, pad = self.text_encoder(tokens), tokens == self.text_encoder.pad_id
            emb = self.embed(t, None)

            def read(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
                return h if isinstance(layer, nn.Identity) else layer(h, context, pad)
        else:
            emb = self.embed(t, labels)

            def read(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
                return h

        down_cross = self.down_cross or [[nn.Identity()] * len(b) for b in self.down_blocks]
        up_cross = self.up_cross or [[nn.Identity()] * len(b) for b in self.up_blocks]
        p = self.config.patch_size
        if p > 1:  # (B, C, H, W) -> (B, C p^2, H/p, W/p): each p x p block of pixels, stacked
            x_t = F.pixel_unshuffle(x_t, p)
        h = self.conv_in(x_t)  # (B, chs[0], H/p, W/p)
        skips = []
        for blocks, crosses, down in zip(
            self.down_blocks, down_cross, self.downsamples, strict=True
        ):
            for blk, cross in zip(blocks, crosses, strict=True):
                h = read(cross, blk(h, emb))
                skips.append(h)
            h = down(h)  # (B, ch, H/2, W/2) except at the last level
        h = self.mid_attn(self.mid1(h, emb))
        if self.mid_cross is not None:
            h = read(self.mid_cross, h)
        h = self.mid2(h, emb)
        for blocks, crosses, up in zip(self.up_blocks, up_cross, self.upsamples, strict=True):
            for blk, cross in zip(blocks, crosses, strict=True):
                h = read(cross, blk(torch.cat([h, skips.pop()], dim=1), emb))  # cat: ch + skip
            if skips:  # go up to the next level's size (7 -> 14 -> 28; odd sizes work too)
                h = up(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C p^2, H/p, W/p)
        return F.pixel_shuffle(out, p) if p > 1 else out  # (B, C, H, W)

    def _empty_prompts(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        tokens = torch.zeros(batch, self.config.text_length, dtype=torch.long, device=like.device)
        return self.null_condition(tokens + 1)  # type: ignore[return-value]  # <start> = 1

    def cross_attention_layers(self) -> dict[str, CrossAttention]:
        """The cross-attention layers by name (e.g. ``"down_cross.1.0"``), in forward order."""
        return {name: m for name, m in self.named_modules() if isinstance(m, CrossAttention)}

    @torch.no_grad()
    def cross_attention_maps(
        self, x_t: torch.Tensor, t: int | torch.Tensor, tokens: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """How much each pixel attends to each token, per cross-attention layer.

        Runs the model once on ``(x_t, t, tokens)`` and returns ``{layer name: (B, L, h, w)}``:
        the attention weights (averaged over heads; they sum to 1 over the L tokens at every
        pixel, padding gets 0) at that layer's resolution ``h x w``.
        """
        if self.text_encoder is None:
            raise ValueError("this model has no text encoder, so no cross-attention to map.")
        layers = self.cross_attention_layers()
        for layer in layers.values():
            layer.keep_attention = True
        try:
            self(x_t, t, tokens)
            maps = {}
            for name, layer in layers.items():
                weights = layer.last_attention  # (B, heads, HW, L)
                assert weights is not None
                B, _, HW, L = weights.shape
                side = int(round(HW**0.5))
                maps[name] = weights.mean(dim=1).transpose(1, 2).reshape(B, L, side, HW // side)
        finally:
            for layer in layers.values():
                layer.keep_attention, layer.last_attention = False, None
        return maps

    def _check_inputs(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels:
            raise ValueError(
                f"x_t must have shape (B, {cfg.in_channels}, H, W), got {tuple(x_t.shape)}."
            )
        if x_t.shape[-1] % cfg.patch_size or x_t.shape[-2] % cfg.patch_size:
            raise ValueError(
                f"this U-Net reads {cfg.patch_size} x {cfg.patch_size} patches, so the height "
                f"and width of x_t must be multiples of {cfg.patch_size}, got "
                f"{tuple(x_t.shape[-2:])}: crop or pad the images."
            )
        B = x_t.shape[0]
        t = timestep_batch(t, B, x_t.device)
        if labels is not None and cfg.text_vocab_size is not None:
            tokens = torch.as_tensor(labels, device=x_t.device)
            if tokens.ndim != 2 or tokens.shape[0] != B or tokens.is_floating_point():
                raise ValueError(
                    f"this model reads prompts: give token ids of shape ({B}, "
                    f"{cfg.text_length}) from diffusion_edu.text.tokenize(prompts) (or call "
                    f"sample(..., prompts=[...])), got {tuple(tokens.shape)}."
                )
            if tokens.shape[1] > cfg.text_length:
                raise ValueError(
                    f"at most {cfg.text_length} token ids per prompt, got {tokens.shape[1]}."
                )
            if tokens.min() < 0 or tokens.max() >= cfg.text_vocab_size:
                raise ValueError(
                    f"token ids must lie in 0..{cfg.text_vocab_size - 1}, got values from "
                    f"{tokens.min().item()} to {tokens.max().item()}."
                )
            return t, tokens
        return t, check_class_labels(labels, B, cfg.num_classes, x_t.device, "UNet")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
