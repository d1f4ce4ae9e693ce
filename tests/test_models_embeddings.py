"""The sinusoidal time embedding (diffusion_edu.models.embeddings) that tells a noise predictor
which step t it is looking at (that the U-Net's prediction depends on t: test_models_unet.py),
and the checks of the timesteps and class labels an image model embeds."""

import pytest
import torch

from diffusion_edu.models.embeddings import sinusoidal_embedding


def test_time_embedding_distinguishes_t():
    emb = sinusoidal_embedding(torch.arange(0, 1001), 32)
    assert emb.shape == (1001, 32)
    # every pair of distinct t gets a distinct vector; neighbours are closer than far-apart t
    dist = torch.cdist(emb, emb)
    assert (dist + torch.eye(1001) * 1e9).min() > 1e-3
    assert dist[500, 501] < dist[500, 900]


def test_timestep_batch_repeats_one_timestep_and_checks_the_shape() -> None:
    from diffusion_edu.models.embeddings import timestep_batch

    cpu = torch.device("cpu")
    assert timestep_batch(7, 3, cpu).tolist() == [7, 7, 7]
    assert timestep_batch(torch.tensor(5), 2, cpu).tolist() == [5, 5]
    assert timestep_batch(torch.tensor([1, 2]), 2, cpu).tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\)"):
        timestep_batch(torch.tensor([1, 2]), 3, cpu)
    with pytest.raises(TypeError, match="got float"):
        timestep_batch(0.5, 3, cpu)  # type: ignore[arg-type]


def test_check_class_labels_accepts_the_null_label_and_names_each_mistake() -> None:
    from diffusion_edu.models.embeddings import check_class_labels

    cpu = torch.device("cpu")
    assert check_class_labels(None, 2, 10, cpu) is None
    assert check_class_labels(torch.tensor([0, 10]), 2, 10, cpu).tolist() == [0, 10]  # 10: null
    with pytest.raises(ValueError, match=r"DiTConfig\(num_classes=\.\.\.\)"):
        check_class_labels(torch.tensor([1, 2]), 2, None, cpu, "DiT")
    with pytest.raises(ValueError, match="integer class ids"):
        check_class_labels(torch.tensor([1.0, 2.0]), 2, 10, cpu)
    with pytest.raises(ValueError, match=r"0\.\.9 \(or 10: 'no label'\), got values from 0 to 11"):
        check_class_labels(torch.tensor([0, 11]), 2, 10, cpu)
