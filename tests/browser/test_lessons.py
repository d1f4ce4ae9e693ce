"""Every lesson in front of a real browser: JupyterLab in Debian's Chromium, driven by Playwright.

For each lesson: open it, wait for the kernel, Run All, wait for the run to finish; then check
what a student would see (no error, no traceback on stderr, no widget that failed or is still
loading, no figure shown twice), save screenshots of its figures and widgets, and change every
widget control as a person would (click a slider's track, pick a dropdown entry, press a toggle,
play, tick, type, click), asserting that the figure or text it drives changes.

Each change's latency (browser change -> new picture on screen) is written to
``browser-artifacts/latency.json``; ``bench/widget_latency.py`` measures it properly (repeats,
medians, goals).
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import asdict
from pathlib import Path

try:
    import fcntl  # POSIX; on Windows the update is not locked
except ImportError:
    fcntl = None

import pytest
from labdriver import NOTEBOOKS, LessonPage, exercise_every_control

LESSONS = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _record_latency(path: Path, lesson: str, records: list[dict]) -> None:
    """Put one lesson's widget records into ``path``, keeping the other lessons' entries: two
    pytest workers open lessons at the same time, so the update holds a lock on the file."""
    with open(path.with_suffix(".lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        results[lesson] = records
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(results.items())), indent=1))
        tmp.replace(path)


def _png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data[:64])
    return struct.unpack(">II", raw[16:24])


def _doubled_figures(cell: dict) -> list[str]:
    """Image outputs of one cell that look like the same figure shown twice."""
    pngs = [o["data"]["image/png"] for o in cell["outputs"] if "image/png" in o.get("data", {})]
    problems = []
    if len(set(pngs)) < len(pngs):
        problems.append("the same image twice")
    sizes = [_png_size(p) for p in pngs]
    displays = cell["source"].count("display(") + cell["source"].count("for ")
    if len(set(sizes)) < len(sizes) and displays == 0:
        problems.append(f"{len(pngs)} images of the same size {sizes} from one expression")
    return problems


def _lesson09_prompt_box(page: LessonPage, records: list[dict]) -> None:
    """Lesson 09 shows the tokenizer refusing an unknown word as a message, not a traceback.
    Its prompt widget: the browser typed " x" after the prompt, an unknown word,
    which must be answered in the widget (its message line), never with a traceback; the
    guidance slider and the noise checkbox must redraw the digits."""
    refusing = next(c for c in page.cells() if 'tokenize("a purple seven")' in c["source"])
    printed = "".join(
        "".join(o.get("text", "")) for o in refusing["outputs"] if o.get("name") == "stdout"
    )  # a stream's text is a string or a list of lines
    assert "unknown word 'purple'" in printed, "the tokenizer's refusal is not shown as a message"
    text = page.page_text()
    assert "unknown word 'x'" in text, "the prompt box did not answer the unknown word 'x'"
    assert "Traceback" not in text
    widget_cell = next(r["cell"] for r in records if r["kind"] == "text")
    typed = [r for r in records if r["cell"] == widget_cell and r["kind"] == "text"]
    assert all("text" in r["what_changed"] for r in typed), typed  # the message line
    for kind in ("slider", "checkbox"):
        moved = [r for r in records if r["cell"] == widget_cell and r["kind"] == kind]
        assert moved and all("figure" in r["what_changed"] for r in moved), (kind, moved)


# What a lesson's widgets must do beyond "every control changes something" (by lesson prefix).
LESSON_CHECKS = {"09": _lesson09_prompt_box}


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_in_the_browser(lesson: str, browser, lab, artifacts: Path) -> None:
    page = LessonPage(browser, lab, lesson)
    try:
        page.open()
        page.run_all()
        cells = page.cells()
        code = [c for c in cells if c["type"] == "code"]
        for cell in code:
            for out in cell["outputs"]:
                where = f"cell {cell['index']}:\n{cell['source'][:200]}"
                assert out["output_type"] != "error", (
                    f"{out.get('ename')}: {out.get('evalue')} in {where}"
                )
                if out.get("name") == "stderr":
                    assert "Traceback" not in out["text"], f"traceback on stderr in {where}"
            assert not _doubled_figures(cell), f"{_doubled_figures(cell)} in cell {cell['index']}"
        text = page.page_text()
        assert "Error displaying widget" not in text and "Loading widget..." not in text
        assert "Error rendering" not in text
        shown = sum(page.figure_counts().values())
        assert shown > 0, "the lesson shows no figure at all"
        # Legible at JupyterLab's default width: no picture shrunk to fit (its text with it)
        # by more than 10%, none stretched (blurred) by more than 10%.
        for img in page.image_scales():
            scale = img["shown"] / img["natural"]
            assert 0.9 <= scale <= 1.1, (
                f"cell {img['cell']}: a {img['natural']} px wide picture is shown "
                f"{img['shown']} px wide (x{scale:.2f}); draw it at about 950 px"
            )
        page.screenshot_outputs(artifacts / "screenshots")

        controls = page.controls()
        records = []
        for control, made in exercise_every_control(page):
            for result in made:
                records.append(asdict(result))
                assert result.changed, (
                    f"{lesson}: the {control['kind']} {control['label']!r} "
                    f"(cell {control['cell']}) was changed ({result.action}) "
                    "but nothing it drives changed"
                )
        assert len(records) >= len(controls)
        text = page.page_text()
        assert "Error displaying widget" not in text
        errors = [o for c in page.cells() for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, (
            f"a widget change raised: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        )
        if lesson[:2] in LESSON_CHECKS:
            LESSON_CHECKS[lesson[:2]](page, records)
        _record_latency(artifacts / "latency.json", lesson, records)
        if controls:
            page.page.screenshot(path=str(artifacts / "screenshots" / f"{lesson[:-6]}_after.png"))
    finally:
        page.close()
