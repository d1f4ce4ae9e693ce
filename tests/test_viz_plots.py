"""Shared display helpers (diffusion_edu.viz.plots): image grids and the library's own code."""

from __future__ import annotations

import torch

from diffusion_edu.loop import Trainer
from diffusion_edu.training import diffusion_loss
from diffusion_edu.viz.plots import show_images, show_source


def test_show_images_draws_minus_one_as_black_and_plus_one_as_white() -> None:

    images = torch.full((4, 1, 28, 28), -1.0)
    images[:, :, 10:18, 10:18] = 1.0  # a white square on black
    for kwargs in ({}, {"labels": ["a", "b", "c", "d"]}):
        fig = show_images(images, nrow=4, **kwargs)
        shown = torch.as_tensor(fig.axes[0].get_images()[0].get_array())
        assert shown[3:7, 3:7].max() == 0.0  # background: black (0), not grey
        assert shown.max() == 1.0


def test_show_source_prints_the_running_code_without_its_docstring() -> None:
    code = show_source(Trainer.take_step, diffusion_loss).data
    assert "# diffusion_edu.loop.Trainer.take_step" in code
    assert "self.scaler.scale(loss).backward()" in code  # the real step, not a copy
    assert "# diffusion_edu.training.diffusion_loss" in code and "model(x_t, t, cond)" in code
    assert "One optimiser step; returns" not in code  # docstring left out
    assert "One optimiser step; returns" in show_source(Trainer.take_step, docstrings=True).data
