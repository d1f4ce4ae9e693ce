"""The course as a website (``make site``, scripts/make_site.py; issue 15, item 3).

The fast tests check the parts: every lesson's title, goal and time read from its first cell,
and widgets drawn from their saved state without JavaScript. The browser test builds the site
for two lessons (03 has an animation, 04 a widget; both run in seconds in quick mode), opens
``index.html`` in Chromium from the file system with every network request refused, checks
that every lesson is listed in course order with its goal and time, follows the link to lesson
03 and checks its figures, its animation (which must step to another frame) and the widget
note, then goes on to lesson 04 by its "next" link and finds the widget's picture.
"""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE_LESSONS = ("03", "04")


def _load_script(name: str):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


make_site = _load_script("make_site")
LESSONS = make_site.all_lessons()


# ----------------------------------------------------------------------------- the parts
def test_every_lesson_has_a_title_goal_and_time_in_its_first_cell() -> None:
    names = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [lesson.path.name for lesson in LESSONS] == names
    for lesson in LESSONS:
        assert lesson.title and not lesson.title.startswith(lesson.number), lesson
        assert len(lesson.goal) > 40 and "**Goal" not in lesson.goal, lesson
        assert "minute" in lesson.time and len(lesson.time) < 300, lesson
    welcome = LESSONS[0]
    assert welcome.title == "Welcome to diffusion_edu"
    assert welcome.goal.startswith("know what the course is") and welcome.time == "5 minutes."


def test_a_lesson_without_a_goal_is_a_clear_error(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# 99 · A lesson\n\n**Time:** 5 minutes.")]
    path = tmp_path / "99_a_lesson.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(ValueError, match=r"99_a_lesson.ipynb: the first cell has no \*\*Goal"):
        make_site.read_lesson(path)


def test_unknown_lesson_number_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no lesson numbered"):
        make_site.select(LESSONS, ["77"])
    assert [lesson.number for lesson in make_site.select(LESSONS, ["4", "03"])] == ["03", "04"]


def _model(name: str, **state: object) -> dict:
    return {"model_name": name, "state": state}


def test_widgets_become_static_html_of_their_saved_state() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    saved = {
        "state": {
            "box": _model("VBoxModel", children=["IPY_MODEL_row", "IPY_MODEL_img"]),
            "row": _model(
                "HBoxModel", children=[f"IPY_MODEL_{m}" for m in ("t", "b", "kind", "x", "bar")]
            ),
            "t": _model("IntSliderModel", description="t", value=250, min=0, max=1000),
            "b": _model("FloatLogSliderModel", value=0.01, min=-4, max=-1, readout_format=".3f"),
            "kind": _model(
                "DropdownModel",
                description="schedule",
                _options_labels=["linear", "cosine"],
                index=1,
            ),
            "x": _model("FancyThingModel"),
            "bar": _model("FloatProgressModel", value=30.0, min=0.0, max=120.0),
            "img": {
                **_model("ImageModel", format="png", width="950"),
                "buffers": [{"path": ["value"], "data": png, "encoding": "base64"}],
            },
        }
    }
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer")
    view = {"version_major": 2, "version_minor": 0, "model_id": "box"}
    cell.outputs = [
        nbformat.v4.new_output(
            "execute_result", {"text/plain": "VBox(...)", make_site.WIDGET_VIEW: view}
        )
    ]
    notebook.cells = [cell]
    notebook.metadata["widgets"] = {make_site.WIDGET_STATE: saved}
    assert make_site.freeze_widgets(notebook) == 1
    data = notebook.cells[0].outputs[0]["data"]
    assert set(data) == {"text/html"}
    page = data["text/html"]
    assert f'src="data:image/png;base64,{png}"' in page and 'width="950"' in page
    assert ">250<" in page and 'min="0" max="1000" step="any" value="250"' in page
    assert ">0.010<" in page and 'min="-4" max="-1" step="any" value="-2.0"' in page  # 10^-2
    assert "<option selected>cosine</option>" in page
    assert '<progress class="de-control" max="120.0" value="30.0">' in page  # tqdm's bar
    assert "(FancyThing)" in page  # an unknown widget is named, not dropped silently
    assert "widgets" not in notebook.metadata  # so nbconvert adds no widget script from a CDN


# ----------------------------------------------------------------------------- in the browser
@pytest.fixture(scope="module")
def site(browser, tmp_path_factory) -> Path:  # noqa: ANN001
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_site.py"), "--out", str(out),
         "--lessons", *SITE_LESSONS],
        cwd=ROOT, check=True,
    )  # fmt: skip
    print(f"site for lessons {SITE_LESSONS}: {time.perf_counter() - start:.0f} s")
    return out


def _offline_page(browser):  # noqa: ANN001, ANN202
    """A page that may read files but nothing from a network (a CDN would hide a missing file)."""
    page = browser.new_page(viewport={"width": 1366, "height": 900})

    def local_only(route) -> None:  # noqa: ANN001
        local = route.request.url.startswith(("file:", "data:"))
        route.continue_() if local else route.abort()

    page.route("**/*", local_only)
    return page


@pytest.mark.slow
def test_site_index_lists_every_lesson_and_a_lesson_page_has_figures_and_animation(
    browser, site: Path
) -> None:
    page = _offline_page(browser)
    try:
        page.goto((site / "index.html").as_uri())
        listed = page.eval_on_selector_all(
            "li.lesson",
            """items => items.map(li => ({
                number: li.dataset.lesson,
                heading: li.querySelector('h2').innerText,
                goal: li.querySelector('.goal').innerText,
                time: li.querySelector('.time').innerText,
                href: li.querySelector('h2 a')?.getAttribute('href') ?? null,
            }))""",
        )
        assert [item["number"] for item in listed] == [lesson.number for lesson in LESSONS]
        for item, lesson in zip(listed, LESSONS, strict=True):
            assert lesson.title in item["heading"]
            assert item["goal"].startswith("Goal.") and len(item["goal"]) > 40, item
            assert item["time"].startswith("Time:") and "minute" in item["time"], item
            built = lesson.number in SITE_LESSONS
            assert item["href"] == (lesson.page if built else None), item

        # Follow the link to lesson 03, as a reader would.
        page.click(f"li[data-lesson='{SITE_LESSONS[0]}'] h2 a")
        page.wait_for_load_state("load")
        assert page.url.endswith(LESSONS[int(SITE_LESSONS[0])].page)
        note = page.locator("#widget-note")
        assert note.is_visible() and "move only when you run the lesson in JupyterLab" in (
            note.inner_text()
        )
        figures = page.eval_on_selector_all(
            ".jp-OutputArea-output img[src^='data:image/png']",
            "imgs => imgs.filter(i => i.complete && i.naturalWidth > 100).length",
        )
        assert figures >= 3, f"only {figures} figures drawn on the page"
        # The animation: matplotlib's JavaScript player, with its frames in the page.
        animation = page.locator(".animation").first
        frame = animation.locator("img")
        frame.wait_for(state="visible")
        first = frame.get_attribute("src")
        assert first and first.startswith("data:image/png"), "the animation shows no frame"
        animation.locator("button[title='Last frame']").click()
        page.wait_for_function(
            "([img, src]) => img.getAttribute('src') !== src",
            arg=[frame.element_handle(), first],
            timeout=5000,
        )
        # Next lesson by the page's own link; its widget is there as a picture.
        page.locator("nav.de-nav a.de-next").first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith(LESSONS[int(SITE_LESSONS[1])].page)
        widget_pictures = page.eval_on_selector_all(
            ".de-widget img[src^='data:image/png']",
            "imgs => imgs.filter(i => i.complete && i.naturalWidth > 100).length",
        )
        assert widget_pictures >= 1, "lesson 04's widget is not drawn"
        assert page.locator("#widget-note").is_visible()
    finally:
        page.close()
