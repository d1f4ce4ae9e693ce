"""Every lesson executes under nbclient: what ``jupyter nbconvert --execute``, papermill, HTML
export and graders use. nbval (the ``--nbval-lax`` run of ``make test``) drives its own kernel
client, so a lesson can pass there and still hang here: lesson 02 did, 2 runs in 8, until the
widgets stopped drawing through ``ipywidgets.Output`` (see ``diffusion_edu.viz.widgets``).

Each lesson runs in quick mode (the test command sets ``DIFFUSION_EDU_QUICK=1``) with a per-cell
time limit, so a hang is a failure with the cell named, never a stuck CI job.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 600  # the slowest quick-mode cell takes about a minute on a 2-core CPU

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _execute(path: Path):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    client.execute(env={**os.environ, "DIFFUSION_EDU_QUICK": "1", "MPLBACKEND": "Agg"})
    return notebook


def _stdout(cell) -> str:  # noqa: ANN001
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _lesson09(code_cells: list) -> None:  # noqa: ANN001
    """Lesson 09 shows the tokenizer refusing an unknown word as a message, not a traceback."""
    cell = next(c for c in code_cells if 'tokenize("a purple seven")' in c.source)
    assert "unknown word 'purple'" in _stdout(cell)


# What a lesson's run must show beyond "every cell ran without an error" (by lesson prefix).
LESSON_CHECKS = {"09": _lesson09}


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes_under_nbclient(path: Path) -> None:
    notebook = _execute(path)  # raises CellExecutionError / CellTimeoutError naming the cell
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells), "a code cell did not run"
    for cell in code_cells:
        for out in cell.outputs:
            assert out.output_type != "error", f"{out.ename} in:\n{cell.source[:300]}"
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text, f"a traceback on stderr:\n{out.text[:800]}"
    # Every widget a cell shows is in the saved widget state, so an HTML export of the executed
    # lesson (nbconvert --to html) can draw it rather than print a placeholder.
    saved = (
        notebook.metadata.get("widgets", {})
        .get("application/vnd.jupyter.widget-state+json", {})
        .get("state", {})
    )
    shown = [
        out.data["application/vnd.jupyter.widget-view+json"]["model_id"]
        for cell in code_cells
        for out in cell.outputs
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]
    assert all(model_id in saved for model_id in shown), "a shown widget is missing its state"
    if path.stem[:2] in LESSON_CHECKS:
        LESSON_CHECKS[path.stem[:2]](code_cells)
