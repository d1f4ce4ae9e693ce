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


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU extra OpenMP threads spin
    and wait on each other (10x slower measured); run these tests single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
