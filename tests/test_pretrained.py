"""The shipped pretrained model: loads offline, matches its record, draws recognisable digits."""

import json

import pytest
import torch

from diffusion_edu import NoiseSchedule, load_pretrained, pretrained_info, sample
from diffusion_edu.checkpoints import save_checkpoint
from diffusion_edu.metrics import class_agreement


def test_load_pretrained_reads_weights_and_schedule_from_the_data_folder(
    tmp_path, monkeypatch, tiny_unet
):
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    model = tiny_unet()
    config = model.config
    torch.nn.init.normal_(model.conv_out.weight)
    schedule = NoiseSchedule.cosine(T=50)
    save_checkpoint(tmp_path / "pretrained" / "mnist_unet.pt", model, schedule, step=7)
    (tmp_path / "pretrained" / "mnist_unet.json").write_text(json.dumps({"command": "train"}))
    loaded, loaded_schedule = load_pretrained("mnist")
    assert loaded.config == config and loaded_schedule == schedule and not loaded.training
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert pretrained_info("mnist").command == "train"


def test_unknown_name_and_missing_file_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no pretrained model called 'cifar'; available: mnist"):
        load_pretrained("cifar")
    monkeypatch.setenv("DIFFUSION_EDU_DATA", str(tmp_path))
    monkeypatch.setattr("diffusion_edu.data.repo_data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="make_pretrained.py"):
        load_pretrained("mnist")


def test_shipped_model_matches_its_record_and_draws_recognisable_digits():
    info = pretrained_info("mnist")
    assert info.weights.stat().st_size < 20e6, "shipped weights must stay small"
    model, schedule = load_pretrained("mnist")
    assert str(model.config) == info.record["model_config"]
    assert sum(p.numel() for p in model.parameters()) == info.record["parameters"]
    assert "python -m diffusion_edu train" in info.command
    labels = torch.arange(10).repeat(3)  # 30 digits, fixed seed, a quick sampler
    images = sample(model, schedule, labels=labels, sampler="ddim", steps=20, guidance=2.0,
                    seed=0, progress=False)  # fmt: skip
    assert class_agreement(images, labels) >= 0.9
