"""Tests for diffusion_edu.classifier: the shipped MNIST classifier and its weights file (loads
with weights_only, records its held-out accuracy, is cached and frozen, and a missing or
corrupt file says how to regenerate it). The scores built on it: test_metrics.py."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.classifier import (
    ClassifierWeightsError,
    MNISTClassifier,
    classifier_path,
    load_classifier,
    read_classifier_file,
    save_classifier,
)
from diffusion_edu.metrics import class_agreement, reference_digits


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, torch.Tensor]:
    return reference_digits("test")


def test_shipped_weights_load_with_weights_only_and_record_at_least_97_percent() -> None:
    path = classifier_path()
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size < 1_000_000, "the shipped weights should stay well under 1 MB"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(payload["state_dict"], dict)
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    assert payload["heldout_count"] == 500
    assert payload["heldout_accuracy"] >= 0.97
    assert "scripts/train_classifier.py" in payload["train_command"]


def test_recomputed_heldout_accuracy_matches_the_recorded_value(heldout) -> None:
    images, labels = heldout
    recorded = read_classifier_file().heldout_accuracy
    recomputed = class_agreement(images, labels)  # agreement on real digits = accuracy
    assert recomputed >= 0.97
    assert abs(recomputed - recorded) <= 0.005, (recomputed, recorded)


def test_load_classifier_is_cached_frozen_and_in_eval_mode() -> None:
    model = load_classifier()
    assert model is load_classifier()
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_missing_weights_file_says_how_to_regenerate(tmp_path) -> None:
    with pytest.raises(ClassifierWeightsError, match="missing") as info:
        load_classifier(tmp_path / "nope.pt")
    assert "scripts/train_classifier.py" in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_dict", "wrong_shapes"])
def test_corrupt_weights_file_says_how_to_regenerate(tmp_path, damage: str) -> None:
    path = tmp_path / "mnist_classifier.pt"
    if damage == "garbage":
        path.write_bytes(b"this is not a torch file" * 10)
    elif damage == "truncated":
        good = classifier_path().read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif damage == "wrong_dict":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        payload = torch.load(classifier_path(), weights_only=True)
        payload["state_dict"]["fc3.weight"] = torch.zeros(3, 3)
        torch.save(payload, path)
    with pytest.raises(ClassifierWeightsError) as info:
        load_classifier(path)
    assert "scripts/train_classifier.py" in str(info.value)
    assert str(path) in str(info.value)


def test_save_is_atomic_and_round_trips(tmp_path, heldout) -> None:
    model = MNISTClassifier().eval()
    path = save_classifier(
        model, tmp_path / "c.pt", heldout_accuracy=0.5, heldout_count=500, train_command="x"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left over
    loaded = load_classifier(path)
    x = heldout[0][:8]
    torch.testing.assert_close(loaded(x), model(x))
    assert read_classifier_file(path).heldout_accuracy == 0.5
