"""Pretrained models that ship with the course, so that any lesson can skip training.

``load_pretrained("mnist")`` returns the class-conditional U-Net (its EMA weights) and the noise
schedule it was trained with, read offline from ``data/pretrained/`` with
``torch.load(weights_only=True)``. Next to each weights file, a JSON file records the exact
command that produced it and the quality measured with :mod:`diffusion_edu.metrics`
(``scripts/make_pretrained.py`` writes both). The record also names the model's recommended
sampling settings, measured with ``scripts/measure_guidance.py``:
``sample(model, schedule, labels=..., **pretrained_info("mnist").recommended)``.

A record's recommended settings may autoguide (Karras et al. 2024) by another shipped model,
named in it (``"autoguidance": 2.0, "guide_model": NAME``): :attr:`PretrainedInfo.recommended`
loads that model, so ``sample(..., **pretrained_info(name).recommended)`` autoguides with it.

``load_pretrained("mnist-text")`` is lesson 09's text-conditioned digit model: the same small
U-Net with a tiny text encoder and cross-attention, sampled with
``sample(model, schedule, prompts=["a bold seven leaning right"])``; its record holds the
prompt-following scores (``scripts/make_pretrained_text.py`` trains and measures it).

``load_pretrained("mnist-latent")`` is latent diffusion (Rombach et al. 2022) for lesson 11:
a small autoencoder (28 x 28 digits <-> 7 x 7 x 4 latents) and a class-conditional
U-Net trained on its scaled latents; ``sample(model, schedule, labels=...)`` samples the
latents and decodes them, so it returns pixels like the other models
(``scripts/make_pretrained_latent.py`` trains and measures it).

``load_pretrained("mnist-dit")`` is the same recipe with a Diffusion Transformer (Peebles & Xie
2023) as the denoiser: the same kind of autoencoder, and a DiT reading the 7 x 7 x 4 latents as 49
tokens (patch size 1), as the paper's DiTs read Stable Diffusion's latents (their Sec. 3.1). A
DiT on pixels did not learn digits in the CPU budgets tried (docs/performance.md); on latents
it does (``scripts/make_pretrained_latent.py --denoiser dit``).

``load_pretrained("mnist-flow")`` is lesson 12's flow-matching model (Lipman et al. 2023): the
shipped ``mnist`` U-Net's architecture and training budget, trained to predict the velocity on
the straight path between a digit and noise (``--prediction flow``), sampled with
``sampler="euler"`` or ``"heun"``; its record holds the measured quality against the number
of steps next to the DDPM model's (``scripts/measure_flow_vs_ddpm.py``).

``load_pretrained("spiral")`` is lesson 05's 2-D toy noise predictor, trained on the spiral with
the lesson's own recipe (``scripts/make_pretrained_toy.py``); its record holds the fraction of
its samples that land off the spiral, and its file keeps the loss of every training step
(:func:`pretrained_losses`), so quick mode can show the curve of the full run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffusion_edu.checkpoints import CheckpointError, load_checkpoint
from diffusion_edu.data import data_dir, find_data_file
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "PRETRAINED_MODELS",
    "PRETRAINED_IMAGE_MODELS",
    "PretrainedInfo",
    "RECOMMENDABLE",
    "load_pretrained",
    "pretrained_info",
    "pretrained_losses",
]

# name -> file stem under data/pretrained/ (weights: STEM.pt, record: STEM.json)
PRETRAINED_MODELS: dict[str, str] = {
    "mnist": "mnist_unet",
    "mnist-text": "mnist_text",
    "mnist-latent": "mnist_latent",
    "mnist-dit": "mnist_dit",
    "mnist-flow": "mnist_flow",
    "spiral": "toy_spiral",
}
# The ones that draw images (what ``python -m diffusion_edu sample --pretrained`` offers);
# "spiral" is lesson 05's 2-D toy: its samples are points in the plane, not pictures.
PRETRAINED_IMAGE_MODELS: tuple[str, ...] = (
    "mnist", "mnist-text", "mnist-latent", "mnist-dit", "mnist-flow",
)  # fmt: skip
# The script that makes each file again (named when a file is missing).
_MAKERS: dict[str, str] = {
    "mnist": "scripts/make_pretrained.py",
    "mnist-text": "scripts/make_pretrained_text.py",
    "mnist-latent": "scripts/make_pretrained_latent.py",
    "mnist-dit": "scripts/make_pretrained_latent.py --denoiser dit",
    "mnist-flow": "scripts/make_pretrained.py --out data/pretrained/mnist_flow.pt",
    "spiral": "scripts/make_pretrained_toy.py",
}


#: The keyword arguments of ``sample()`` a record's "recommended" key may set (``guide_model``
#: as the name of another shipped model, loaded by :attr:`PretrainedInfo.recommended`).
RECOMMENDABLE: tuple[str, ...] = (
    "sampler", "steps", "eta", "guidance", "guidance_interval", "autoguidance", "guide_model",
)  # fmt: skip


@dataclass(frozen=True)
class PretrainedInfo:
    """What is recorded about a shipped model: how it was made and how good it is."""

    name: str
    weights: Path
    command: str
    record: dict[str, Any]

    @property
    def recommended(self) -> dict[str, Any]:
        """The model's recommended sampling settings, as keyword arguments for ``sample()``.

        Read from the record's "recommended" key (``{}`` if it has none), e.g.
        ``{"sampler": "ddim", "steps": 50, "eta": 1.0, "guidance": 1.5,
        "guidance_interval": (600, 900)}``;
        the record's "recommended_scores" holds what they were measured to give. JSON lists
        become tuples (``guidance_interval``); a ``guide_model`` (a shipped model's name, for
        autoguidance) becomes that model, loaded on the CPU (:func:`load_pretrained`). Use
        them as ``sample(model, schedule, labels=..., **info.recommended)``; any argument
        given after them overrides one (Python: ``{**info.recommended, "guidance": 1.0}``).
        """
        settings = self.recommended_names
        if "guide_model" in settings:
            settings["guide_model"] = load_pretrained(settings["guide_model"])[0]
        return settings

    @property
    def recommended_names(self) -> dict[str, Any]:
        """:attr:`recommended` as the record says it: a ``guide_model`` stays a name."""
        recommended = self.record.get("recommended", {})
        if not isinstance(recommended, dict):
            raise CheckpointError(
                f"{self.weights.with_suffix('.json')}: 'recommended' must be an object of "
                f"sample() keyword arguments, got {recommended!r}."
            )
        unknown = sorted(set(recommended) - set(RECOMMENDABLE))
        if unknown:
            raise CheckpointError(
                f"{self.weights.with_suffix('.json')}: 'recommended' has {', '.join(unknown)}, "
                f"which sample() settings do not include ({', '.join(RECOMMENDABLE)})."
            )
        guide = recommended.get("guide_model")
        if guide is not None and guide not in PRETRAINED_MODELS:
            raise CheckpointError(
                f"{self.weights.with_suffix('.json')}: 'recommended' names the guide_model "
                f"{guide!r}, which is not a shipped model ({', '.join(PRETRAINED_MODELS)})."
            )
        return {k: tuple(v) if isinstance(v, list) else v for k, v in recommended.items()}

    @property
    def recommended_flags(self) -> str:
        """The recommended settings as flags of ``python -m diffusion_edu sample``, e.g.
        ``"--sampler ddim --steps 50 --eta 1 --guidance 1.5 --guidance-interval 600 900"``
        (what ``sample --pretrained NAME`` uses when no flag is given)."""
        return sampling_flags(self.recommended_names)

    @property
    def recommended_text(self) -> str:
        """The recommended settings in words, e.g. ``"DDIM-50 (eta 1), guidance 1.5 at
        600 < t <= 900"``; ``"the samplers' defaults"`` if the record names none."""
        return sampling_text(self.recommended_names)


def sampling_flags(settings: dict[str, Any]) -> str:
    """``sample()`` keyword arguments as flags of ``python -m diffusion_edu sample``."""
    flags = []
    for key in (k for k in RECOMMENDABLE if k in settings):  # a fixed order
        value = settings[key]
        if isinstance(value, (tuple, list)):  # guidance_interval: two numbers
            text = " ".join(map(str, value))
        elif key == "guide_model" and not isinstance(value, str):
            raise ValueError("sampling_flags: give guide_model as a shipped model's name")
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        flags.append(f"--{key.replace('_', '-')} {text}")
    return " ".join(flags)


def sampling_text(settings: dict[str, Any]) -> str:
    """``sample()`` keyword arguments in words, e.g. ``"DDIM-50 (eta 1), guidance 2"``."""
    if not settings:
        return "the samplers' defaults"
    parts = []
    if "sampler" in settings:
        names = {"dpm-solver++": "DPM-Solver++", "euler": "Euler", "heun": "Heun"}
        name = names.get(str(settings["sampler"]), str(settings["sampler"]).upper())
        steps = settings.get("steps")
        text = name if steps is None else f"{name}-{steps}"
        if settings.get("eta"):
            text += f" (eta {settings['eta']:g})"
        parts.append(text)
    if "guidance" in settings:
        text = f"guidance {settings['guidance']:g}"
        if settings.get("guidance_interval") is not None:
            lo, hi = settings["guidance_interval"]
            text += f" at {lo} < t <= {hi}"
        parts.append(text)
    if settings.get("autoguidance", 1.0) != 1.0:
        guide = settings.get("guide_model")
        by = f" by {guide}" if isinstance(guide, str) else ""
        parts.append(f"autoguidance {settings['autoguidance']:g}{by}")
    return ", ".join(parts)


def _files(name: str) -> tuple[Path, Path]:
    if name not in PRETRAINED_MODELS:
        raise ValueError(
            f"no pretrained model called {name!r}; available: {', '.join(PRETRAINED_MODELS)}."
        )
    stem = PRETRAINED_MODELS[name]
    weights = find_data_file(f"pretrained/{stem}.pt")
    if weights is not None:
        return weights, weights.with_suffix(".json")
    raise FileNotFoundError(
        f"the pretrained weights {stem}.pt are not in {data_dir() / 'pretrained'}. Restore them "
        "from the repository (git checkout -- data/pretrained), or make them again with "
        f"{_MAKERS[name]} (see data/README.md)."
    )


def pretrained_info(name: str = "mnist") -> PretrainedInfo:
    """The recorded command and measured quality of a shipped model (from its JSON file)."""
    weights, record_path = _files(name)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{record_path}: cannot read the model's record ({error}).") from None
    return PretrainedInfo(name=name, weights=weights, command=record["command"], record=record)


def load_pretrained(
    name: str = "mnist", device: torch.device | str | None = None
) -> tuple[nn.Module, NoiseSchedule]:
    """The shipped model (EMA weights, eval mode) and its schedule, ready for ``sample(...)``.

    Example::

        model, schedule = load_pretrained("mnist")
        settings = pretrained_info("mnist").recommended  # sampler, steps, guidance, interval
        digits = sample(model, schedule, labels=range(10), **settings)

        toy, toy_schedule = load_pretrained("spiral")  # lesson 05's 2-D noise predictor
        points = sample_points(toy, toy_schedule, n=1000)  # (diffusion_edu.toy2d)
    """
    weights, _ = _files(name)
    checkpoint = load_checkpoint(weights)
    assert checkpoint.schedule is not None  # every shipped model is a diffusion model
    return checkpoint.build_model(ema=True, device=device), checkpoint.schedule


def pretrained_losses(name: str) -> list[float]:
    """The loss of every training step of a shipped model, as kept in its weights file.

    Empty if the file keeps none (the MNIST model's does not: it was exported from a
    checkpoint without its history).
    """
    weights, _ = _files(name)
    history = load_checkpoint(weights).history or {}
    return [float(loss) for loss in history.get("loss", [])]
