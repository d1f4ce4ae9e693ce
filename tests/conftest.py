"""Shared test settings: deterministic, single-threaded-friendly, headless."""

import dataclasses
import os
from collections.abc import Callable

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from diffusion_edu.models.unet import UNet, UNetConfig

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


# ----------------------------------------------------------------------------- shared tiny things
TINY_UNET = UNetConfig(
    base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False, groups=4,
    num_classes=10,
)  # fmt: skip
"""A ~32k-parameter class-conditional U-Net: learns nothing useful, runs every code path fast."""


@pytest.fixture
def tiny_unet() -> Callable[..., UNet]:
    """``tiny_unet(seed=0, **config_changes)``: a fresh :data:`TINY_UNET`, seeded."""

    def make(seed: int = 0, **changes: object) -> UNet:
        torch.manual_seed(seed)
        return UNet(dataclasses.replace(TINY_UNET, **changes))

    return make


@pytest.fixture
def fake_digits() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``fake_digits(n=64, seed=0)``: random (n, 1, 28, 28) images in [-1, 1] and labels 0..9."""

    def make(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        images = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
        return images, torch.randint(0, 10, (n,), generator=g)

    return make


@pytest.fixture
def assert_labelled() -> Callable[[Figure], None]:
    """``assert_labelled(fig)``: a title (figure or axes) and, on every axes that shows a data
    plot, both axis labels. Closes the figure."""

    def check(fig: Figure) -> None:
        titles = [fig._suptitle.get_text() if fig._suptitle else ""]
        titles += [ax.get_title() for ax in fig.axes]
        assert any(t.strip() for t in titles), "figure has no title"
        for ax in fig.axes:
            if ax.images and not ax.lines and not ax.collections:
                continue  # an image panel: pixels, no axes to label
            assert ax.get_xlabel().strip(), f"axes {ax.get_title()!r} has no x label"
            assert ax.get_ylabel().strip(), f"axes {ax.get_title()!r} has no y label"
        plt.close(fig)

    return check


@pytest.fixture
def shown_png_width() -> Callable[[Figure], int]:
    """Pixel width of the PNG a notebook shows for a figure (dpi 100, ``bbox_inches="tight"``):
    lesson figures must stay within JupyterLab's output area (about 934 px on a laptop)."""
    import io
    import struct

    def width(fig: Figure) -> int:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight", dpi=100)
        png = buffer.getvalue()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        return struct.unpack(">I", png[16:20])[0]  # IHDR: width, then height, big-endian

    return width
