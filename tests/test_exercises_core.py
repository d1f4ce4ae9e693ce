"""The helpers every checker shares (diffusion_edu.exercises.core): running a student's
function safely, comparing answers, and naming the first known slip that matches."""

from __future__ import annotations

import re

import pytest
import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    check_prediction,
    close,
    failed,
    first_matching_hint,
    passed,
)


def _stub(*args: object) -> None:
    raise NotImplementedError


def test_call_student_returns_the_result_and_passes_the_arguments() -> None:
    result, problem = call_student("add", lambda a, b: a + b, 2, 3)
    assert (result, problem) == (5, None)
    result, problem = call_student("zero", lambda: 0)  # falsy is fine: only None is "missing"
    assert (result, problem) == (0, None)


@pytest.mark.parametrize(
    "fn, kwargs, message",
    [
        (_stub, {}, "not written yet: replace the `raise NotImplementedError`."),
        (lambda: None, {}, "your function returned None: did you forget `return`?"),
        (lambda: None, {"returns": "an int"}, "your function returned None: return an int."),
        (lambda: 1 / 0, {}, "your function raised ZeroDivisionError: division by zero"),
        (42, {}, "pass your function itself (got a int)."),
    ],
)
def test_call_student_turns_problems_into_verdicts(fn, kwargs, message) -> None:  # noqa: ANN001
    result, problem = call_student("ex", fn, **kwargs)
    assert result is None
    assert problem == CheckResult(False, message, "ex")
    assert str(problem) == f"NOT YET [ex]: {message}"


def test_close_compares_shape_and_values_within_tolerance() -> None:
    a = torch.tensor([1.0, 2.0, 3.0])
    assert close(a, [1.0, 2.0, 3.0])
    assert close(a, a + 1e-6) and not close(a, a + 1e-3)
    assert close(a, a + 1e-3, rtol=0.0, atol=1e-2)
    assert not close(a, a[None])  # same values, different shape
    assert not close(a, "1, 2, 3") and not close([[1.0], [2.0, 3.0]], a)  # not numbers


def test_first_matching_hint_is_the_first_wrong_answer_that_matches() -> None:
    wrong = {"first": 1.0, "second": 2.0, "also two": 2.0}
    assert first_matching_hint(2.0, wrong) == "second"  # order decides between equal answers
    assert first_matching_hint(3.0, wrong) is None
    assert first_matching_hint(2.001, wrong) is None
    assert first_matching_hint(2.001, wrong, rtol=0.0, atol=0.01) == "second"


def test_passed_and_failed_build_verdicts() -> None:
    assert passed("ex") and passed("ex").exercise == "ex"
    verdict = failed("ex", "a hint")
    assert not verdict and verdict.message == "a hint"
    assert verdict._repr_markdown_() == "💡 **ex**: a hint"


# ----------------------------------------------------------------------------- every checker
def _every_exercise() -> list[tuple[str, object, object]]:
    """(name, check_X, solution_X) for every exercise of every lesson module."""
    import importlib
    import pkgutil

    import diffusion_edu.exercises as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("lesson"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name in sorted(vars(module)):
            if name.startswith("check_"):
                solution = getattr(module, "solution_" + name.removeprefix("check_"))
                found.append((f"{info.name}.{name}", getattr(module, name), solution))
    return found


EXERCISES = _every_exercise()


def test_every_lesson_with_an_exercise_is_found() -> None:
    lessons = {name.split(".")[0] for name, _, _ in EXERCISES}
    assert lessons == {f"lesson{n:02d}" for n in range(1, 14)} and len(EXERCISES) >= 20


@pytest.mark.parametrize("name, checker, solution", EXERCISES, ids=[e[0] for e in EXERCISES])
def test_every_reference_solution_passes(name, checker, solution) -> None:  # noqa: ANN001
    result = checker(solution)
    assert result.ok, (name, result.message)
    assert str(result).startswith("PASS")


def _forgot_return(*args: object) -> None:
    pass


def _crashes(*args: object) -> float:
    return 1 / 0


@pytest.mark.parametrize("name, checker, solution", EXERCISES, ids=[e[0] for e in EXERCISES])
def test_every_checker_answers_stubs_crashes_and_non_functions_kindly(
    name,
    checker,
    solution,  # noqa: ANN001
) -> None:
    assert "not written yet" in checker(_stub).message
    forgot = checker(_forgot_return).message
    assert re.search(r"returned None: (did you forget `return`\?|return \w)", forgot), forgot
    result = checker(_crashes)
    assert not result.ok and "ZeroDivisionError" in result.message
    assert str(result).startswith("NOT YET")
    assert "pass your function itself" in checker(None).message


def test_check_prediction_accepts_an_answer_within_tolerance_and_says_why() -> None:
    verdict = check_prediction("snr", 660, 675, rel=0.05, why="SNR falls with t.")
    assert verdict.ok and "675" in verdict.message and verdict.message.endswith("SNR falls with t.")
    assert not check_prediction("snr", 600, 675, rel=0.05).ok


def test_check_prediction_names_the_slip_of_a_known_wrong_answer() -> None:
    wrong = {"you forgot the square root.": 0.25}
    verdict = check_prediction("std", 0.26, 0.5, wrong_answers=wrong)
    assert not verdict.ok and verdict.message == "you forgot the square root."
    high = check_prediction("std", 0.9, 0.5, wrong_answers=wrong)
    assert not high.ok and "too high" in high.message
    low = check_prediction("std", 0.1, 0.5, abs_tol=0.01)
    assert not low.ok and "too low" in low.message


@pytest.mark.parametrize("answer, message", [(..., "write your prediction first"),
                                             (None, "write your prediction first"),
                                             ("abc", "should be a number")])  # fmt: skip
def test_check_prediction_asks_for_a_number(answer, message) -> None:  # noqa: ANN001
    verdict = check_prediction("q", answer, 1.0)
    assert not verdict.ok and message in verdict.message
