"""What every checker returns, and helpers to build one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckResult", "passed", "failed"]


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
