"""The tiny noise predictor of the 2-D toy (lesson 05): an MLP on points in the plane.

``model(x_t, t, labels=None) -> prediction`` for points ``(B, 2)``: the same calling convention
as the U-Net, so the library's loop, loss and samplers work on it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.targets import Target, check_target

__all__ = ["ToyMLPConfig", "ToyNoisePredictor"]


@dataclass(frozen=True)
class ToyMLPConfig:
    """Size of the tiny noise predictor.

    Attributes:
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        time_dim: size of the sinusoidal time embedding.
        fourier_features: how many frequencies (pi/2, pi, 2 pi, ...) of sin/cos features of
            each coordinate to feed in besides x itself; 0 feeds x alone. A plain MLP on raw
            coordinates learns smooth functions first and blurs the spiral's arms together;
            these features let it draw sharp curves within a short training run (Tancik et al.
            2020, "Fourier features let networks learn high frequency functions").
        T: the number of diffusion steps the model will see (t is divided by T before
            embedding, so the embedding's frequencies suit any T).
        num_classes: number of class labels to condition on (the "prompt"), or None for an
            unconditional model. A conditional model has one extra learned label, the "no
            label" class ``model.null_label`` (= num_classes), as the U-Net does.
        label_dim: size of the learned label embedding (conditional models only).
        prediction: what the network outputs (:mod:`diffusion_edu.targets`): ``"eps"``
            (the noise, DDPM's choice), ``"x0"``, ``"v"`` or ``"flow"``.
    """

    hidden: int = 128
    depth: int = 3
    time_dim: int = 32
    fourier_features: int = 6
    T: int = 100
    num_classes: int | None = None
    label_dim: int = 16
    prediction: Target = "eps"

    def __post_init__(self) -> None:
        check_target(self.prediction)
        if self.hidden < 1 or self.depth < 1 or self.T < 1 or self.fourier_features < 0:
            raise ValueError(f"hidden, depth and T must be >= 1, got {self}.")
        if self.num_classes is not None and (self.num_classes < 1 or self.label_dim < 1):
            raise ValueError(f"num_classes and label_dim must be >= 1 (or None), got {self}.")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be an even number >= 2, got {self.time_dim}.")


class ToyNoisePredictor(nn.Module):
    """A small MLP ``eps_theta(x_t, t)`` for 2-D points: ``model(x_t, t, labels=None)``.

    Input: the point ``x_t`` ``(B, 2)`` and the sinusoidal embedding of ``t`` (as in the U-Net,
    so the network knows how noisy its input is). Output ``(B, 2)``: ``eps_hat``, its estimate
    of the noise that was added (or, with another ``config.prediction``, that target).

    ``labels``: for an unconditional model it must be None (accepted so the samplers can call
    every model the same way). With ``ToyMLPConfig(num_classes=K)`` it is a LongTensor ``(B,)``
    of class ids in 0..K, where K = ``model.null_label`` means "no label" (and None means
    "no label" for the whole batch); a learned embedding of the label joins the input, the
    way a text encoder's output joins Stable Diffusion's U-Net.
    """

    config_class = ToyMLPConfig

    def __init__(self, config: ToyMLPConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ToyMLPConfig()
        layers: list[nn.Module] = []
        width = 2 + 4 * config.fourier_features + config.time_dim
        # One extra embedding row: the learned "no label" class for classifier-free guidance.
        self.label_emb = (
            nn.Embedding(config.num_classes + 1, config.label_dim)
            if config.num_classes is not None
            else None
        )
        width += config.label_dim if self.label_emb is not None else 0
        # Frequencies of the coordinate features: pi/2 * (1, 2, 4, ...).
        freqs = (math.pi / 2) * 2.0 ** torch.arange(config.fourier_features)
        self.register_buffer("freqs", freqs, persistent=False)
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    @property
    def null_label(self) -> int | None:
        """The class id that means "no label" (None for an unconditional model)."""
        return self.config.num_classes

    @property
    def prediction(self) -> Target:
        """What the network outputs: ``"eps"``, ``"x0"``, ``"v"`` or ``"flow"``."""
        return self.config.prediction

    def forward(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if labels is not None and self.label_emb is None:
            raise ValueError(
                "This ToyNoisePredictor is unconditional: call it with labels=None "
                "(or build it with ToyMLPConfig(num_classes=...))."
            )
        if x_t.ndim != 2 or x_t.shape[1] != 2:
            raise ValueError(f"x_t must have shape (B, 2), got {tuple(x_t.shape)}.")
        B = x_t.shape[0]
        if isinstance(t, int):
            t = torch.full((B,), t, device=x_t.device)
        t = t.to(x_t.device).expand(B) if t.ndim == 0 else t.to(x_t.device)
        # Scale t to 0..1000 whatever T is, so the embedding's frequencies fit the range.
        emb = sinusoidal_embedding(t.float() * (1000.0 / self.config.T), self.config.time_dim)
        angles = x_t[:, :, None] * self.freqs.to(x_t)  # (B, 2, F)
        features = torch.cat([angles.sin(), angles.cos()], dim=2).flatten(1)  # (B, 4F)
        inputs = [x_t, features, emb.to(x_t.dtype)]
        if self.label_emb is not None:
            inputs.append(self.label_emb(self._check_labels(labels, B, x_t.device)).to(x_t.dtype))
        return self.net(torch.cat(inputs, dim=1))  # (B, 2)

    def _check_labels(
        self, labels: torch.Tensor | None, batch: int, device: torch.device
    ) -> torch.Tensor:
        null = self.config.num_classes
        assert null is not None
        if labels is None:
            return torch.full((batch,), null, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device)
        if labels.shape != (batch,) or labels.dtype != torch.long:
            raise ValueError(
                f"labels must be a LongTensor of shape ({batch},), got {tuple(labels.shape)} "
                f"{labels.dtype}."
            )
        if labels.numel() and (labels.min() < 0 or labels.max() > null):
            raise ValueError(f"labels must lie in 0..{null} ({null} = no label).")
        return labels
