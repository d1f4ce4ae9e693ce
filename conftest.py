"""How `make test` spreads its work (all of tests/ and every lesson under nbval).

Two things, both about time, neither about what is checked:

1. **Groups for pytest-xdist** (`make test` runs `--dist loadgroup`). Each test file is one
   group, so a file's tests and a notebook's cells stay together in one worker, in order (what
   `--dist loadfile` did), except the lessons in the browser (tests/browser/test_lessons.py):
   each lesson is its own group, so the two workers share them instead of one worker running
   all fourteen one after the other (each worker then starts its own JupyterLab and Chromium).

2. **One headless run per lesson.** A lesson run in JupyterLab in Chromium is checked for
   everything nbval's lax mode checks (no cell raises, no traceback on stderr) and much more
   (widgets, figures, every control). So when the same pytest run will open a lesson in the
   browser (its browser test is selected and Chromium and Playwright are present), the lesson
   is not run a second time under nbval; a line at the end of pytest's report names those
   lessons. Without Chromium, or with the browser tests deselected (e.g. `-m "not
   slow"`) or not collected (`pytest notebooks/07_training_on_mnist.ipynb`), nbval runs them.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

BROWSER_LESSON_TEST = "test_lesson_in_the_browser"


def browser_can_run() -> bool:
    """True when the browser tests will run rather than skip: Chromium on PATH and Playwright
    (the conditions under which tests/browser/conftest.py skips them)."""
    has_playwright = importlib.util.find_spec("playwright") is not None
    return shutil.which("chromium") is not None and has_playwright


def _is_notebook_cell(item: pytest.Item) -> bool:
    return Path(str(item.path)).suffix == ".ipynb"


def _browser_lesson(item: pytest.Item) -> str | None:
    """The lesson file a browser lesson test opens (its parameter), else None."""
    if getattr(item, "originalname", None) != BROWSER_LESSON_TEST:
        return None
    return item.callspec.params.get("lesson")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group every item for `--dist loadgroup`: by file, a browser lesson by itself."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        lesson = _browser_lesson(item)
        group = f"browser-{lesson}" if lesson else Path(str(item.path)).name
        item.add_marker(pytest.mark.xdist_group(group))


class _OneRunPerLesson:
    """A plugin of its own, so that its hook can run last: after `-k`, `-m` and `--deselect`.

    Under pytest-xdist the workers collect, so each worker passes the lessons it left to the
    browser back to the controller (``workeroutput``), which names them in its summary."""

    def __init__(self) -> None:
        self.lessons: set[str] = set()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list) -> None:
        self.lessons = set(deselect_lessons_run_in_browser(config, items))
        if hasattr(config, "workeroutput"):  # an xdist worker: tell the controller
            config.workeroutput["browser_only_lessons"] = sorted(self.lessons)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:  # the xdist controller
        self.lessons.update(getattr(node, "workeroutput", {}).get("browser_only_lessons", []))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.lessons:
            terminalreporter.write_line(
                f"{len(self.lessons)} lessons ran in the browser only, not also under nbval "
                f"(conftest.py): {', '.join(sorted(name[:2] for name in self.lessons))}"
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_OneRunPerLesson(), "one-run-per-lesson")


def deselect_lessons_run_in_browser(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Drop the nbval cells of every lesson this run also opens in the browser, when the browser
    tests can run; return those lessons' file names."""
    if not browser_can_run():
        return []
    in_browser = {lesson for item in items if (lesson := _browser_lesson(item))}
    keep, dropped = [], []
    for item in items:
        if _is_notebook_cell(item) and Path(str(item.path)).name in in_browser:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    return sorted({Path(str(item.path)).name for item in dropped})
