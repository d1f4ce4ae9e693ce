"""The root conftest.py: how `make test` groups its work and runs each lesson once."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
split = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(split)


class FakeItem:
    """What the hooks read of a pytest item: its path, name, parameters and markers."""

    def __init__(self, path: str, originalname: str = "cell", lesson: str | None = None):
        self.path = ROOT / path
        self.originalname = originalname
        self.callspec = SimpleNamespace(params={"lesson": lesson} if lesson else {})
        self.markers: list[pytest.Mark] = []

    def get_closest_marker(self, name: str):
        return next((m for m in self.markers if m.name == name), None)

    def add_marker(self, marker) -> None:
        self.markers.append(marker.mark)

    def group(self) -> str:
        return self.get_closest_marker("xdist_group").args[0]


def browser_test(lesson: str) -> FakeItem:
    return FakeItem("tests/browser/test_lessons.py", split.BROWSER_LESSON_TEST, lesson)


def nbval_cell(lesson: str) -> FakeItem:
    return FakeItem(f"notebooks/{lesson}")


class FakeConfig:
    def __init__(self) -> None:
        self.deselected: list = []
        self.hook = SimpleNamespace(pytest_deselected=lambda items: self.deselected.extend(items))


LESSON_A, LESSON_B = "07_training_on_mnist.ipynb", "08_sampling.ipynb"


def test_each_browser_lesson_is_a_group_and_everything_else_groups_by_file() -> None:
    items = [
        browser_test(LESSON_A),
        browser_test(LESSON_B),
        FakeItem("tests/browser/test_lessons.py", "test_helper"),
        FakeItem("tests/test_loop.py", "test_a"),
        FakeItem("tests/test_loop.py", "test_b"),
        nbval_cell(LESSON_A),
        nbval_cell(LESSON_A),
    ]
    split.pytest_collection_modifyitems(FakeConfig(), items)
    groups = [item.group() for item in items]
    assert groups[0] != groups[1], "two lessons in the browser must be able to run in parallel"
    assert groups[0] != groups[2]
    assert groups[3] == groups[4], "one file's tests stay in one worker"
    assert groups[5] == groups[6], "one notebook's cells stay in one kernel, in order"
    assert len({groups[2], groups[3], groups[5]}) == 3


def test_a_group_given_by_hand_is_kept() -> None:
    item = FakeItem("tests/test_loop.py", "test_a")
    item.add_marker(pytest.mark.xdist_group("mine"))
    split.pytest_collection_modifyitems(FakeConfig(), [item])
    assert [m.args[0] for m in item.markers] == ["mine"]


def test_a_lesson_opened_in_the_browser_is_not_run_again_under_nbval(monkeypatch) -> None:
    monkeypatch.setattr(split, "browser_can_run", lambda: True)
    in_browser = browser_test(LESSON_A)
    a_cells = [nbval_cell(LESSON_A), nbval_cell(LESSON_A)]
    b_cell = nbval_cell(LESSON_B)  # its browser test is not selected: nbval must still run it
    unit = FakeItem("tests/test_loop.py", "test_a")
    items = [in_browser, *a_cells, b_cell, unit]
    config = FakeConfig()
    lessons = split.deselect_lessons_run_in_browser(config, items)
    assert lessons == [LESSON_A]
    assert items == [in_browser, b_cell, unit]
    assert config.deselected == a_cells, "pytest must be told (its summary counts them)"


def test_without_a_browser_every_lesson_runs_under_nbval(monkeypatch) -> None:
    monkeypatch.setattr(split, "browser_can_run", lambda: False)
    items = [browser_test(LESSON_A), nbval_cell(LESSON_A)]
    config = FakeConfig()
    assert split.deselect_lessons_run_in_browser(config, list(items)) == []
    assert config.deselected == []
