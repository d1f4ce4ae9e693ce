"""Self-checking exercises. Each lesson's ``check_*`` helpers live in ``lessonNN.py`` beside this.

A checker takes the student's function, runs it against the library's own solution on a few
inputs, and returns a :class:`CheckResult` that prints as a friendly pass / hint.
"""

from diffusion_edu.exercises.core import CheckResult

__all__ = ["CheckResult"]
