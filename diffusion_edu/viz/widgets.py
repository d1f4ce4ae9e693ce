"""Widget pieces the lessons share: sliders and play buttons above a figure that follows them.

* :class:`LivePlot`: controls on top, a figure below that is drawn again whenever a control
  changes (the simple pattern: a fresh figure per change, kept for when you come back).
* :class:`FigureImage`: a figure shown as a PNG in an ``ipywidgets.Image`` (every widget's
  picture; it says why not an ``Output`` widget).
* :class:`WidgetView`: anything with a ``widget`` attribute shows as that widget when it is a
  cell's last expression (the in-place explorers of lessons 04 and 05 use it too).
* :func:`play_button`, :func:`log_slider`: the controls several lessons build alike.

Everything works headless (``MPLBACKEND=Agg``, no kernel): the widgets are built and drawn, and
moving a control from code redraws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from diffusion_edu.viz.plots import render_png

__all__ = ["WidgetView", "FigureImage", "LivePlot", "play_button", "log_slider"]


class WidgetView:
    """Shows as ``self.widget`` (an ipywidgets widget) when displayed in a notebook."""

    widget: widgets.Widget

    def _repr_mimebundle_(self, **kwargs: object) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


class FigureImage:
    """A figure shown as a PNG in an ``ipywidgets.Image``: what every widget's picture is drawn in.

    Why not ``display(fig)`` inside an ``ipywidgets.Output``? Two reasons. (1) Speed: a PNG of
    the figure's own size, sent as one value, is the cheapest way to put a new figure on screen.
    (2) Executing notebooks: nbclient (``jupyter nbconvert --execute``, papermill, graders) stands
    in for an Output widget by sending a message back to the kernel for every display inside it,
    on the same socket it is waiting on for the cell's reply; that send can swallow the reply's
    wake-up, and the run then hangs forever with the kernel idle (seen 2 times in 8 on lesson 02;
    jupyter/nbclient#312). An Image widget's value is plain widget state: nothing is sent back.

    ``dpi`` is the resolution the PNG is made at; it is shown at ``figure width x dpi`` pixels
    (at most the notebook's width), so a 9.5-inch figure fills JupyterLab's default width.
    """

    def __init__(self, dpi: int = 100) -> None:
        self.dpi = dpi
        self.widget = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

    def show(self, figure: Figure, png: bytes | None = None) -> bytes:
        """Show ``figure`` (or its already rendered ``png``); returns the PNG bytes shown."""
        if png is None:
            png = render_png(figure, dpi=self.dpi)
        self.widget.width = str(round(figure.get_figwidth() * self.dpi))
        self.widget.value = png
        return png


class LivePlot(WidgetView):
    """Controls (sliders, dropdowns, a play button) above a figure that follows them.

    ``draw(**values)`` gets the controls' current values by name and returns a new Figure.
    Display it in a notebook cell as the last expression (or with ``display(live)``).

    With ``update(figure, **values)`` the figure is drawn once and then changed in place (new
    data for its lines and images, new titles): much quicker than a new figure per move, since
    building axes and laying them out costs more than drawing them.

    With ``preview(values) -> values`` a slow picture (e.g. sampling digits with many steps)
    first shows a quick version (e.g. fewer steps, labelled as such by ``draw``), then the real
    one: the figure answers a move in well under a second and the line above it says
    "drawing the full picture..." until the real one is there.

    Each picture is kept (as PNG, up to ``cache_size`` of them), so going back to a value, or
    playing an animation a second time, shows it at once. While a new picture is being drawn the
    line under the controls says "drawing...".

    Attributes:
        controls: the control widgets by name; set ``controls[name].value`` to move one.
        widget: the whole thing, an ``ipywidgets.VBox``.
        image: the :class:`FigureImage` the pictures are shown in.
        last_figure: the figure for the controls' current values (closed: it was rendered).
        draw_seconds: how long each fresh drawing took (cache hits are not counted).
    """

    def __init__(
        self,
        draw: Callable[..., Figure],
        controls: Mapping[str, widgets.ValueWidget],
        extra: Sequence[widgets.Widget] = (),
        cache_size: int = 128,
        dpi: int = 100,
        update: Callable[..., None] | None = None,
        preview: Callable[[dict], dict] | None = None,
    ) -> None:
        self._draw, self._update, self._preview = draw, update, preview
        self._figure: Figure | None = None  # the one figure, when drawn in place
        self.controls = dict(controls)
        self.cache_size = cache_size
        self._cache: dict[tuple, tuple[Figure, bytes]] = {}
        self.image = FigureImage(dpi=dpi)
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.widget = widgets.VBox(
            [widgets.HBox([*extra, *self.controls.values()]), self.status, self.image.widget]
        )
        self.last_figure: Figure | None = None
        self.draw_seconds: list[float] = []
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        for control in extra:  # a play button: draw its frames first, then play them smoothly
            if isinstance(control, widgets.Play):
                control.observe(self._on_play, names="playing")
        self.redraw()

    def _on_change(self, change: object = None) -> None:
        self.redraw()

    def _values(self) -> dict[str, object]:
        return {name: c.value for name, c in self.controls.items()}

    def _render(self, values: Mapping[str, object]) -> tuple[Figure, bytes]:
        key = tuple(sorted(values.items()))
        if key in self._cache:
            figure, png = self._cache[key]
            if self._update is not None:  # keep the one figure in step with what is shown
                self._update(figure, **values)
            return figure, png
        start = time.perf_counter()
        if self._update is not None and self._figure is not None:
            figure = self._figure
            self._update(figure, **values)
        else:
            figure = self._draw(**values)
            plt.close(figure)  # rendered here, never shown again below the cell
            if self._update is not None:
                self._figure = figure
        png = render_png(figure, dpi=self.image.dpi)
        self.draw_seconds.append(time.perf_counter() - start)
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))  # the oldest
        self._cache[key] = (figure, png)
        return figure, png

    def redraw(self) -> Figure:
        """Show the figure for the controls' current values (drawn now, or kept from before)."""
        values = self._values()
        if tuple(sorted(values.items())) not in self._cache:
            quick = self._preview(dict(values)) if self._preview is not None else values
            if quick != values:
                self.status.value = "<i>drawing a quick preview...</i>"
                figure, png = self._render(quick)
                self.image.show(figure, png)
                self.status.value = "<i>drawing the full picture...</i>"
            else:
                self.status.value = "<i>drawing...</i>"
        figure, png = self._render(values)
        self.last_figure = figure
        self.image.show(figure, png)
        self.status.value = ""
        return figure

    def _missing(self, name: str, values: Sequence[object]) -> list[object]:
        base = self._values()
        return [v for v in values if tuple(sorted({**base, name: v}.items())) not in self._cache]

    def prerender(self, name: str, values: Sequence[object]) -> None:
        """Draw the pictures for ``controls[name]`` = each of ``values`` (others as they are)."""
        base = self._values()
        todo = self._missing(name, values)
        for i, value in enumerate(todo):
            self.status.value = f"<i>preparing the animation: frame {i + 1} of {len(todo)}...</i>"
            self._render({**base, name: value})
        self.status.value = ""

    def _on_play(self, change: dict) -> None:
        play = change["owner"]
        slider = getattr(play, "_slider", None)
        names = [n for n, c in self.controls.items() if c is slider]
        if not change["new"] or not names:
            return
        frames = range(play.min, play.max + 1, play.step)
        if not self._missing(names[0], frames):
            return  # every frame is drawn: just play
        # Draw every frame once before the animation runs, so that it plays at the button's
        # speed instead of at the speed of matplotlib (which trails the slider by seconds).
        play.playing = False
        self.prerender(names[0], frames)
        play.playing = True


def play_button(slider: widgets.IntSlider, step: int = 1, interval_ms: int = 100) -> widgets.Play:
    """A play button that runs ``slider`` from its minimum to its maximum, ``step`` at a time.

    The two are linked in the browser (``jslink``). Inside a :class:`LivePlot` the first press
    draws every frame first (a line says so), then the animation plays from the kept pictures.
    """
    play = widgets.Play(
        value=slider.value, min=slider.min, max=slider.max, step=step, interval=interval_ms
    )
    widgets.jslink((play, "value"), (slider, "value"))
    play._slider = slider  # what LivePlot draws the frames of
    return play


def log_slider(
    description: str,
    value: float,
    min_exponent: float,
    max_exponent: float,
    step: float = 0.05,
    **kwargs: object,
) -> widgets.FloatLogSlider:
    """A base-10 log slider from ``10**min_exponent`` to ``10**max_exponent``.

    Extra keyword arguments (``readout_format``, ``style``, ``layout``...) go to
    ``ipywidgets.FloatLogSlider``.
    """
    # FloatLogSlider snaps to min + k * step (in exponents): shift the grid a little so that the
    # starting value is on it exactly (e.g. cosine's s = 0.008 reads 0.008, not 0.0079).
    exponent = math.log10(value)
    shift = exponent - min_exponent - step * round((exponent - min_exponent) / step)
    return widgets.FloatLogSlider(
        value=value,
        base=10,
        min=min_exponent + shift,
        max=max_exponent + shift,
        step=step,
        description=description,
        **kwargs,
    )
