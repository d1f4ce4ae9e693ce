"""Shared widget helpers (diffusion_edu.viz.widgets)."""

import math

import pytest

from diffusion_edu.viz.widgets import log_slider


@pytest.mark.parametrize("value, low, high", [(0.008, -4, -0.3), (1e-4, -5, -2), (0.02, -3, -0.5)])
def test_log_slider_starts_exactly_on_its_value_and_spans_the_range(value, low, high):
    slider = log_slider("x", value, low, high)
    assert slider.value == pytest.approx(value, rel=1e-12)  # not snapped to a nearby grid point
    assert abs(slider.min - low) <= slider.step / 2 and abs(slider.max - high) <= slider.step / 2
    grid_index = (math.log10(value) - slider.min) / slider.step
    assert grid_index == pytest.approx(round(grid_index), abs=1e-9)


def _line_plot_counter():
    """A draw function that counts its calls and draws a line of slope ``a``."""
    from diffusion_edu.viz.plots import LessonFigure

    calls = []

    def draw(a: int) -> LessonFigure:
        calls.append(a)
        fig = LessonFigure(figsize=(4, 2))
        fig.subplots().plot([0, 1], [0, a])
        fig.suptitle(f"a = {a}")
        return fig

    return draw, calls


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_liveplot_shows_each_value_as_a_png_and_redraws_only_values_it_has_not_seen():
    import ipywidgets as widgets

    from diffusion_edu.viz.widgets import LivePlot

    draw, calls = _line_plot_counter()
    slider = widgets.IntSlider(value=1, min=0, max=5)
    live = LivePlot(draw, {"a": slider})
    first_png = bytes(live.image.widget.value)  # (ipywidgets keeps it as a memoryview)
    assert first_png.startswith(b"\x89PNG") and live.image.widget.width == "400"
    slider.value = 3
    assert (
        bytes(live.image.widget.value) != first_png
        and "a = 3" in live.last_figure._suptitle.get_text()
    )
    slider.value = 1  # seen before: shown again without drawing
    assert bytes(live.image.widget.value) == first_png and calls == [1, 3]
    assert "a = 1" in live.last_figure._suptitle.get_text() and live.status.value == ""


def test_liveplot_cache_is_bounded_and_forgets_the_oldest_picture():
    import ipywidgets as widgets

    from diffusion_edu.viz.widgets import LivePlot

    draw, calls = _line_plot_counter()
    slider = widgets.IntSlider(value=0, min=0, max=5)
    LivePlot(draw, {"a": slider}, cache_size=2)
    slider.value, slider.value, slider.value = 1, 2, 0  # 0 was evicted when 2 came in
    assert calls == [0, 1, 2, 0]


def test_no_widget_picture_is_drawn_through_an_output_widget():
    # Output widgets make nbclient (nbconvert --execute, papermill) hang now and then: it answers
    # every display inside one on the socket it waits on for the cell's reply (nbclient#312).
    import ipywidgets as widgets

    from diffusion_edu.viz.widgets import LivePlot, play_button

    draw, _ = _line_plot_counter()
    slider = widgets.IntSlider(value=0, min=0, max=5)
    live = LivePlot(draw, {"a": slider}, extra=[play_button(slider)])
    kinds = {type(w).__name__ for w in _walk(live.widget)}
    assert "Image" in kinds and "Output" not in kinds


def test_pressing_play_draws_every_frame_first_then_plays():
    import ipywidgets as widgets

    from diffusion_edu.viz.widgets import LivePlot, play_button

    draw, calls = _line_plot_counter()
    slider = widgets.IntSlider(value=0, min=0, max=4)
    play = play_button(slider, step=2)
    live = LivePlot(draw, {"a": slider}, extra=[play])
    play.playing = True  # what the browser does when the button is pressed
    assert sorted(calls) == [0, 2, 4]  # frame 0 was already drawn; 2 and 4 drawn once, now
    assert play.playing and live.status.value == ""
    slider.value = 4  # a frame of the animation: no new drawing
    assert sorted(calls) == [0, 2, 4]


def test_liveplot_with_update_draws_one_figure_and_changes_it_in_place():
    import ipywidgets as widgets

    from diffusion_edu.viz.plots import LessonFigure
    from diffusion_edu.viz.widgets import LivePlot

    built = []

    def draw(a: int) -> LessonFigure:
        fig = LessonFigure(figsize=(4, 2))
        fig.subplots().plot([0, 1], [0, a])
        fig.suptitle(f"a = {a}")
        built.append(fig)
        return fig

    def update(fig, a: int) -> None:
        fig.axes[0].lines[0].set_ydata([0, a])
        fig._suptitle.set_text(f"a = {a}")

    slider = widgets.IntSlider(value=1, min=0, max=5)
    live = LivePlot(draw, {"a": slider}, update=update)
    first_png = bytes(live.image.widget.value)
    slider.value = 4
    assert len(built) == 1 and live.last_figure is built[0]
    assert list(live.last_figure.axes[0].lines[0].get_ydata()) == [0, 4]
    assert bytes(live.image.widget.value) != first_png
    slider.value = 1  # from the cache: the picture and the figure agree again
    assert (
        bytes(live.image.widget.value) == first_png
        and "a = 1" in live.last_figure._suptitle.get_text()
    )


def test_liveplot_preview_shows_a_quick_picture_first_then_the_full_one():
    import ipywidgets as widgets

    from diffusion_edu.viz.widgets import LivePlot

    draw, calls = _line_plot_counter()
    shown = []
    slider = widgets.IntSlider(value=1, min=0, max=50)
    live = LivePlot(draw, {"a": slider}, preview=lambda v: {"a": min(v["a"], 10)})
    live.image.widget.observe(lambda ch: shown.append(bytes(ch["new"])), names="value")
    slider.value = 40
    assert calls == [1, 10, 40] and len(shown) == 2  # preview (a = 10), then the real a = 40
    assert "a = 40" in live.last_figure._suptitle.get_text() and live.status.value == ""
    slider.value = 5  # the preview would be the same picture: drawn once
    assert calls == [1, 10, 40, 5]


def test_play_draws_the_frames_again_after_another_control_changed():
    import ipywidgets as widgets

    from diffusion_edu.viz.plots import LessonFigure
    from diffusion_edu.viz.widgets import LivePlot, play_button

    calls = []

    def draw(a: int, b: int) -> LessonFigure:
        calls.append((a, b))
        fig = LessonFigure(figsize=(2, 2))
        fig.suptitle(f"{a} {b}")
        return fig

    a, b = widgets.IntSlider(value=0, min=0, max=2), widgets.IntSlider(value=0, min=0, max=5)
    play = play_button(a)
    LivePlot(draw, {"a": a, "b": b}, extra=[play])
    play.playing = True
    assert sorted(calls) == [(0, 0), (1, 0), (2, 0)]
    play.playing = False
    b.value = 3  # the frames for b = 3 are not drawn yet: the next press draws them first
    play.playing = True
    assert {(1, 3), (2, 3)} <= set(calls) and len(calls) == 6
