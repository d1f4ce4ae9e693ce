"""Shared plotting helpers: image grids in the course's house look, and the figure type the
lessons return.

* :class:`LessonFigure`: a Figure that shows itself as a PNG in Jupyter whatever the backend.
* :func:`figure_to_png`: a figure's PNG bytes (for ``_repr_png_``); :func:`render_png`, the
  quick version that widgets redraw with.
* :func:`square_axes`: square axes with equal limits, for point clouds.
* :func:`to_display`, :func:`make_grid`, :func:`show_images`: images in [-1, 1] on screen.
* :func:`show_source`: the library's own code, shown in a lesson (read it, don't copy it).
"""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
from collections.abc import Callable, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "INK_BLUE",
    "RED",
    "TEAL",
    "AMBER",
    "SLATE",
    "FIGURE_WIDTH",
    "LessonFigure",
    "figure_to_png",
    "render_png",
    "square_axes",
    "to_display",
    "make_grid",
    "show_source",
    "show_images",
]

# The course's palette. Each lesson gives the colours a meaning (data vs samples, one colour
# per schedule...) and keeps it in every figure of that lesson.
INK_BLUE = "#1f3b73"  # ink, the forward chain
RED = "#d1495b"
TEAL = "#00798c"
AMBER = "#edae49"
SLATE = "#8d99ae"  # grey-blue: background, reference, data
# Widest a lesson figure should be, in inches: at 100 dpi it fills JupyterLab's output area on a
# laptop (about 930-950 px) without being shrunk, text and all (the browser tests check it).
FIGURE_WIDTH = 9.5


def figure_to_png(fig: Figure, **savefig_kwargs: object) -> bytes:
    """The PNG bytes of ``fig``; keyword arguments go to ``savefig`` (e.g. ``dpi=72``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_kwargs)
    return buffer.getvalue()


def render_png(fig: Figure, dpi: float = 100) -> bytes:
    """``fig`` as PNG bytes, quickly: for widgets that redraw on every slider move.

    About 2.5x faster than ``savefig`` (measured on a 2-core CPU: 186 vs 473 ms for lesson 02's
    figure; ``bench/widget_latency.py``): it draws once on the figure's own Agg canvas and
    compresses lightly (zlib level 1: larger files, same pixels). No ``bbox_inches="tight"``:
    the figure's own size is the picture's size, so it does not jump between redraws.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    if fig.get_dpi() != dpi:
        fig.set_dpi(dpi)
    canvas.draw()
    width, height = canvas.get_width_height()
    buffer = io.BytesIO()
    Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba()).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


class LessonFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter whatever the backend.

    Figures are built without pyplot (so a function returning one does not ALSO draw it at the
    end of the cell); ``_repr_png_`` lets ``display(fig)`` work even where no inline backend
    registered a formatter (e.g. ``MPLBACKEND=Agg``).
    """

    def _repr_png_(self) -> bytes:
        return figure_to_png(self, bbox_inches="tight")


def square_axes(ax: Axes, lim: float, xlabel: str, ylabel: str) -> None:
    """Make ``ax`` square, showing ``[-lim, lim]`` on both axes, and label it."""
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def to_display(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images in [-1, 1] (``(B, 1, H, W)``, ``(B, H, W)`` or ``(H, W)``) -> numpy in [0, 1].

    Values outside [-1, 1] (e.g. noisy images) are clipped for display only.
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else images
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"expected grey-scale images (B, 1, H, W), got {arr.shape}.")
        arr = arr[:, 0]  # (B, H, W)
    return np.clip((arr + 1.0) / 2.0, 0.0, 1.0)


def make_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile ``(B, 1, H, W)`` or ``(B, H, W)`` images in [-1, 1] into one 2-D array."""
    arr = to_display(images)
    if arr.ndim == 2:
        arr = arr[None]
    b, h, w = arr.shape
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i in range(b):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = arr[i]
    return grid


def show_images(
    images: torch.Tensor | np.ndarray,
    nrow: int = 8,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    scale: float = 1.0,
) -> Figure:
    """Show a batch of images in [-1, 1] as a grid (white digits on black).

    Returns a :class:`LessonFigure` (not registered with pyplot), so a cell that ends with
    ``show_images(...)`` shows it once.

    With ``labels`` (one string per image) each image gets its own small panel and caption.
    """
    arr = to_display(images)
    if arr.ndim == 2:
        arr = arr[None]
    if labels is not None:
        if len(labels) != len(arr):
            raise ValueError(f"got {len(labels)} labels for {len(arr)} images.")
        ncol = min(nrow, len(arr))
        nrows = -(-len(arr) // ncol)
        fig = LessonFigure(figsize=(scale * 1.3 * ncol, scale * 1.5 * nrows))
        axes = fig.subplots(nrows, ncol, squeeze=False)
        for i, a in enumerate(axes.flat):
            a.axis("off")
            if i < len(arr):
                a.imshow(arr[i], cmap="gray", vmin=0, vmax=1)
                a.set_title(labels[i], fontsize=9)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
    grid = make_grid(images, nrow=nrow)  # (make_grid maps [-1, 1] to [0, 1] itself)
    if ax is None:
        fig = LessonFigure(figsize=(scale * grid.shape[1] / 30, scale * grid.shape[0] / 30))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def show_source(*functions: Callable[..., object], docstrings: bool = False) -> object:
    """The source code of library functions or methods, syntax-highlighted in Jupyter.

    Lessons show the code that really runs (``show_source(Trainer.take_step)``) instead of a
    copy that could drift from it. Docstrings are left out unless ``docstrings=True``.
    """
    from IPython.display import Code

    parts = []
    for function in functions:
        source = textwrap.dedent(inspect.getsource(function))
        if not docstrings:
            source = _without_docstring(source)
        where = f"# {function.__module__}.{function.__qualname__}"
        parts.append(f"{where}\n{source.rstrip()}")
    return Code("\n\n\n".join(parts), language="python")


def _without_docstring(source: str) -> str:
    """``source`` (one function) minus its docstring's lines."""
    node = ast.parse(source).body[0]
    first = node.body[0] if isinstance(node, ast.FunctionDef | ast.ClassDef) else None
    if not (isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
            and isinstance(first.value.value, str)):  # fmt: skip
        return source
    lines = source.splitlines()
    return "\n".join(lines[: first.lineno - 1] + lines[first.end_lineno :])
