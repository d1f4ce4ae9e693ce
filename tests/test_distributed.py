"""diffusion_edu.distributed: ``torchrun --nproc_per_node=2 -m diffusion_edu train`` trains with
DistributedDataParallel on CPU (gloo); without torchrun every function is a single-process
no-op (rank 0 of 1)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion_edu import distributed
from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.cli import _weights_sha256
from diffusion_edu.models.unet import UNet
from diffusion_edu.recipes import MODEL_SIZES

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_cpu_processes_train_identical_weights_and_write_one_checkpoint(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "diffusion_edu", "train",
         "--model-size", "tiny", "--steps", "3", "--batch-size", "16", "--device", "cpu",
         "--precision", "fp32", "--no-progress", "--weights-hash", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "on 2 processes" in result.stdout
    assert result.stdout.count("Done: 3 steps") == 1  # only rank 0 talks

    # One checkpoint (written by rank 0), no leftovers from the atomic writes.
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "data_rank0.sha256", "data_rank1.sha256", "losses.csv", "run.json",
        "weights_rank0.sha256", "weights_rank1.sha256",
    ]  # fmt: skip
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.step == 3 and len(ckpt.history["loss"]) == 3
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert len(ckpt.rng_state["generators"]) == 2  # both ranks' RNG states, for a resume

    # The ranks trained on different shards of the data...
    assert (out / "data_rank0.sha256").read_text() != (out / "data_rank1.sha256").read_text()
    # ...yet ended with identical weights (DDP averaged their gradients), equal to the saved ones.
    rank0 = (out / "weights_rank0.sha256").read_text().strip()
    assert rank0 == (out / "weights_rank1.sha256").read_text().strip()
    assert rank0 == _weights_sha256(ckpt.build_model(ema=False))
    # And training did move the weights away from the shared initialisation.
    torch.manual_seed(0)
    init = UNet(dataclasses.replace(MODEL_SIZES["tiny"], num_classes=10))
    assert _weights_sha256(init) != rank0


# ----------------------------------------------------------------------------- one process
def _no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure no process group exists, and that calling torch.distributed would fail loudly."""
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a single process must not call torch.distributed")

    if torch.distributed.is_available():
        for name in ("all_reduce", "all_gather_object", "barrier", "destroy_process_group",
                     "init_process_group"):  # fmt: skip
            monkeypatch.setattr(torch.distributed, name, refuse)


def test_one_process_is_rank_0_of_1_and_every_collective_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_process_group(monkeypatch)
    assert distributed.rank_and_world() == (0, 1)
    model = torch.nn.Linear(3, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model  # no DDP wrapper
    x = torch.tensor([1.0, -2.0, 3.5])
    assert distributed.mean_over_processes(x) is x
    obj = {"loss": 0.25}
    gathered = distributed.gather(obj)
    assert gathered == [obj] and gathered[0] is obj
    assert distributed.barrier() is None
    assert distributed.stop() is None
    assert distributed.rank_and_world() == (0, 1)  # stop() did not start or break anything


@pytest.mark.parametrize("world_size", [None, "1"])
def test_start_without_torchrun_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, world_size: str | None
) -> None:
    _no_process_group(monkeypatch)
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setenv("LOCAL_RANK", "3")  # ignored: there is only one process
    device, rank, world = distributed.start(torch.device("cpu"))
    assert (device, rank, world) == (torch.device("cpu"), 0, 1)
    assert distributed.rank_and_world() == (0, 1)
