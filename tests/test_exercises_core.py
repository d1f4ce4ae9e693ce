"""The helpers every checker shares (diffusion_edu.exercises.core): running a student's
function safely, comparing answers, and naming the first known slip that matches."""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
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
