"""Atomic writes (diffusion_edu.files): the new file appears whole or not at all, and a failed
write leaves the previous file (a checkpoint, say) intact with no temporary file left over."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffusion_edu.checkpoints import load_checkpoint, save_checkpoint
from diffusion_edu.files import atomic_write
from diffusion_edu.schedules import NoiseSchedule


def test_atomic_write_writes_the_bytes_creates_folders_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "folder" / "notes.bin"
    returned = atomic_write(path, lambda file: file.write(b"first"))
    assert returned == path and path.read_bytes() == b"first"
    atomic_write(path, lambda file: file.write(b"second, longer"))  # replaces the old file
    assert path.read_bytes() == b"second, longer"
    assert sorted(p.name for p in path.parent.iterdir()) == ["notes.bin"]


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path: Path, tiny_unet) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny_unet(), NoiseSchedule.linear(), step=5)
    before = path.read_bytes()

    def crash_halfway(file) -> None:  # noqa: ANN001
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash_halfway)
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left
