"""The small MNIST classifier behind the course's quality metrics, and its weights file.

A LeNet-style CNN (:class:`MNISTClassifier`) trained by ``scripts/train_classifier.py`` on the
4,500 bundled training digits only, with the course's one training loop; it ships as
``data/mnist_classifier.pt``, a plain dict of tensors and values (loaded with
``torch.load(weights_only=True)``). :func:`load_classifier` reads it (offline, cached);
:func:`classifier_features` and :func:`classifier_predictions` run it on digits. The scores
built on it live in :mod:`diffusion_edu.metrics`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_edu.data import find_data_file, repo_data_dir
from diffusion_edu.files import atomic_write

__all__ = [
    "CLASSIFIER_FILENAME",
    "ClassifierConfig",
    "MNISTClassifier",
    "ClassifierRecord",
    "ClassifierWeightsError",
    "classifier_path",
    "save_classifier",
    "read_classifier_file",
    "load_classifier",
    "check_digit_images",
    "classifier_features",
    "classifier_predictions",
]

CLASSIFIER_FILENAME = "mnist_classifier.pt"
"""The shipped classifier weights in ``data/``, made by ``scripts/train_classifier.py``."""

CLASSIFIER_FORMAT = "diffusion_edu.mnist_classifier"
CLASSIFIER_FORMAT_VERSION = 1
REGENERATE_HINT = (
    "Restore it from the repository (git checkout -- data/mnist_classifier.pt), or "
    "regenerate it (a few minutes on a 2-core CPU) from the repository root with:\n"
    "    .venv/bin/python scripts/train_classifier.py"
)


# ----------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class ClassifierConfig:
    """Shape of a :class:`MNISTClassifier` (LeNet-5 layout, LeCun et al., 1998).

    conv 5x5 (padded) -> SiLU -> max-pool 2 -> conv 5x5 -> SiLU -> max-pool 2 ->
    fc -> SiLU -> fc (the *feature* layer) -> SiLU -> fc -> 10 logits.

    Attributes:
        channels: output channels of the two convolutions (LeNet-5: 6 and 16).
        hidden: width of the first fully connected layer (LeNet-5: 120).
        feature_dim: width of the penultimate layer whose activations the Frechet
            distance compares (LeNet-5: 84).
        n_classes: 10 digits.
        dropout: dropout before the two last fully connected layers (training only).
        image_size: height = width of the input images.
    """

    channels: tuple[int, int] = (16, 32)
    hidden: int = 128
    feature_dim: int = 64
    n_classes: int = 10
    dropout: float = 0.3
    image_size: int = 28


class MNISTClassifier(nn.Module):
    """A small LeNet-style CNN: ``model(x) -> logits`` and ``model.features(x)``.

    Input: (B, 1, 28, 28) in [-1, 1]. ``features`` returns the penultimate layer's
    activations (B, feature_dim), the representation the Frechet distance uses.
    """

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ClassifierConfig()
        c1, c2 = config.channels
        side = (config.image_size // 2 - 4) // 2  # 28 -> pool 14 -> conv 10 -> pool 5
        if side < 1:
            raise ValueError(f"image_size {config.image_size} is too small for two 5x5 convs.")
        self.conv1 = nn.Conv2d(1, c1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5)
        self.fc1 = nn.Linear(c2 * side * side, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.feature_dim)
        self.fc3 = nn.Linear(config.feature_dim, config.n_classes)
        self.dropout = nn.Dropout(config.dropout)
        # Accuracy on the 500 held-out digits, as recorded in the weights file (NaN until
        # loaded by load_classifier); reports show it as the ceiling for class agreement.
        self.heldout_accuracy = math.nan

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, (B, 1, H, W) -> (B, feature_dim)."""
        h = F.max_pool2d(F.silu(self.conv1(x)), 2)  # (B, c1, 14, 14)
        h = F.max_pool2d(F.silu(self.conv2(h)), 2)  # (B, c2, 5, 5)
        h = h.flatten(1)  # (B, c2 * 25)
        h = self.dropout(F.silu(self.fc1(h)))  # (B, hidden)
        return F.silu(self.fc2(h))  # (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, (B, 1, H, W) -> (B, n_classes)."""
        return self.fc3(self.dropout(self.features(x)))


class ClassifierWeightsError(RuntimeError):
    """The classifier weights file is missing or unreadable; the message says how to fix it."""


@dataclass(frozen=True, eq=False)  # eq=False: holds tensors
class ClassifierRecord:
    """Everything stored in ``data/mnist_classifier.pt``.

    Attributes:
        config: the model's shape.
        state_dict: parameter name -> tensor.
        heldout_accuracy: accuracy on the 500 bundled held-out digits, measured by the
            training script right after training.
        heldout_count: how many held-out digits that accuracy was measured on.
        train_command: the command that produced the file (all options spelled out).
        training: other facts about the run (seed, epochs, seconds, torch version, ...).
    """

    config: ClassifierConfig
    state_dict: Mapping[str, torch.Tensor] = field(repr=False)
    heldout_accuracy: float
    heldout_count: int
    train_command: str
    training: Mapping[str, int | float | str | bool]


def classifier_path() -> Path:
    """Where the classifier weights live (:func:`~diffusion_edu.data.find_data_file`)."""
    return find_data_file(CLASSIFIER_FILENAME) or repo_data_dir() / CLASSIFIER_FILENAME


def save_classifier(
    model: MNISTClassifier,
    path: str | os.PathLike[str],
    *,
    heldout_accuracy: float,
    heldout_count: int,
    train_command: str,
    training: Mapping[str, int | float | str | bool] | None = None,
) -> Path:
    """Write the weights as a plain dict of tensors and values, atomically.

    The file holds only tensors, numbers, strings, lists and dicts, so it loads with
    ``torch.load(path, weights_only=True)`` (no pickled code runs). It is written to a
    temporary file in the same folder and moved over ``path`` with ``os.replace``, so a
    crash never leaves half a file behind.
    """
    path = Path(path)
    config = asdict(model.config)
    config["channels"] = list(config["channels"])
    payload = {
        "format": CLASSIFIER_FORMAT,
        "format_version": CLASSIFIER_FORMAT_VERSION,
        "config": config,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "heldout_accuracy": float(heldout_accuracy),
        "heldout_count": int(heldout_count),
        "train_command": str(train_command),
        # Plain Python types only: e.g. torch.__version__ is a str subclass that
        # weights_only loading refuses.
        "training": {str(k): _plain(v) for k, v in (training or {}).items()},
    }
    atomic_write(path, lambda file: torch.save(payload, file))
    return path


def _plain(value: int | float | str | bool) -> int | float | str | bool:
    for kind in (bool, int, float):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def read_classifier_file(path: str | os.PathLike[str] | None = None) -> ClassifierRecord:
    """Read and check the weights file (``torch.load(..., weights_only=True)`` only).

    Raises:
        ClassifierWeightsError: if the file is missing, is not a classifier file, or is
            corrupt; the message says how to restore or regenerate it.
    """
    path = Path(path) if path is not None else classifier_path()
    if not path.is_file():
        raise ClassifierWeightsError(
            f"The MNIST classifier weights {path} are missing. {REGENERATE_HINT}"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, not a torch file, unsafe pickle, ...
        raise ClassifierWeightsError(
            f"The MNIST classifier weights {path} are corrupt or not a torch file "
            f"({type(error).__name__}: {str(error)[:200]}). {REGENERATE_HINT}"
        ) from error
    try:
        if payload.get("format") != CLASSIFIER_FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, not {CLASSIFIER_FORMAT!r}")
        if payload["format_version"] != CLASSIFIER_FORMAT_VERSION:
            raise ValueError(f"format_version {payload['format_version']} is not supported")
        raw = dict(payload["config"])
        raw["channels"] = tuple(raw["channels"])
        record = ClassifierRecord(
            config=ClassifierConfig(**raw),
            state_dict=dict(payload["state_dict"]),
            heldout_accuracy=float(payload["heldout_accuracy"]),
            heldout_count=int(payload["heldout_count"]),
            train_command=str(payload["train_command"]),
            training=dict(payload["training"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ClassifierWeightsError(
            f"The MNIST classifier weights {path} do not hold what the course expects "
            f"({type(error).__name__}: {error}). {REGENERATE_HINT}"
        ) from error
    return record


@lru_cache(maxsize=4)
def _load_cached(path: str, stamp: tuple[int, int], device: str) -> MNISTClassifier:
    # ``stamp`` (mtime, size) is part of the cache key so a regenerated file is reloaded.
    record = read_classifier_file(path)
    model = MNISTClassifier(record.config)
    try:
        model.load_state_dict(record.state_dict, strict=True)
    except RuntimeError as error:  # missing / unexpected keys, wrong shapes
        raise ClassifierWeightsError(
            f"The MNIST classifier weights {path} do not fit the model "
            f"({str(error)[:300]}). {REGENERATE_HINT}"
        ) from error
    model.heldout_accuracy = record.heldout_accuracy
    return model.to(device).eval().requires_grad_(False)


def load_classifier(
    path: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu"
) -> MNISTClassifier:
    """The shipped MNIST classifier, in eval mode with gradients off (offline, cached).

    Args:
        path: a weights file; default :func:`classifier_path` (``data/mnist_classifier.pt``).
        device: where to put it. The default is the CPU: the network is tiny, and on the
            CPU every machine gets the same numbers.

    Returns:
        The model, shared between calls with the same file and device (do not train it).

    Raises:
        ClassifierWeightsError: if the file is missing or corrupt (says how to regenerate).
    """
    resolved = Path(path) if path is not None else classifier_path()
    try:
        stat = resolved.stat()
    except OSError:
        read_classifier_file(resolved)  # raises the friendly "missing" error
        raise
    return _load_cached(str(resolved.resolve()), (stat.st_mtime_ns, stat.st_size), str(device))


# ----------------------------------------------------------------------------- features


def check_digit_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"{name} must be a tensor of shape (N, 1, 28, 28), got {shape}.")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be float in [-1, 1], got {images.dtype}.")
    if images.min() >= 0 and images.max() > 0.5:
        warnings.warn(
            f"{name} look like they are in [0, 1]; the metrics expect [-1, 1] (use x * 2 - 1).",
            stacklevel=3,
        )


def _classifier(classifier: MNISTClassifier | None) -> MNISTClassifier:
    return classifier if classifier is not None else load_classifier()


@torch.no_grad()
def _run_classifier(
    images: torch.Tensor, classifier: MNISTClassifier, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    check_digit_images(images)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    features, logits = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device=device, dtype=torch.float32)
        h = classifier.features(x)  # (B, feature_dim)
        features.append(h.cpu())
        logits.append(classifier.fc3(h).cpu())  # (B, n_classes)
    classifier.train(was_training)
    return torch.cat(features), torch.cat(logits)


def classifier_features(
    images: torch.Tensor, classifier: MNISTClassifier | None = None, batch_size: int = 500
) -> torch.Tensor:
    """The classifier's penultimate activations: (N, 1, 28, 28) -> (N, feature_dim), CPU."""
    return _run_classifier(images, _classifier(classifier), batch_size)[0]


def classifier_predictions(
    images: torch.Tensor, classifier: MNISTClassifier | None = None, batch_size: int = 500
) -> torch.Tensor:
    """The digit the classifier sees in each image: argmax of its logits, (N,) int64, CPU."""
    return _run_classifier(images, _classifier(classifier), batch_size)[1].argmax(dim=1)
