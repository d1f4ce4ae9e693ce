"""Checkpoints: save a trained model (and everything needed to resume training) safely.

A checkpoint is ONE file written with ``torch.save``. It holds only plain data - dicts, lists,
numbers, strings and tensors - so it can be read back with ``torch.load(..., weights_only=True)``,
which refuses to run code. (A plain ``torch.load`` unpickles arbitrary Python objects, and a
pickle can be made to run any function while loading: never use it on a file you did not make.)

What is inside (``format_version`` 1):

=====================  ===========================================================
key                    value
=====================  ===========================================================
``format``             the string ``"diffusion_edu.checkpoint"``
``format_version``     1
``model_config``       the :class:`~diffusion_edu.UNetConfig` as a plain dict
``model``              the model's ``state_dict`` (the raw, last-step weights)
``ema``                the EMA weights' ``state_dict`` (what samples best), or None
``schedule``           :meth:`NoiseSchedule.to_dict` (name, T, betas)
``step``               how many optimiser steps were taken
``optimizer``          the optimiser's ``state_dict``, or None
``rng``                random-number-generator states (for an exact resume), or None
``train_config``       the training hyper-parameters as a plain dict, or None
``history``            per-step logs ``{"step": [...], "loss": [...], ...}``, or None
=====================  ===========================================================

Files are written atomically: to a temporary file in the same folder, flushed to disk
(``fsync``), then renamed over the old file with ``os.replace``. A crash mid-write leaves the
previous checkpoint intact, never half a file.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffusion_edu.files import atomic_write
from diffusion_edu.models.unet import UNet, UNetConfig
from diffusion_edu.schedules import NoiseSchedule

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "atomic_write"]

FORMAT = "diffusion_edu.checkpoint"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("model_config", "model", "schedule", "step")


class CheckpointError(ValueError):
    """A file is not a usable diffusion_edu checkpoint; the message says why and what to do."""


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class Checkpoint:
    """What :func:`load_checkpoint` returns. Build a model with :meth:`build_model`."""

    model_config: UNetConfig
    model_state: dict[str, torch.Tensor] = field(repr=False)
    schedule: NoiseSchedule
    step: int
    ema_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    rng_state: dict[str, Any] | None = field(default=None, repr=False)
    train_config: dict[str, Any] | None = None
    history: dict[str, list[float]] | None = field(default=None, repr=False)
    path: Path | None = None

    def build_model(self, ema: bool = True, device: torch.device | str | None = None) -> UNet:
        """A :class:`UNet` with the saved weights, in eval mode.

        ``ema=True`` (default) loads the EMA weights when the checkpoint has them: they are the
        ones to sample from. ``ema=False`` loads the raw last-step weights.
        """
        model = UNet(self.model_config)
        state = self.ema_state if (ema and self.ema_state is not None) else self.model_state
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(
                f"{self.path or 'checkpoint'}: the saved weights do not fit the saved model "
                f"config {self.model_config} ({str(error).splitlines()[0]}). The file was "
                "probably edited or written by another version; retrain or re-export it."
            ) from error
        if device is not None:
            model = model.to(device)
        return model.eval()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside a DistributedDataParallel / torch.compile wrapper."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _config_to_dict(config: UNetConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["channel_mults"] = list(d["channel_mults"])  # plain list: safe for weights_only loading
    return d


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    *,
    step: int = 0,
    ema_model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    rng_state: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
    history: Mapping[str, list[float]] | None = None,
) -> Path:
    """Write a checkpoint atomically (see the module docstring for what it holds).

    Args:
        path: the file to write, e.g. ``runs/mnist/checkpoint.pt``; folders are created.
        model: the trained :class:`UNet` (a DDP-wrapped one is unwrapped).
        schedule: the noise schedule it was trained with (sampling needs the same one).
        step: optimiser steps taken so far.
        ema_model: the exponential moving average of the weights, if kept.
        optimizer, rng_state, train_config, history: what an exact resume needs.

    Returns:
        The path written.
    """
    model = _unwrap(model)
    config = getattr(model, "config", None)
    if not isinstance(config, UNetConfig):
        raise TypeError(
            f"save_checkpoint saves a diffusion_edu UNet (it records model.config), "
            f"got {type(model).__name__}. For other models use torch.save(model.state_dict())."
        )
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": _config_to_dict(config),
        "model": _cpu_state(model.state_dict()),
        "ema": _cpu_state(_unwrap(ema_model).state_dict()) if ema_model is not None else None,
        "schedule": schedule.to_dict(),
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": dict(rng_state) if rng_state is not None else None,
        "train_config": dict(train_config) if train_config is not None else None,
        "history": {k: list(v) for k, v in history.items()} if history is not None else None,
    }
    return atomic_write(path, lambda file: torch.save(payload, file))


def _cpu_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


# ----------------------------------------------------------------------------- reading
def load_checkpoint(
    path: str | os.PathLike[str], map_location: torch.device | str = "cpu"
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, safely.

    Uses ``torch.load(..., weights_only=True)`` only: a file that tries to build arbitrary
    Python objects (a malicious pickle) is refused before anything in it runs.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is truncated, not a checkpoint, unsafe, or inconsistent;
            the message names the file and says what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such checkpoint file. Train one first (python -m diffusion_edu train "
            "--out DIR writes DIR/checkpoint.pt) or check the path."
        )
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder; give the checkpoint file inside it "
            f"(e.g. {path / 'checkpoint.pt'})."
        )
    with open(path, "rb") as file:
        head = file.read(4)
    if not head:
        raise CheckpointError(
            f"{path} is empty (0 bytes): an interrupted save or copy. Use another copy, or "
            "retrain with python -m diffusion_edu train."
        )
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        # torch.save writes a zip archive ("PK..."); very old files are a raw pickle (0x80).
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint file (it starts with {head!r}, not a zip "
            "archive). Give the checkpoint.pt written by python -m diffusion_edu train."
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file is not plain tensors and numbers "
            f"({_first_line(error)}). It may be a model saved with torch.save(model), a corrupt "
            "file, or a malicious pickle. Only load checkpoints you trust, written by "
            "diffusion_edu's save_checkpoint."
        ) from None
    except Exception as error:  # torch.load raises many types on damaged files
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch file ({_first_line(error)}). It is probably "
            "truncated (an interrupted copy or save) or not a checkpoint at all; use another "
            "copy, or retrain with python -m diffusion_edu train."
        ) from None
    return _validate(payload, path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    detail = text[0][:160] if text else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _validate(payload: Any, path: Path) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, torch.Tensor):
            what = f"a single tensor of shape {tuple(payload.shape)}"
        elif (
            isinstance(payload, dict)
            and payload
            and all(isinstance(v, torch.Tensor) for v in payload.values())
        ):
            what = "a bare state_dict (weights without the model config or schedule)"
        else:
            what = f"a {type(payload).__name__}"
        raise CheckpointError(
            f"{path} holds {what}, not a diffusion_edu checkpoint. Write checkpoints with "
            "diffusion_edu.save_checkpoint (or python -m diffusion_edu train)."
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}, this diffusion_edu reads version "
            f"{FORMAT_VERSION}. Update diffusion_edu or retrain."
        )
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint is missing {', '.join(missing)}; it is damaged. Use another copy."
        )
    try:
        config_dict = dict(payload["model_config"])
        config_dict["channel_mults"] = tuple(config_dict["channel_mults"])
        config = UNetConfig(**config_dict)
        schedule = NoiseSchedule.from_dict(payload["schedule"])
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{path}: the saved model config or schedule is invalid ({error}). "
            "The file was written by another version or edited; retrain."
        ) from None
    return Checkpoint(
        model_config=config,
        model_state=payload["model"],
        schedule=schedule,
        step=int(payload["step"]),
        ema_state=payload.get("ema"),
        optimizer_state=payload.get("optimizer"),
        rng_state=payload.get("rng"),
        train_config=payload.get("train_config"),
        history=payload.get("history"),
        path=path,
    )
