"""What every noise predictor in the course shares.

A noise predictor is any ``nn.Module`` called as ``model(x_t, t, cond)`` whose ``config`` is a
frozen dataclass. On top of that:

* ``model.prediction``: what it outputs (``"eps"``, ``"x0"``, ``"v"`` or ``"flow"``;
  :mod:`diffusion_edu.targets`).
* the "no condition" for classifier-free guidance: a model with class labels has
  ``model.null_label`` (one extra label id meaning "no label"); a model with another kind of
  condition (a batch of token ids, say) defines ``model.null_condition(cond)``.
* :data:`MODEL_CLASSES`: the name it is saved under in checkpoints, and its class, whose
  ``config_class`` attribute names its config dataclass. A new architecture becomes
  loadable from checkpoints by adding one entry here. (The autoencoder is registered too,
  although it is not a noise predictor, so that it trains and saves through the same loop.)
* A model whose data are latents (:class:`~diffusion_edu.models.LatentDiffusion`) has
  ``model.decode_latents(z)`` (and ``encode_images(x)``, ``latent_shape``): the samplers
  and the loss look for that one method (:func:`decodes_latents`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from diffusion_edu.models.autoencoder import Autoencoder, LatentDiffusion
from diffusion_edu.models.dit import DiT
from diffusion_edu.models.toy_mlp import ToyNoisePredictor
from diffusion_edu.models.unet import UNet

__all__ = [
    "MODEL_CLASSES",
    "model_kind",
    "build_model",
    "model_for_config",
    "config_to_dict",
    "config_from_dict",
    "unwrap",
    "null_condition",
    "decodes_latents",
    "forward_flops",
]

#: checkpoint name -> model class (each class takes its config dataclass as only argument).
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "toy_mlp": ToyNoisePredictor,
    "dit": DiT,
    "autoencoder": Autoencoder,
    "latent": LatentDiffusion,
}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel and/or ``torch.compile`` wrapper."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module  # DistributedDataParallel
    inner = getattr(model, "_orig_mod", model)  # torch.compile
    return unwrap(inner) if inner is not model else model


def model_kind(model: nn.Module) -> str:
    """The name under which ``model``'s class is saved in checkpoints, e.g. ``"unet"``."""
    model = unwrap(model)
    for kind, cls in MODEL_CLASSES.items():
        if type(model) is cls:
            return kind
    raise TypeError(
        f"{type(model).__name__} is not one of the course's model classes "
        f"({', '.join(c.__name__ for c in MODEL_CLASSES.values())}), so a checkpoint could "
        "not rebuild it. Add it to diffusion_edu.models.MODEL_CLASSES, or save its weights "
        "with torch.save(model.state_dict())."
    )


def config_to_dict(config: Any) -> dict[str, Any]:
    """A model config as plain data (tuples become lists), safe for ``weights_only`` loading.

    A field that is itself a model's config (a :class:`~diffusion_edu.models.LatentDiffusion`
    holds an autoencoder's and a denoiser's) becomes ``{"kind": ..., "config": {...}}``, so
    that :func:`config_from_dict` knows which class to rebuild.
    """
    plain: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {"kind": _config_kind(value), "config": config_to_dict(value)}
        elif isinstance(value, tuple):
            value = list(value)
        plain[field.name] = value
    return plain


def config_from_dict(kind: str, config: dict[str, Any]) -> Any:
    """The config dataclass of the named model kind from :func:`config_to_dict`'s output."""
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_CLASSES)}.")
    values: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict) and set(value) == {"kind", "config"}:  # a nested config
            value = config_from_dict(value["kind"], dict(value["config"]))
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return MODEL_CLASSES[kind].config_class(**values)  # type: ignore[attr-defined]


def _config_kind(config: Any) -> str:
    for kind, cls in MODEL_CLASSES.items():
        if type(config) is getattr(cls, "config_class", None):
            return kind
    raise TypeError(f"{type(config).__name__} is not the config of a course model.")


def model_for_config(config: Any) -> nn.Module:
    """A fresh model for a config dataclass, e.g. ``model_for_config(UNetConfig())`` is a UNet
    and ``model_for_config(DiTConfig())`` a DiT (the class whose ``config_class`` it is)."""
    for cls in MODEL_CLASSES.values():
        if type(config) is getattr(cls, "config_class", None):
            return cls(config)
    known = ", ".join(c.config_class.__name__ for c in MODEL_CLASSES.values())  # type: ignore[attr-defined]
    raise TypeError(f"{type(config).__name__} is not the config of a course model ({known}).")


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """A fresh model of the named kind, e.g. ``build_model("unet", {"num_classes": 10})``."""
    return MODEL_CLASSES[kind](config_from_dict(kind, config))


def null_condition(model: nn.Module, cond: torch.Tensor) -> torch.Tensor | None:
    """The "no condition" batch shaped like ``cond``, or None if the model has none.

    ``model.null_condition(cond)`` when the model defines it; else every entry set to
    ``model.null_label`` (class labels); else None (an unconditional model, or any callable:
    the samplers then call it with ``cond=None``).
    """
    inner = unwrap(model) if isinstance(model, nn.Module) else model
    custom = getattr(inner, "null_condition", None)
    if callable(custom):
        return custom(cond)
    null_label = getattr(inner, "null_label", None)
    return None if null_label is None else torch.full_like(cond, null_label)


def decodes_latents(model: object) -> bool:
    """Whether ``model`` diffuses an autoencoder's latents (it has ``decode_latents``), so
    that its samples must be decoded to pixels; unwraps DDP and ``torch.compile``."""
    inner = unwrap(model) if isinstance(model, nn.Module) else model
    return callable(getattr(inner, "decode_latents", None))


def forward_flops(model: nn.Module, shape: tuple[int, ...] | None = None) -> int:
    """Floating-point operations of one forward pass on ONE image, counted by PyTorch.

    ``torch.utils.flop_counter.FlopCounterMode`` adds up the matrix products and
    convolutions the pass runs (a multiply-add counts 2; element-wise operations such as
    normalisation and activations are left out, as in the GFLOPs of Peebles & Xie 2023,
    Table 4, and Kaplan et al. 2020, Sec. 2.1). Training costs about 3x this per image
    (forward + backward, Kaplan et al. 2020, Sec. 2.1).

    Args:
        model: a course model (a conditional one gets label 0, a latent one runs on latents).
        shape: ``(C, H, W)`` of the input; default from the model (its latent grid for a
            latent model).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    inner = unwrap(model)
    if shape is None:
        if decodes_latents(inner):
            shape = tuple(inner.latent_shape)  # type: ignore[union-attr]
        else:
            config = inner.config  # type: ignore[union-attr]
            shape = (config.in_channels, config.image_size, config.image_size)
    device = next(inner.parameters()).device
    x = torch.zeros((1, *shape), device=device)
    t = torch.full((1,), 500, dtype=torch.long, device=device)
    probe = torch.zeros(1, dtype=torch.long, device=device)
    cond = probe if null_condition(inner, probe) is not None else None
    counter = FlopCounterMode(display=False)
    # The "math" attention kernel runs q k^T and its product with v as matrix products the
    # counter sees (it has no formula for the fused CPU kernel, which it would count as 0).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        inner(x, t, cond)
    return int(counter.get_total_flops())
