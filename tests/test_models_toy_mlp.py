"""The 2-D toy's noise predictor (diffusion_edu.models.toy_mlp): the samplers' calling
convention, class labels and the "no label" null label. (Training it: test_toy2d.py.)"""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor


def test_model_calling_convention_matches_the_samplers() -> None:
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=2))
    x = torch.randn(5, 2)
    assert model(x, torch.tensor([1, 2, 3, 4, 5])).shape == (5, 2)
    assert model(x, 7).shape == (5, 2)
    with pytest.raises(ValueError, match="labels=None"):
        model(x, 3, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        model(torch.randn(5, 3), 3)


def test_conditional_model_labels_and_null_label() -> None:
    torch.manual_seed(0)
    model = ToyNoisePredictor(ToyMLPConfig(hidden=16, depth=1, num_classes=3))
    assert model.null_label == 3 and ToyNoisePredictor().null_label is None
    x, t = torch.randn(4, 2), torch.tensor([1, 5, 9, 20])
    # labels=None means "no label" for the whole batch.
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((4,), 3)))
    # The label changes the prediction (the embedding is part of the input).
    assert not torch.allclose(model(x, t, torch.zeros(4, dtype=torch.long)), model(x, t))
    with pytest.raises(ValueError, match="0..3"):
        model(x, t, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="LongTensor"):
        model(x, t, torch.zeros(3, dtype=torch.long))
