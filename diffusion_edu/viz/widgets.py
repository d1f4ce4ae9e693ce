"""Widget pieces the lessons share: sliders and play buttons above a figure that follows them.

* :class:`LivePlot`: controls on top, a figure below that is drawn again whenever a control
  changes (the simple pattern: a fresh figure per change).
* :class:`WidgetView`: anything with a ``widget`` attribute shows as that widget when it is a
  cell's last expression (the in-place explorers of lessons 04 and 05 use it too).
* :func:`play_button`, :func:`log_slider`: the controls several lessons build alike.

Everything works headless (``MPLBACKEND=Agg``, no kernel): the widgets are built and drawn, and
moving a control from code redraws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display
from matplotlib.figure import Figure

__all__ = ["WidgetView", "LivePlot", "play_button", "log_slider"]


class WidgetView:
    """Shows as ``self.widget`` (an ipywidgets widget) when displayed in a notebook."""

    widget: widgets.Widget

    def _repr_mimebundle_(self, **kwargs: object) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)


class LivePlot(WidgetView):
    """Controls (sliders, dropdowns, a play button) above a figure that follows them.

    ``draw(**values)`` gets the controls' current values by name and returns a new Figure.
    Display it in a notebook cell as the last expression (or with ``display(live)``).

    Attributes:
        controls: the control widgets by name; set ``controls[name].value`` to move one.
        widget: the whole thing, an ``ipywidgets.VBox``.
        last_figure: the figure drawn most recently (closed: it was handed to the output).
    """

    def __init__(
        self,
        draw: Callable[..., Figure],
        controls: Mapping[str, widgets.ValueWidget],
        extra: Sequence[widgets.Widget] = (),
    ) -> None:
        self._draw = draw
        self.controls = dict(controls)
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox([*extra, *self.controls.values()]), self.output])
        self.last_figure: Figure | None = None
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.redraw()

    def _on_change(self, change: object = None) -> None:
        self.redraw()

    def redraw(self) -> Figure:
        """Draw the figure for the controls' current values and show it in the output."""
        figure = self._draw(**{name: c.value for name, c in self.controls.items()})
        self.last_figure = figure
        with self.output:
            self.output.clear_output(wait=True)
            display(figure)
        plt.close(figure)  # shown once, inside the widget; not again below the cell
        return figure


def play_button(slider: widgets.IntSlider, step: int = 1) -> widgets.Play:
    """A play button that runs ``slider`` from its minimum to its maximum, ``step`` at a time.

    The two are linked in the browser (``jslink``), so playing needs no round trip to Python
    beyond the slider's own redraws.
    """
    play = widgets.Play(value=slider.value, min=slider.min, max=slider.max, step=step)
    widgets.jslink((play, "value"), (slider, "value"))
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
