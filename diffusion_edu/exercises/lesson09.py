"""Lesson 09 exercises: classifier-free guidance by hand, guidance in an interval, and three
predict-then-check questions.

1. ``my_guided_eps(eps_cond, eps_uncond, w) -> eps``: the guided noise estimate
   ``eps_uncond + w (eps_cond - eps_uncond)`` (Ho & Salimans 2022, Sec. 3.2, Eq. 6 written in
   the course's convention: the course's w is their w + 1, diffusers' ``guidance_scale``).
2. ``my_step_guidance(t, guidance, interval) -> w``: the scale one sampling step uses when
   guidance is applied only in a limited interval of timesteps (Kynkaanniemi et al. 2024):
   ``guidance`` where ``t_lo < t <= t_hi``, 1 (plain conditional) elsewhere, ``guidance`` at
   every step when the interval is None.

The checkers compare with the library (:func:`diffusion_edu.samplers.guided_prediction`, which
the samplers use at every guided step, and :func:`diffusion_edu.samplers.step_guidance`) and
name the usual slips by computing what each slip would give. The ``verify_*`` functions check
predictions written down before a cell measures the answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    close,
    failed,
    passed,
)
from diffusion_edu.exercises.core import check_prediction as _check_prediction
from diffusion_edu.samplers import guided_prediction, step_guidance

__all__ = [
    "solution_my_guided_eps",
    "solution_my_step_guidance",
    "check_my_guided_eps",
    "check_my_step_guidance",
    "verify_unguided_prediction",
    "verify_conditional_prediction",
    "verify_convention_prediction",
    "GUIDED_WEIGHTS",
]

GUIDED = "my_guided_eps"
INTERVAL = "my_step_guidance"
UNGUIDED = "w = 0 prediction"
CONDITIONAL = "w = 1 prediction"
CONVENTION = "guidance conventions"
# The scales the guided-combination checker tries: a guided one first (every slip gives its
# own answer there), then the two special cases w = 0 and w = 1.
GUIDED_WEIGHTS = (2.5, 0.0, 1.0)
# (t_lo, t_hi) and the timesteps the interval checker tries: both edges and both sides.
CHECK_INTERVAL = (200, 700)
CHECK_TIMESTEPS = (1000, 701, 700, 450, 201, 200, 199, 1)


# ----------------------------------------------------------------------------- solutions
def solution_my_guided_eps(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float
) -> torch.Tensor:
    """Reference solution: classifier-free guidance, ``eps_uncond + w (eps_cond - eps_uncond)``.

    Ho & Salimans (2022), Sec. 3.2, Eq. 6 writes it ``(1 + w') eps_cond - w' eps_uncond`` with
    w' = w - 1: the same line through the two estimates. w = 0 gives eps_uncond (the prompt is
    ignored), w = 1 gives eps_cond (plain conditional sampling), w > 1 goes past eps_cond, away
    from eps_uncond.
    """
    return eps_uncond + w * (eps_cond - eps_uncond)


def solution_my_step_guidance(t: int, guidance: float, interval: tuple[int, int] | None) -> float:
    """Reference solution: the guidance scale of the step from timestep ``t``.

    Guidance only where ``t_lo < t <= t_hi`` (Kynkaanniemi et al. 2024); elsewhere the step
    uses the conditional prediction alone, w = 1. No interval: every step is guided.
    """
    if interval is None:
        return guidance
    t_lo, t_hi = interval
    return guidance if t_lo < t <= t_hi else 1.0


# ----------------------------------------------------------------------------- exercise 1
def _guided_slips(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float
) -> list[tuple[str, torch.Tensor]]:
    """What each usual slip gives at scale ``w``, ``(hint, result)``, in the order to report."""
    diff = eps_cond - eps_uncond
    return [
        (
            "eps_cond and eps_uncond are swapped: start from the unconditional estimate and move "
            "w times the difference (eps_cond - eps_uncond) towards the conditional one.",
            eps_cond + w * (eps_uncond - eps_cond),
        ),
        (
            "that is Ho & Salimans' form (1 + w) eps_cond - w eps_uncond with the course's w: "
            "in the course (and diffusers) w = 1 must give eps_cond, so the course's w is their "
            "w + 1. Write it eps_uncond + w (eps_cond - eps_uncond).",
            (1 + w) * eps_cond - w * eps_uncond,
        ),
        (
            "only the difference is left: add it to eps_uncond (the guided estimate is a point on "
            "the line through the two estimates, not the direction between them).",
            w * diff,
        ),
        (
            "only eps_cond is scaled: guidance needs the unconditional estimate too, "
            "eps_uncond + w (eps_cond - eps_uncond).",
            w * eps_cond,
        ),
        (
            "the sign is flipped: w > 1 should push further towards eps_cond, away from "
            "eps_uncond (eps_uncond + w (eps_cond - eps_uncond)).",
            eps_uncond - w * diff,
        ),
        (
            "that is a weighted average (eps_uncond + w eps_cond) / (1 + w): guidance "
            "extrapolates past eps_cond for w > 1 instead of staying between the two.",
            (eps_uncond + w * eps_cond) / (1 + w),
        ),
        ("you returned eps_cond whatever w is: w = 0 must give eps_uncond.", eps_cond),
        ("you returned eps_uncond whatever w is: w = 1 must give eps_cond.", eps_uncond),
    ]


def _check_tensor(exercise: str, got: object, like: torch.Tensor) -> CheckResult | None:
    if not isinstance(got, torch.Tensor):
        return failed(exercise, f"return a torch.Tensor, got a {type(got).__name__}.")
    if got.shape != like.shape:
        return failed(
            exercise,
            f"expected a tensor of the estimates' shape {tuple(like.shape)}, got "
            f"{tuple(got.shape)}.",
        )
    return None


def check_my_guided_eps(
    student_fn: Callable[[torch.Tensor, torch.Tensor, float], object],
) -> CheckResult:
    """Check ``student_fn(eps_cond, eps_uncond, w) -> eps`` at w = 2.5, 0 and 1.

    The reference is the samplers' own combination,
    :func:`diffusion_edu.samplers.guided_prediction`, on two random estimates ``(3, 1, 6, 6)``;
    a wrong answer gets the hint of the slip it matches.
    """
    g = torch.Generator().manual_seed(9)
    eps_cond = torch.randn(3, 1, 6, 6, generator=g)  # (B, C, H, W)
    eps_uncond = torch.randn(3, 1, 6, 6, generator=g)
    for w in GUIDED_WEIGHTS:
        got, problem = call_student(
            GUIDED, student_fn, eps_cond.clone(), eps_uncond.clone(), w,
            returns="the guided estimate, a tensor",
        )  # fmt: skip
        if problem is not None:
            return problem
        problem = _check_tensor(GUIDED, got, eps_cond)
        if problem is not None:
            return problem
        got = got.detach().to(torch.float32)
        right = guided_prediction(eps_cond, eps_uncond, w)
        if close(got, right):
            continue
        slips = _guided_slips(eps_cond, eps_uncond, w)
        hint = next((h for h, wrong in slips if close(got, wrong)), None)
        return failed(
            GUIDED,
            f"at w = {w:g}: {hint}"
            if hint
            else f"at w = {w:g} your estimate differs from the library's by up to "
            f"{(got - right).abs().max().item():.3g}. At w = 0 it must be eps_uncond, at w = 1 "
            "eps_cond.",
        )
    return passed(
        GUIDED,
        "right at w = 2.5, 0 and 1: the library's guided estimate. w = 0 is the unconditional "
        "model, w = 1 the conditional one, w > 1 goes past it.",
    )


# ----------------------------------------------------------------------------- exercise 2
def _interval_slips(guidance: float, interval: tuple[int, int]) -> list[tuple[str, Callable]]:
    """The usual slips, ``(hint, rule)``: ``rule(t)`` is the scale that slip gives at step t."""
    lo, hi = interval
    return [
        (
            "outside the interval the step is plain conditional, w = 1 (one model call), not "
            "unconditional (w = 0).",
            lambda t: guidance if lo < t <= hi else 0.0,
        ),
        (
            "inside and outside are swapped: the guided steps are those with t_lo < t <= t_hi.",
            lambda t: 1.0 if lo < t <= hi else guidance,
        ),
        (
            f"both edges are off: the interval is t_lo < t <= t_hi, so t = {lo} is outside and "
            f"t = {hi} inside.",
            lambda t: guidance if lo <= t < hi else 1.0,
        ),
        (
            f"t = {lo}, the lower edge, is not guided: t_lo < t (strictly).",
            lambda t: guidance if lo <= t <= hi else 1.0,
        ),
        (
            f"t = {hi}, the upper edge, is guided: t <= t_hi.",
            lambda t: guidance if lo < t < hi else 1.0,
        ),
    ]


def check_my_step_guidance(
    student_fn: Callable[[int, float, tuple[int, int] | None], object],
) -> CheckResult:
    """Check ``student_fn(t, guidance, interval) -> w`` against
    :func:`diffusion_edu.samplers.step_guidance`: t = 1000 ... 1 around the interval
    (200, 700) (both edges, both sides) with guidance 3, then ``interval=None``."""
    guidance = 3.0
    values: list[float] = []
    for t in CHECK_TIMESTEPS:
        got, problem = call_student(
            INTERVAL, student_fn, t, guidance, CHECK_INTERVAL, returns="the scale w, a number"
        )
        if problem is not None:
            return problem
        if isinstance(got, bool) or not isinstance(got, int | float):
            return failed(INTERVAL, f"return a number (the scale w), got {got!r}.")
        values.append(float(got))
    right = [step_guidance(t, guidance, CHECK_INTERVAL) for t in CHECK_TIMESTEPS]
    if values != right:
        for hint, rule in _interval_slips(guidance, CHECK_INTERVAL):
            if values == [rule(t) for t in CHECK_TIMESTEPS]:
                return failed(INTERVAL, hint)
        t, mine, want = next(
            (t, v, r) for t, v, r in zip(CHECK_TIMESTEPS, values, right, strict=True) if v != r
        )
        return failed(
            INTERVAL,
            f"at t = {t} with interval {CHECK_INTERVAL} and guidance {guidance:g} the step's "
            f"scale is {want:g}, not {mine:g}.",
        )
    try:
        got = student_fn(500, guidance, None)
    except Exception as error:  # a student's bug: say what None means
        return failed(
            INTERVAL,
            f"with interval=None your function raised {type(error).__name__}: {error}. None "
            "means 'no interval': guide every step (return guidance).",
        )
    if isinstance(got, bool) or not isinstance(got, int | float) or float(got) != guidance:
        return failed(
            INTERVAL,
            f"with interval=None it returned {got!r}: None means 'no interval', so every step "
            f"is guided (return guidance, here {guidance:g}).",
        )
    return passed(
        INTERVAL,
        "right on both edges, both sides and without an interval: the library's step_guidance.",
    )


# ----------------------------------------------------------------------------- predictions
def verify_unguided_prediction(
    answer: float | None, measured: float, conditional: float
) -> CheckResult:
    """Predict-then-check: the fraction of prompted digits that read as the digit asked for,
    sampled with w = 0 (``measured``, just measured by the lesson); ``conditional`` is the same
    measured at w = 1. Answers within 0.08 of ``measured`` pass (the sampling noise of ~50-100
    digits is about 0.04)."""
    return _check_prediction(
        UNGUIDED,
        answer,
        measured,
        rel=0.0,
        abs_tol=0.08,
        wrong_answers={
            f"{conditional:.0%} is about what w = 1 gives (measured next to it): w = 0 drops "
            "the prompt's term.": conditional,
            "w = 0 ignores the prompt altogether, so the digit asked for comes up no more often "
            "than any other.": 1.0,
        },
        why="With w = 0 the guided estimate is eps_uncond, the model's answer to the empty "
        "prompt: it draws digits of every class, and the one asked for comes up about 1 time "
        f"in 10 (measured: {measured:.0%}).",
    )


def verify_conditional_prediction(
    answer: float | None, measured: float, unguided: float
) -> CheckResult:
    """Predict-then-check: the same fraction at w = 1 (``measured``), plain conditional
    sampling; ``unguided`` is the w = 0 measurement. Within 0.08 passes."""
    return _check_prediction(
        CONDITIONAL,
        answer,
        measured,
        rel=0.0,
        abs_tol=0.08,
        wrong_answers={
            f"{unguided:.0%} is w = 0: at w = 1 the guided estimate is eps_cond, the prompted "
            "model itself.": unguided,
        },
        why="With w = 1 the guided estimate is eps_cond: one model call per step, no "
        f"guidance, the prompted model as trained (measured: {measured:.0%}). Guidance w > 1 "
        "is what pushes it further.",
    )


def verify_convention_prediction(answer: float | None, guidance_scale: float = 7.5) -> CheckResult:
    """Predict-then-check: diffusers' ``guidance_scale`` (the course's w) in Ho & Salimans'
    convention, where ``eps = (1 + w_HS) eps_cond - w_HS eps_uncond``: w_HS = w - 1."""
    right = guidance_scale - 1.0
    return _check_prediction(
        CONVENTION,
        answer,
        right,
        rel=0.0,
        abs_tol=1e-6,
        wrong_answers={
            f"{guidance_scale + 1:g} goes the wrong way: the course's w (= diffusers' "
            "guidance_scale) is Ho & Salimans' w + 1, so theirs is one less.": guidance_scale + 1,
            f"{guidance_scale:g} is the same number in both conventions: they differ by one "
            "(their w = 0 is plain conditional sampling, the course's w = 1).": guidance_scale,
        },
        why=f"eps_uncond + {guidance_scale:g} (eps_cond - eps_uncond) = "
        f"{guidance_scale:g} eps_cond - {guidance_scale - 1:g} eps_uncond = (1 + {right:g}) "
        f"eps_cond - {right:g} eps_uncond: Ho & Salimans' w = {right:g}.",
    )
