"""Shared test settings: deterministic, single-threaded-friendly, headless."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("DIFFUSION_EDU_QUICK", "1")


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
