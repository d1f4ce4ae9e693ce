"""Checkpoints (diffusion_edu.checkpoints): round trip, exact resume, and refusing bad or
malicious files. (Atomic writes: test_files.py.)"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from diffusion_edu.checkpoints import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import DiffusionLoss

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture
def make_trainer(tiny_unet, fake_digits):  # noqa: ANN001, ANN201
    """``make_trainer(steps, schedule=None)``: a seeded Trainer of the tiny U-Net on 48 fake
    digits (both from conftest.py)."""

    def make(steps: int, schedule: NoiseSchedule | None = None) -> Trainer:
        torch.manual_seed(0)
        images, labels = fake_digits(48)
        config = TrainConfig(steps=steps, batch_size=8, warmup_steps=2, precision="fp32", seed=7)
        loss = DiffusionLoss(schedule or NoiseSchedule.cosine(T=200), min_snr_gamma=5.0)
        return Trainer(
            tiny_unet(), loss, TensorBatches(images, labels), config, "cpu", verbose=False,
            progress=False,
        )  # fmt: skip

    return make


# ----------------------------------------------------------------------------- round trip
def test_round_trip_restores_config_weights_ema_schedule_and_step(
    tmp_path: Path, make_trainer, tiny_unet
) -> None:
    trainer = make_trainer(steps=3)
    list(trainer.run())
    path = trainer.save(tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.model_config == tiny_unet().config and ckpt.step == 3
    assert ckpt.schedule == trainer.loss.schedule and ckpt.schedule.name == "cosine"
    assert TrainConfig.from_dict(ckpt.train_config) == trainer.config
    assert ckpt.loss == {"min_snr_gamma": 5.0, "cond_dropout": 0.1} and ckpt.model_kind == "unet"
    assert ckpt.history["loss"] == [r.loss for r in trainer.history]
    for ema, want in ((False, trainer.model), (True, trainer.ema_model)):
        model = ckpt.build_model(ema=ema)
        assert not model.training
        for name, value in want.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_checkpoint_is_plain_data_loadable_with_weights_only(tmp_path: Path, make_trainer) -> None:
    trainer = make_trainer(steps=1)
    list(trainer.run())
    path = trainer.save(tmp_path / "ckpt.pt")
    payload = torch.load(path, weights_only=True)  # raises if anything needs unpickling code
    assert payload["format"] == "diffusion_edu.checkpoint"
    assert payload["model_config"]["channel_mults"] == [1, 2]
    assert payload["schedule"]["name"] == "cosine"


def test_resume_gives_the_same_losses_and_weights_as_an_uninterrupted_run(
    tmp_path: Path, make_trainer
) -> None:
    straight = make_trainer(steps=6)
    losses_straight = [r.loss for r in straight.run()]

    first = make_trainer(steps=6)
    losses_a = [r.loss for r in first.run(steps=3)]
    first.save(tmp_path / "half.pt")
    del first
    second = make_trainer(steps=6)  # a fresh process would build exactly this
    torch.manual_seed(12345)  # disturb the global RNG: resume must not depend on it
    second.load_state(load_checkpoint(tmp_path / "half.pt"))
    losses_b = [r.loss for r in second.run()]

    assert second.step == 6
    assert losses_a + losses_b == losses_straight  # bit for bit
    assert [r.step for r in second.history] == [1, 2, 3, 4, 5, 6]  # typed records restored
    assert [r.loss for r in second.history] == losses_straight
    assert second.history[3].seconds > second.history[2].seconds  # training time adds up
    for got, want in ((second.model, straight.model), (second.ema_model, straight.ema_model)):
        for name, value in want.state_dict().items():
            torch.testing.assert_close(got.state_dict()[name], value, rtol=0, atol=0)


def test_save_rejects_a_model_it_could_not_rebuild(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="MODEL_CLASSES.*state_dict"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2), NoiseSchedule.linear())


def test_any_registered_model_round_trips_and_records_what_it_predicts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    toy = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1, num_classes=2, prediction="v"))
    path = save_checkpoint(tmp_path / "toy.pt", toy, NoiseSchedule.cosine(T=50), step=9)
    ckpt = load_checkpoint(path)
    assert ckpt.model_kind == "toy_mlp" and ckpt.model_config == toy.config
    rebuilt = ckpt.build_model()
    assert type(rebuilt) is ToyNoisePredictor and rebuilt.prediction == "v"
    x, t = torch.randn(3, 2), torch.tensor([1, 20, 50])
    torch.testing.assert_close(rebuilt(x, t), toy(x, t), rtol=0, atol=0)


def test_the_shipped_format_1_file_still_loads_as_an_eps_unet() -> None:
    """data/pretrained/mnist_unet.pt was written before format 2: it must keep working."""
    ckpt = load_checkpoint(Path(__file__).parents[1] / "data/pretrained/mnist_unet.pt")
    payload = torch.load(ckpt.path, weights_only=True)
    assert payload["format_version"] == 1 and "model_kind" not in payload
    assert ckpt.model_kind == "unet" and ckpt.build_model().prediction == "eps"
    assert ckpt.loss == {"min_snr_gamma": 5.0, "cond_dropout": 0.1}  # from its train_config


# ----------------------------------------------------------------------------- bad files
def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="diffusion_edu train"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint_is_refused(tmp_path: Path, tiny_unet) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny_unet(), NoiseSchedule.linear())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"hello, I am a text file\n", r"not a PyTorch checkpoint file \(it starts with b'hell'"),
        (b"", r"is empty \(0 bytes\)"),
        (b"PK\x03\x04 zip-looking garbage", "cannot be read as a PyTorch file"),
        (b"\x80\x04 pickle-looking garbage", "refused|cannot be read"),
    ],
)
def test_a_text_file_is_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_a_plain_tensor_or_bare_state_dict_is_refused_with_what_it_is(
    tmp_path: Path, tiny_unet
) -> None:
    torch.save(torch.zeros(3, 4), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match=r"single tensor of shape \(3, 4\)"):
        load_checkpoint(tmp_path / "tensor.pt")
    torch.save(tiny_unet().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="bare state_dict"):
        load_checkpoint(tmp_path / "weights.pt")


def test_a_checkpoint_from_another_format_version_is_refused(tmp_path: Path, tiny_unet) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny_unet(), NoiseSchedule.linear())
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


class _WritesAMarker:
    """A pickle payload that runs code when unpickled: creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    payload = {"format": "diffusion_edu.checkpoint", "model": _WritesAMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as file:
            pickle.dump(payload, file)
    # The exploit is real: an unsafe load runs it...
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as file:
            pickle.load(file)  # noqa: S301 (that is the point)
    assert marker.read_text() == "pwned"
    os.remove(marker)
    # ...load_checkpoint refuses it before anything runs.
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path, tiny_unet) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny_unet(), NoiseSchedule.linear())
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["base_channels"] = 16
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path).build_model()
