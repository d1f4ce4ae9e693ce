"""A tiny text encoder and the cross-attention that lets image features read it.

Text-to-image models turn a prompt into a row of vectors, one per token, and let the
denoiser *look them up* with cross-attention (Rombach et al. 2022, Sec. 3.3: "cross-attention
layers"; Saharia et al. 2022, Sec. 2.2 for Imagen). Here both parts are as small as they can
be and still show the idea:

* :class:`TextEncoder`: token embedding + position embedding, then one or two Transformer
  encoder layers (Vaswani et al. 2017), trained together with the diffusion model (Stable
  Diffusion instead freezes a CLIP text encoder trained on hundreds of millions of captions).
* :class:`CrossAttention`: queries from the image's pixels, keys and values from the tokens.
  Each pixel's output is a weighted mix of the token vectors; the weights, one per (pixel,
  token), are what lesson 09 draws as cross-attention maps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TextEncoder", "CrossAttention"]


class TextEncoder(nn.Module):
    """Token ids ``(B, L)`` -> token vectors ``(B, L, dim)`` (pad tokens masked out).

    Token id ``pad_id`` marks padding: padded positions are ignored by self-attention here and
    by the cross-attention that reads the output.
    """

    def __init__(
        self, vocab_size: int, length: int, dim: int, layers: int, heads: int, pad_id: int = 0
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                heads,
                dim_feedforward=2 * dim,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )  # fmt: skip
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == self.pad_id  # (B, L): True where there is no word
        h = self.token_emb(tokens) + self.pos_emb[: tokens.shape[1]]  # (B, L, dim)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        return self.norm(h)


class CrossAttention(nn.Module):
    """Pixels attend to tokens: ``x + out(softmax(q k^T / sqrt(d)) v)`` with a residual.

    ``q`` comes from the (normalised) feature map ``x (B, C, H, W)``, ``k`` and ``v`` from
    the token vectors ``context (B, L, D)``; ``pad (B, L)`` marks tokens to ignore. The output
    projection starts at zero, so an untrained layer changes nothing. With
    ``keep_attention = True`` the layer keeps its last attention weights in
    ``last_attention (B, heads, H*W, L)``.
    """

    def __init__(self, ch: int, context_dim: int, num_heads: int, groups: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        heads, d = self.num_heads, C // self.num_heads
        q = self.q(self.norm(x)).reshape(B, heads, d, H * W).transpose(2, 3)  # (B, h, HW, d)
        k, v = self.kv(context).reshape(B, -1, 2, heads, d).permute(2, 0, 3, 1, 4)  # (B, h, L, d)
        keep = ~pad[:, None, None, :]  # (B, 1, 1, L): True for real tokens
        if self.keep_attention:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)  # (B, h, HW, L)
            weights = scores.masked_fill(~keep, float("-inf")).softmax(dim=-1)
            self.last_attention = weights.detach()
            h = weights @ v
        else:
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, h, HW, d)
        return x + self.out(h.transpose(2, 3).reshape(B, C, H, W))
