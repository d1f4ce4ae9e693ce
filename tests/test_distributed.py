"""``torchrun --nproc_per_node=2 -m diffusion_edu train``: DistributedDataParallel on CPU (gloo)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion_edu.checkpoints import load_checkpoint
from diffusion_edu.cli import MODEL_SIZES, _weights_sha256
from diffusion_edu.models.unet import UNet

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
