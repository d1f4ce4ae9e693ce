"""What every checker returns, and the helpers every lesson's checkers share.

* :class:`CheckResult`, :func:`passed`, :func:`failed`: the verdict.
* :func:`call_student`: run the student's function; a stub, a crash or a missing ``return``
  becomes a friendly verdict instead of a traceback.
* :func:`close`, :func:`first_matching_hint`: compare an answer with the right one and with
  the usual wrong ones, to name the slip.
* :func:`check_prediction`: a predict-then-check question: the student writes a number down
  *before* running the cell that measures it; the verdict names the slip behind a known wrong
  answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "CheckResult",
    "passed",
    "failed",
    "call_student",
    "close",
    "first_matching_hint",
    "check_prediction",
]


@dataclass(frozen=True)
class CheckResult:
    """The verdict on a student's answer: ``ok`` and a message (a hint when not ok).

    Prints as one friendly line in a notebook; ``bool(result)`` is ``result.ok``.
    """

    ok: bool
    message: str
    exercise: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        mark = "PASS" if self.ok else "NOT YET"
        where = f" [{self.exercise}]" if self.exercise else ""
        return f"{mark}{where}: {self.message}"

    def _repr_markdown_(self) -> str:
        icon = "✅" if self.ok else "💡"
        where = f" **{self.exercise}**:" if self.exercise else ""
        return f"{icon}{where} {self.message}"


def passed(exercise: str, message: str = "well done, that matches the library.") -> CheckResult:
    return CheckResult(True, message, exercise)


def failed(exercise: str, hint: str) -> CheckResult:
    return CheckResult(False, hint, exercise)


def call_student(
    exercise: str, fn: Callable[..., Any], *args: Any, returns: str | None = None
) -> tuple[Any, CheckResult | None]:
    """Run the student's function; turn "not written yet" and crashes into a friendly verdict.

    Returns ``(result, None)`` when it ran and returned something, else ``(None, verdict)``.
    ``returns`` names what the function should give back (e.g. ``"an int"``), for the hint
    when it returns None.
    """
    if not callable(fn):
        return None, failed(exercise, f"pass your function itself (got a {type(fn).__name__}).")
    try:
        result = fn(*args)
    except NotImplementedError:
        return None, failed(exercise, "not written yet: replace the `raise NotImplementedError`.")
    except Exception as error:  # a student's bug: report it, don't crash the notebook
        return None, failed(exercise, f"your function raised {type(error).__name__}: {error}")
    if result is None:
        fix = f"return {returns}." if returns else "did you forget `return`?"
        return None, failed(exercise, f"your function returned None: {fix}")
    return result, None


def close(a: Any, b: Any, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True if ``a`` and ``b`` have the same shape and values (within tolerance).

    Anything that is not numbers (a string, a ragged list) is simply not close.
    """
    try:
        a_t = torch.as_tensor(a, dtype=torch.float64)
        b_t = torch.as_tensor(b, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    if a_t.shape != b_t.shape:
        return False
    return bool(torch.allclose(a_t, b_t, rtol=rtol, atol=atol))


def first_matching_hint(
    result: Any, wrong_answers: Mapping[str, Any], rtol: float = 1e-4, atol: float = 1e-5
) -> str | None:
    """The hint of the first known wrong answer that ``result`` equals (:func:`close`), if any.

    ``wrong_answers`` maps each hint to the answer that slip gives; order matters.
    """
    for hint, wrong in wrong_answers.items():
        if close(result, wrong, rtol=rtol, atol=atol):
            return hint
    return None


def check_prediction(
    exercise: str,
    answer: float | None,
    right: float,
    *,
    rel: float = 0.1,
    abs_tol: float = 0.0,
    wrong_answers: Mapping[str, float] | None = None,
    why: str = "",
) -> CheckResult:
    """Check a predicted number against the measured (or derived) ``right`` one.

    ``answer`` is within tolerance when ``|answer - right| <= max(rel * |right|, abs_tol)``.
    A wrong answer close to one of ``wrong_answers`` (hint -> the value that slip gives, same
    tolerance) gets that hint; any other gets "too high"/"too low". ``why`` is added to the
    verdict either way, so the student learns the reason, not just the number.
    """
    if answer is None or answer is ...:
        return failed(exercise, "write your prediction first (replace the `...` with a number).")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return failed(exercise, f"your prediction should be a number, got {answer!r}.")
    tail = f" {why}" if why else ""

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= max(rel * abs(b), abs_tol)

    if near(value, right):
        return passed(exercise, f"{value:.4g} is right (the answer is {right:.4g}).{tail}")
    for hint, wrong in (wrong_answers or {}).items():
        if near(value, wrong):
            return failed(exercise, f"{hint}{tail}")
    direction = "too high" if value > right else "too low"
    return failed(exercise, f"{value:.4g} is {direction}: the answer is {right:.4g}.{tail}")
