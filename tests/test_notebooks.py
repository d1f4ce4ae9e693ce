"""Lessons executed under nbclient: what ``jupyter nbconvert --execute``, papermill, HTML
export, graders and ``make site`` use. nbval (the ``--nbval-lax`` run of ``make test``) drives
its own kernel client, so a lesson can pass there and still hang here: lesson 02 did, 2 runs in
8, until the widgets stopped drawing through ``ipywidgets.Output`` (see
``diffusion_edu.viz.widgets``).

Every lesson already runs in the test run (in JupyterLab in Chromium, tests/browser; under
nbval where the browser cannot run, see conftest.py), so this extra run is kept to
:data:`NBCLIENT_LESSONS` to keep CI under 15 minutes (docs/performance.md, "CI time").
``make site`` executes *every* lesson with nbclient and refuses one that fails these same
checks (``check_executed`` in scripts/make_site.py).

Each lesson runs in quick mode (the test command sets ``DIFFUSION_EDU_QUICK=1``) with a per-cell
time limit, so a hang is a failure with the cell named, never a stuck CI job.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]
#: Lesson 02, whose widgets once hung nbclient; lessons 03 and 04 run under nbclient in the
#: site's browser test (tests/browser/test_site.py).
NBCLIENT_LESSONS = ("02",)
LESSONS = [
    p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if p.name[:2] in NBCLIENT_LESSONS
]  # fmt: skip

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
make_site = load_script("make_site")


def _execute(path: Path):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=make_site.CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    client.execute(env={**os.environ, "DIFFUSION_EDU_QUICK": "1", "MPLBACKEND": "Agg"})
    return notebook


def test_the_chosen_lessons_exist() -> None:
    assert [p.name[:2] for p in LESSONS] == list(NBCLIENT_LESSONS)


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes_under_nbclient(path: Path) -> None:
    notebook = _execute(path)  # raises CellExecutionError / CellTimeoutError naming the cell
    # every cell ran, no error, no traceback on stderr, every shown widget in the saved state
    # (so an HTML export of the executed lesson can draw it rather than print a placeholder)
    make_site.check_executed(notebook, path.name)


def _executed(outputs: list, widget_state: dict | None = None):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1", execution_count=1)
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    notebook.cells = [cell]
    if widget_state is not None:
        notebook.metadata["widgets"] = {make_site.WIDGET_STATE: {"state": widget_state}}
    return notebook


def test_check_executed_names_what_went_wrong() -> None:
    view = {"output_type": "display_data", "metadata": {},
            "data": {make_site.WIDGET_VIEW: {"model_id": "abc", "version_major": 2}}}  # fmt: skip
    make_site.check_executed(_executed([view], {"abc": {"model_name": "IntSliderModel"}}), "ok")
    with pytest.raises(RuntimeError, match="1 shown widget"):
        make_site.check_executed(_executed([view], {}), "lesson")
    error = {"output_type": "error", "ename": "ValueError", "evalue": "bad t", "traceback": []}
    with pytest.raises(RuntimeError, match="ValueError: bad t in lesson, the cell starting"):
        make_site.check_executed(_executed([error]), "lesson")
    stderr = {"output_type": "stream", "name": "stderr", "text": "Traceback (most recent..."}
    with pytest.raises(RuntimeError, match="a traceback on stderr"):
        make_site.check_executed(_executed([stderr]), "lesson")
    not_run = _executed([])
    not_run.cells[0].execution_count = None
    with pytest.raises(RuntimeError, match="a code cell did not run"):
        make_site.check_executed(not_run, "lesson")
