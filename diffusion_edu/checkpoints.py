"""Checkpoints: save a trained model (and everything needed to resume training) safely.

A checkpoint is ONE file written with ``torch.save``. It holds only plain data - dicts, lists,
numbers, strings and tensors - so it can be read back with ``torch.load(..., weights_only=True)``,
which refuses to run code. (A plain ``torch.load`` unpickles arbitrary Python objects, and a
pickle can be made to run any function while loading: never use it on a file you did not make.)

What is inside (``format_version`` 2; version 1 files, which had no ``model_kind``, ``loss``,
``plan`` or ``extra``, are still read):

=====================  ===========================================================
key                    value
=====================  ===========================================================
``format``             the string ``"diffusion_edu.checkpoint"``
``format_version``     2
``model_kind``         which model class, e.g. ``"unet"`` (``diffusion_edu.models.MODEL_CLASSES``)
``model_config``       the model's config dataclass as a plain dict (its ``prediction`` too)
``model``              the model's ``state_dict`` (the raw, last-step weights)
``ema``                the EMA weights' ``state_dict`` (what samples best), or None
``schedule``           :meth:`NoiseSchedule.to_dict` (name, T, betas), or None
``step``               how many optimiser steps were taken
``optimizer``          the optimiser's ``state_dict``, or None
``rng``                random-number-generator states (for an exact resume), or None
``train_config``       the loop's :class:`~diffusion_edu.TrainConfig` as a plain dict, or None
``loss``               the loss's settings (e.g. Min-SNR gamma, condition dropout), or None
``history``            per-step records as columns ``{"step": [...], "loss": [...], ...}``, or None
``plan``               what a wall-clock budget decided (steps in total), or None
``extra``              plain data of the program that trained it (e.g. the CLI's data options)
=====================  ===========================================================

Files are written atomically: to a temporary file in the same folder, flushed to disk
(``fsync``), then renamed over the old file with ``os.replace``. A crash mid-write leaves the
previous checkpoint intact, never half a file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffusion_edu.files import atomic_write
from diffusion_edu.models.common import (
    MODEL_CLASSES,
    config_from_dict,
    config_to_dict,
    model_kind,
    unwrap,
)
from diffusion_edu.schedules import NoiseSchedule

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT = "diffusion_edu.checkpoint"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_REQUIRED_KEYS = ("model_config", "model", "step")


class CheckpointError(ValueError):
    """A file is not a usable diffusion_edu checkpoint; the message says why and what to do."""


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value
class Checkpoint:
    """What :func:`load_checkpoint` returns. Build a model with :meth:`build_model`."""

    model_kind: str
    model_config: Any
    model_state: dict[str, torch.Tensor] = field(repr=False)
    schedule: NoiseSchedule | None
    step: int
    ema_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    rng_state: dict[str, Any] | None = field(default=None, repr=False)
    train_config: dict[str, Any] | None = None
    loss: dict[str, Any] | None = None
    history: dict[str, list[float]] | None = field(default=None, repr=False)
    plan: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    path: Path | None = None

    def build_model(
        self, ema: bool = True, device: torch.device | str | None = None
    ) -> torch.nn.Module:
        """The model with the saved weights, in eval mode.

        ``ema=True`` (default) loads the EMA weights when the checkpoint has them: they are the
        ones to sample from. ``ema=False`` loads the raw last-step weights.
        """
        model = MODEL_CLASSES[self.model_kind](self.model_config)
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


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    schedule: NoiseSchedule | None = None,
    *,
    step: int = 0,
    ema_model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    rng_state: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, float]] | None = None,
    loss: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (see the module docstring for what it holds).

    Args:
        path: the file to write, e.g. ``runs/mnist/checkpoint.pt``; folders are created.
        model: the trained model, one of ``diffusion_edu.models.MODEL_CLASSES`` (a DDP or
            compiled one is unwrapped).
        schedule: the noise schedule it was trained with (sampling needs the same one).
        step: optimiser steps taken so far.
        ema_model: the exponential moving average of the weights, if kept.
        optimizer, rng_state, train_config, history, loss, plan: what an exact resume needs
            (``history``: one mapping per step, stored as columns).
        extra: any other plain data to keep with it.

    Returns:
        The path written.
    """
    model = unwrap(model)
    kind = model_kind(model)  # a TypeError that says what to do, for other classes
    columns = None
    if history is not None:
        names = list(history[0]) if history else []
        columns = {k: [float(r[k]) for r in history] for k in names}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_kind": kind,
        "model_config": config_to_dict(model.config),
        "model": _cpu_state(model.state_dict()),
        "ema": _cpu_state(unwrap(ema_model).state_dict()) if ema_model is not None else None,
        "schedule": schedule.to_dict() if schedule is not None else None,
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": dict(rng_state) if rng_state is not None else None,
        "train_config": dict(train_config) if train_config is not None else None,
        "loss": dict(loss) if loss is not None else None,
        "history": columns,
        "plan": dict(plan) if plan is not None else None,
        "extra": dict(extra) if extra is not None else None,
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
    if version not in _READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}, this diffusion_edu reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))}. Update diffusion_edu or retrain."
        )
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint is missing {', '.join(missing)}; it is damaged. Use another copy."
        )
    kind = payload.get("model_kind", "unet")  # version 1 held U-Nets only
    try:
        config = config_from_dict(kind, dict(payload["model_config"]))
        saved_schedule = payload.get("schedule")
        schedule = NoiseSchedule.from_dict(saved_schedule) if saved_schedule else None
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{path}: the saved model config or schedule is invalid ({error}). "
            "The file was written by another version or edited; retrain."
        ) from None
    train_config, loss = payload.get("train_config"), payload.get("loss")
    extra = payload.get("extra")
    if version == 1 and train_config is not None:  # the loss's settings lived in train_config
        loss = {
            "min_snr_gamma": train_config.get("min_snr_gamma", 0.0),
            "cond_dropout": train_config.get("label_dropout", 0.1),
        }
        extra = {"augment": bool(train_config.get("augment", False))}
    return Checkpoint(
        model_kind=kind,
        model_config=config,
        model_state=payload["model"],
        schedule=schedule,
        step=int(payload["step"]),
        ema_state=payload.get("ema"),
        optimizer_state=payload.get("optimizer"),
        rng_state=payload.get("rng"),
        train_config=train_config,
        loss=loss,
        history=payload.get("history"),
        plan=payload.get("plan"),
        extra=extra,
        path=path,
    )
