"""The Diffusion Transformer (DiT): ``model(x_t, t, labels) -> eps_hat`` from a plain Transformer.

Peebles & Xie (2023), "Scalable Diffusion Models with Transformers" (arXiv 2212.09748), replace
the U-Net by a Vision Transformer (Dosovitskiy et al. 2021) that reads the image as a sequence
of patches. The design (their Sec. 3.2 and Fig. 3), step by step::

    x_t (B, C, H, W)
      1. patchify: cut into p x p patches, each linearly embedded to a token    (Sec. 3.2, Fig. 4)
         -> (B, N, D) with N = (H / p) * (W / p) tokens of width D = hidden_size
      2. add the fixed 2-D sine-cosine position embedding (ViT's "sin-cos version")
      3. c = t_emb + y_emb: timestep embedding + class embedding, one vector per image
      4. N DiT blocks: self-attention and an MLP, each conditioned on c by adaLN-Zero
      5. final layer: adaptive LayerNorm, then a linear map of each token to p * p * C values
      6. unpatchify: put the patches back in place -> (B, C, H, W)

**adaLN-Zero** (Sec. 3.2, "DiT block design", the best of the four designs in Fig. 5): instead
of LayerNorm's learned scale and shift, a linear layer *regresses* them from c, and also a gate
alpha that scales each residual branch just before it is added::

    shift, scale, gate = Linear(SiLU(c))
    x = x + gate * Attention(LayerNorm(x) * (1 + scale) + shift)        (likewise for the MLP)

That linear layer starts at zero, so every gate is 0 and every block is the identity; the final
linear layer starts at zero too ("We initialize the final linear layer with zeros", Sec. 4), so
an untrained DiT predicts exactly 0, like the course's U-Net.

How this DiT differs from the paper's:

* it works on **pixels**, not on the latents of a VAE (Sec. 3.1, "Latent diffusion models"):
  MNIST digits are already small (28 x 28 with 4 x 4 patches gives 7 x 7 = 49 tokens);
* it predicts what ``config.prediction`` says (eps by default), **not a learned variance**
  as well (the paper's p x p x 2C output): the course's samplers use a fixed variance;
* label dropout for classifier-free guidance lives in the loss
  (:class:`diffusion_edu.training.DiffusionLoss`), not inside the model, as for every model of
  the course; the extra "no label" id is ``model.null_label``, as in the U-Net.
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
from diffusion_edu.targets import Target, check_target

__all__ = ["DiT", "DiTConfig", "patchify", "unpatchify", "sincos_2d_position_embedding"]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class DiTConfig:
    """Shape of a :class:`DiT`. The defaults (467,600 parameters with ``num_classes=10``;
    466,896 unconditional) are a scaled-down DiT-S/4 (Table 1 of the paper: DiT-S has 12
    layers of width 384 with 6 heads) for 28 x 28 digits.

    Attributes:
        image_size: height = width of the images (28 for MNIST). Unlike the U-Net, a DiT only
            takes this size: its position embedding is built for one grid of patches.
        in_channels: 1 for grey-scale, 3 for colour.
        patch_size: side p of the square patches (the "/4" in "DiT-S/4"); must divide
            ``image_size``. Each p x p patch becomes one token, so halving p gives 4x the
            tokens and more compute, which the paper found lowers FID (Sec. 5, Fig. 6).
        hidden_size: width D of every token (a multiple of 4: the 2-D sin-cos embedding gives
            D/4 sines and D/4 cosines to each of the two axes).
        depth: number of DiT blocks.
        num_heads: attention heads; must divide ``hidden_size``.
        mlp_ratio: width of each block's MLP as a multiple of ``hidden_size`` (4, as in ViT).
        num_classes: number of class labels for conditioning (10 for digits), or None.
        prediction: what the network outputs (:mod:`diffusion_edu.targets`): ``"eps"``
            (the noise, DDPM's choice and the course's default), ``"x0"``, ``"v"`` or ``"flow"``.
            The loss trains it to that target and the samplers read it back.
    """

    image_size: int = 28
    in_channels: int = 1
    patch_size: int = 4
    hidden_size: int = 64
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int | None = None
    prediction: Target = "eps"

    def __post_init__(self) -> None:
        check_target(self.prediction)
        problems = []
        if self.image_size < 1:
            problems.append(f"image_size must be >= 1, got {self.image_size}")
        if self.in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {self.in_channels}")
        if self.patch_size < 1:
            problems.append(f"patch_size must be >= 1, got {self.patch_size}")
        elif self.image_size >= 1 and self.image_size % self.patch_size:
            works = ", ".join(str(d) for d in _divisors(self.image_size))
            problems.append(
                f"patch_size={self.patch_size} must divide image_size={self.image_size} (the "
                f"patches tile the image); patch sizes that work: {works}"
            )
        if self.hidden_size < 4 or self.hidden_size % 4:
            problems.append(
                f"hidden_size must be a positive multiple of 4 (the 2-D sin-cos position "
                f"embedding needs it), got {self.hidden_size}"
            )
        if self.num_heads < 1:
            problems.append(f"num_heads must be >= 1, got {self.num_heads}")
        elif self.hidden_size >= 1 and self.hidden_size % self.num_heads:
            works = ", ".join(str(d) for d in _divisors(self.hidden_size))
            problems.append(
                f"num_heads={self.num_heads} must divide hidden_size={self.hidden_size} (each "
                f"head gets hidden_size / num_heads channels); head counts that work: {works}"
            )
        if self.depth < 1:
            problems.append(f"depth must be >= 1, got {self.depth}")
        if not self.mlp_ratio > 0 or int(self.hidden_size * self.mlp_ratio) < 1:
            problems.append(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.num_classes is not None and self.num_classes < 1:
            problems.append(f"num_classes must be None or >= 1, got {self.num_classes}")
        if problems:
            raise ValueError("invalid DiTConfig: " + "; ".join(problems) + ".")

    @property
    def grid_size(self) -> int:
        """Patches per side: ``image_size // patch_size`` (7 for 28 x 28 images, p = 4)."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens per image: ``grid_size ** 2`` (the paper's T = (I / p)^2, Sec. 3.2)."""
        return self.grid_size**2


# ----------------------------------------------------------------------------- patches
def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images ``(B, C, H, W)`` into ``(B, N, C * p * p)``: one row per p x p patch.

    Patches are numbered row by row (token ``n = row * (W / p) + col``), and each patch is
    flattened channel first, then its rows, then its columns: the order in which a
    ``Conv2d(C, D, kernel_size=p, stride=p)`` weight ``(D, C, p, p)`` flattens, so that conv is
    exactly ``Linear(C * p * p, D)`` applied to these rows (Fig. 4 of the paper).
    """
    B, C, H, W = x.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"patch_size={p} must divide the image's height and width, got {H}x{W}.")
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)


def unpatchify(tokens: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """Put ``(B, N, C * p * p)`` patches back into square images ``(B, C, H, W)``.

    The inverse of :func:`patchify` (same ordering); ``N`` must be a square number.
    """
    B, N, D = tokens.shape
    p, C = patch_size, channels
    side = round(N**0.5)
    if side * side != N or D != C * p * p:
        raise ValueError(
            f"expected (B, N, {C}*{p}*{p}) with N a square number, got {tuple(tokens.shape)}."
        )
    x = tokens.reshape(B, side, side, C, p, p)  # (B, h, w, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, h, p, w, p)
    return x.reshape(B, C, side * p, side * p)  # (B, C, H, W)


def sincos_2d_position_embedding(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed position vectors ``(grid_size ** 2, dim)`` for a square grid of patches.

    The "sine-cosine version" of ViT's position embeddings that DiT adds to every token
    (Sec. 3.2, "Patchify"), as in MAE (He et al. 2022): the 1-D Transformer encoding
    (Vaswani et al. 2017, Sec. 3.5; :func:`~diffusion_edu.models.embeddings.sinusoidal_embedding`)
    of the column index fills the first ``dim / 2`` entries and that of the row index the
    last ``dim / 2``. Row ``n = row * grid_size + col``, the order of :func:`patchify`::

        emb[n] = [sin(col w_0), ..., sin(col w_{K-1}), cos(col w_0), ..., cos(col w_{K-1}),
                  sin(row w_0), ..., cos(row w_{K-1})]        with w_k = 10000^(-k / K), K = dim/4
    """
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}.")
    if dim < 4 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4, got {dim}.")
    index = torch.arange(grid_size * grid_size)
    row, col = index // grid_size, index % grid_size  # (N,) each
    return torch.cat(
        [sinusoidal_embedding(col, dim // 2), sinusoidal_embedding(row, dim // 2)], dim=1
    )  # (N, dim)


# ----------------------------------------------------------------------------- building blocks
def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` per image; x (B, N, D), shift and scale (B, D)."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention over the tokens: ``proj(softmax(q k^T / sqrt(d)) v)``.

    With ``maps`` (a list) the weights are computed explicitly, used, and appended to it as
    ``(B, heads, N, N)``; otherwise the fused ``scaled_dot_product_attention`` computes the same.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        B, N, D = x.shape
        heads, d = self.num_heads, D // self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, heads, d)  # (B, N, 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, d)
        if maps is None:
            h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        else:
            weights = ((q @ k.transpose(-1, -2)) * d**-0.5).softmax(dim=-1)  # (B, heads, N, N)
            maps.append(weights.detach())
            h = weights @ v
        return self.proj(h.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class DiTBlock(nn.Module):
    """One Transformer block conditioned by adaLN-Zero (Sec. 3.2, Fig. 3, right).

    From c (B, D), ``modulation`` regresses six vectors: shift, scale and gate for the
    attention branch and for the MLP branch. LayerNorm has no weights of its own (the
    modulation supplies them). ``modulation`` starts at zero, so a fresh block is the identity.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, maps: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None, :] * self.attn(_modulate(self.norm1(x), shift1, scale1), maps)
        return x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaptive LayerNorm, then a linear decoder from each token to its p x p x C patch
    (Sec. 3.2, "Transformer decoder"). Both linear layers start at zero."""

    def __init__(self, dim: int, patch_values: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_values)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=1)
        return self.linear(_modulate(self.norm(x), shift, scale))  # (B, N, p*p*C)


# ----------------------------------------------------------------------------- the model
class DiT(nn.Module):
    """Diffusion Transformer: ``model(x_t, t, labels=None) -> eps_hat`` of x_t's shape.

    (``eps_hat`` for the default ``config.prediction = "eps"``; another target otherwise.)

    * ``x_t``: ``(B, C, image_size, image_size)`` noisy images.
    * ``t``: int or LongTensor ``(B,)``: the timestep of each image (1..T).
    * ``labels``: LongTensor ``(B,)`` of class ids, or None. The extra class id
      ``model.null_label`` (= num_classes) means "no label"; training replaces some labels with
      it so that the same model can also predict unconditionally (classifier-free guidance,
      Sec. 3.1 of the paper; Ho & Salimans 2022). None means "no label" too.
    """

    config_class = DiTConfig

    def __init__(self, config: DiTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DiTConfig()
        D, p, C = config.hidden_size, config.patch_size, config.in_channels
        # 1. Patchify: a p x p convolution with stride p is a linear map of each patch.
        self.patch_embed = nn.Conv2d(C, D, kernel_size=p, stride=p)
        # 2. Fixed (not learned) position vectors; rebuilt from the config, so not saved.
        self.register_buffer(
            "pos_embed", sincos_2d_position_embedding(config.grid_size, D), persistent=False
        )
        # 3. Timestep embedding (sinusoidal + MLP, as in the U-Net) and class embedding with
        #    one extra row: the learned "no label" class for classifier-free guidance.
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.label_emb = nn.Embedding(config.num_classes + 1, D) if config.num_classes else None
        # 4.-5. The blocks and the decoder.
        self.blocks = nn.ModuleList(
            DiTBlock(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.final = FinalLayer(D, p * p * C)
        self._initialise()

    def _initialise(self) -> None:
        """ViT's initialisation (Sec. 4: "standard weight initialization techniques from
        ViT"; the details follow the authors' code), then adaLN-Zero's zeros."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # The patch embedding is a linear layer on flattened patches: initialise it as one.
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.config.hidden_size, -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.time_mlp[0], self.time_mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.label_emb is not None:
            nn.init.normal_(self.label_emb.weight, std=0.02)
        # adaLN-Zero: every shift, scale and gate starts at 0 (each block is the identity)...
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        nn.init.zeros_(self.final.modulation[-1].weight)
        nn.init.zeros_(self.final.modulation[-1].bias)
        # ...and the decoder outputs 0: an untrained model predicts eps_hat = 0.
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    @property
    def null_label(self) -> int | None:
        """The class id that means "no label" (None for an unconditional model)."""
        return self.config.num_classes

    @property
    def prediction(self) -> Target:
        """What the network outputs: ``"eps"`` (default), ``"x0"``, ``"v"`` or ``"flow"``."""
        return self.config.prediction

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector c = t_emb + y_emb ``(B, D)`` that every block reads
        (Sec. 3.2: adaLN regresses its parameters "from the sum of the embedding vectors of
        t and c")."""
        c = self.time_mlp(sinusoidal_embedding(t, self.config.hidden_size))  # (B, D)
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full_like(t, self.config.num_classes)
            c = c + self.label_emb(labels)
        return c

    def forward(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._run(x_t, t, labels, maps=None)

    @torch.no_grad()
    def attention_maps(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Each block's self-attention weights, in order: ``depth`` tensors ``(B, heads, N, N)``.

        Entry ``[b, h, i, j]`` is how much token i (patch ``divmod(i, grid_size)``: row, column)
        reads token j in head h; each row sums to 1 over j.
        """
        maps: list[torch.Tensor] = []
        self._run(x_t, t, labels, maps=maps)
        return maps

    def _run(
        self,
        x_t: torch.Tensor,
        t: int | torch.Tensor,
        labels: torch.Tensor | None,
        maps: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        t, labels = self._check_inputs(x_t, t, labels)
        tokens = self.patch_embed(x_t).flatten(2).transpose(1, 2)  # (B, N, D), row by row
        h = tokens + self.pos_embed.to(tokens.dtype)  # (N, D) broadcast over the batch
        c = self.embed(t, labels).to(h.dtype)  # (B, D)
        for block in self.blocks:
            h = block(h, c, maps)  # (B, N, D)
        patches = self.final(h, c)  # (B, N, p*p*C)
        return unpatchify(patches, self.config.patch_size, self.config.in_channels)  # (B, C, H, W)

    def _check_inputs(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != want:
            raise ValueError(
                f"x_t must have shape (B, {', '.join(map(str, want))}) for this DiT (its "
                f"position embedding is built for a {cfg.grid_size}x{cfg.grid_size} grid of "
                f"{cfg.patch_size}x{cfg.patch_size} patches), got {tuple(x_t.shape)}. Resize the "
                "images, or build the model with DiTConfig(image_size=..., in_channels=...)."
            )
        B = x_t.shape[0]
        t = timestep_batch(t, B, x_t.device)
        return t, check_class_labels(labels, B, cfg.num_classes, x_t.device, "DiT")
