"""Lesson 08 exercises: one DDPM reverse step, then the whole sampling loop.

1. ``my_ddpm_step(eps_hat, x_t, t, schedule, noise) -> x_{t-1}``: DDPM, Algorithm 2, line 4
   (the mean of Eq. 11 plus sigma_t times fresh noise, none at t = 1).
2. ``my_sample(model, schedule, x_T, labels, noises) -> x_0``: Algorithm 2's loop, from t = T
   down to t = 1, with ``noises[t]`` the fresh noise of the step from x_t to x_{t-1}.

The checkers compare with the library (:func:`diffusion_edu.samplers.ddpm_step` and
:func:`diffusion_edu.samplers.sample_steps`, both without clipping x0_hat) on fixed noise, and
name the usual slips by computing what each slip would give. DDPM (Sec. 3.2) reports that
sigma_t^2 = beta_t and sigma_t^2 = beta_tilde_t (the posterior variance, Eq. 7) give similar
results, so either passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    close,
    failed,
    passed,
)
from diffusion_edu.samplers import ddpm_step
from diffusion_edu.schedules import NoiseSchedule

__all__ = [
    "solution_my_ddpm_step",
    "solution_my_sampling_loop",
    "check_my_ddpm_step",
    "check_my_sampling_loop",
    "ToyNoisePredictor",
]

STEP = "my_ddpm_step"
LOOP = "my_sample"
STEP_TIMESTEPS = (600, 20, 1)  # a noisy step, a nearly clean one, and the last (no noise)


# ----------------------------------------------------------------------------- solutions
def solution_my_ddpm_step(
    eps_hat: torch.Tensor, x_t: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor
) -> torch.Tensor:
    """Reference solution: DDPM Algorithm 2, line 4, with sigma_t^2 = beta_tilde_t (Eq. 7).

    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) + sigma_t z,
    with z = 0 at t = 1.
    """
    alpha_t = schedule.alphas[t].item()
    beta_t = schedule.betas[t].item()
    alpha_bar_t = schedule.alpha_bars[t].item()
    mean = (x_t - beta_t / math.sqrt(1 - alpha_bar_t) * eps_hat) / math.sqrt(alpha_t)
    if t == 1:
        return mean  # the last step returns the mean: no noise is added
    sigma_t = math.sqrt(schedule.posterior_variance[t].item())
    return mean + sigma_t * noise


def solution_my_sampling_loop(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    labels: torch.Tensor | None,
    noises: torch.Tensor,
    step: Callable[..., torch.Tensor] = solution_my_ddpm_step,
) -> torch.Tensor:
    """Reference solution: DDPM Algorithm 2. ``noises[t]`` is the noise of the step t -> t-1."""
    x = x_T
    for t in range(schedule.T, 0, -1):  # t = T, T-1, ..., 1
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long)  # (B,) one timestep per image
        eps_hat = model(x, t_batch, labels)
        x = step(eps_hat, x, t, schedule, noises[t])
    return x


# ----------------------------------------------------------------------------- step checker
def _scalars(schedule: NoiseSchedule, t: int) -> dict[str, float]:
    return {
        "alpha": schedule.alphas[t].item(),
        "beta": schedule.betas[t].item(),
        "alpha_bar": schedule.alpha_bars[t].item(),
        "posterior": schedule.posterior_variance[t].item(),
    }


def _step(
    x_t: torch.Tensor,
    eps_hat: torch.Tensor,
    noise: torch.Tensor,
    inv_scale: float,
    eps_coef: float,
    sigma: float,
    sign: float = -1.0,
) -> torch.Tensor:
    """``inv_scale * (x_t + sign * eps_coef * eps_hat) + sigma * noise``: every variant below."""
    return inv_scale * (x_t + sign * eps_coef * eps_hat) + sigma * noise


def _right_steps(
    eps_hat: torch.Tensor, x_t: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The two right answers (DDPM Sec. 3.2): sigma_t^2 = beta_tilde_t or beta_t."""
    return {
        variance: ddpm_step(eps_hat, x_t, t, schedule, noise, variance=variance, clip_x0=False)
        for variance in ("posterior", "beta")
    }


def _step_slips(
    eps_hat: torch.Tensor, x_t: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor
) -> list[tuple[str, torch.Tensor]]:
    """What each usual slip gives at step ``t``, ``(hint, result)``, for both sigma choices."""
    c = _scalars(schedule, t)
    inv = 1 / math.sqrt(c["alpha"])
    eps_coef = c["beta"] / math.sqrt(1 - c["alpha_bar"])
    sigmas = {"posterior": math.sqrt(c["posterior"]), "beta": math.sqrt(c["beta"])}
    if t == 1:
        sigmas = {k: 0.0 for k in sigmas}  # the right answer adds no noise at t = 1
    slips: list[tuple[str, torch.Tensor]] = []

    def add(hint: str, make: Callable[[str, float], torch.Tensor]) -> None:
        slips.extend((hint, make(kind, sigma)) for kind, sigma in sigmas.items())

    # 1. the noise in the mean is scaled by (1 - alpha_bar_t), not by its square root
    add(
        "the noise estimate is scaled by beta_t / (1 - alpha_bar_t): the denominator is the "
        "noise's standard deviation, sqrt(1 - alpha_bar_t), not its variance.",
        lambda k, s: _step(x_t, eps_hat, noise, inv, c["beta"] / (1 - c["alpha_bar"]), s),
    )
    # 2. the fresh noise is multiplied by a variance instead of a standard deviation
    variances = {"posterior": c["posterior"], "beta": c["beta"]}
    if t > 1:
        add(
            "the fresh noise is multiplied by a variance (beta_t, or beta_tilde_t): multiply it "
            "by the standard deviation sigma_t, the square root.",
            lambda k, s: _step(x_t, eps_hat, noise, inv, eps_coef, variances[k]),
        )
        add(
            "no fresh noise: that is only the mean. DDPM adds sigma_t z at every step but the "
            "last (t = 1), which is what makes it a sampler rather than a denoiser.",
            lambda k, s: _step(x_t, eps_hat, noise, inv, eps_coef, 0.0),
        )
    else:
        slips.append((
            "noise was added at t = 1: the last step returns the mean, with no fresh noise "
            "(Algorithm 2: z = 0 when t = 1).",
            _step(x_t, eps_hat, noise, inv, eps_coef, math.sqrt(c["beta"])),
        ))  # fmt: skip
    # 3. beta and alpha swapped
    swapped_coef = c["alpha"] / math.sqrt(1 - c["alpha_bar"])
    add(
        "alpha_t and beta_t are swapped: divide by sqrt(alpha_t) (alpha_t = 1 - beta_t is close "
        "to 1), and scale the noise estimate by beta_t / sqrt(1 - alpha_bar_t).",
        lambda k, s: _step(x_t, eps_hat, noise, 1 / math.sqrt(c["beta"]), swapped_coef, s),
    )
    # 4. off by one: every coefficient taken at t - 1
    if t > 1:
        p = _scalars(schedule, t - 1)
        prev_sigmas = {"posterior": math.sqrt(p["posterior"]), "beta": math.sqrt(p["beta"])}
        prev_inv, prev_coef = 1 / math.sqrt(p["alpha"]), p["beta"] / math.sqrt(1 - p["alpha_bar"])
        add(
            "off by one: you used step t - 1's coefficients (schedule.alphas[t - 1]...). Index t "
            "of the schedule's arrays is step t (index 0 means 'no noise').",
            lambda k, s: _step(x_t, eps_hat, noise, prev_inv, prev_coef, prev_sigmas[k]),
        )
    # 5. the 1 / sqrt(alpha_t) in front is missing, or uses alpha_bar_t
    add(
        "the factor 1 / sqrt(alpha_t) in front of the bracket is missing: the forward step shrank "
        "x_{t-1} by sqrt(alpha_t), so the reverse step must scale back up.",
        lambda k, s: _step(x_t, eps_hat, noise, 1.0, eps_coef, s),
    )
    add(
        "you divided by sqrt(alpha_bar_t): one reverse step undoes one forward step, so divide "
        "by sqrt(alpha_t) (alpha_bar_t belongs to the jump from x_0 in one go).",
        lambda k, s: _step(x_t, eps_hat, noise, 1 / math.sqrt(c["alpha_bar"]), eps_coef, s),
    )
    # 6. the sign of the noise term
    add(
        "the noise estimate is added: subtract it (x_t contains the noise; the step removes a "
        "little of it).",
        lambda k, s: _step(x_t, eps_hat, noise, inv, eps_coef, s, sign=+1.0),
    )
    # 7. x0_hat returned instead of x_{t-1}
    x0_hat = (x_t - math.sqrt(1 - c["alpha_bar"]) * eps_hat) / math.sqrt(c["alpha_bar"])
    slips.append((
        "you returned the predicted x_0 (the jump all the way to a clean image): the step goes "
        "to x_{t-1}, one step less noisy.",
        x0_hat,
    ))  # fmt: skip
    return slips


def _check_tensor(exercise: str, got: object, like: torch.Tensor) -> CheckResult | None:
    if not isinstance(got, torch.Tensor):
        return failed(exercise, f"return a torch.Tensor, got a {type(got).__name__}.")
    if got.shape != like.shape:
        return failed(
            exercise,
            f"expected a tensor of x_t's shape {tuple(like.shape)}, got {tuple(got.shape)}.",
        )
    return None


def _hint(got: torch.Tensor, slips: Sequence[tuple[str, torch.Tensor]]) -> str | None:
    """The hint of the first slip whose result ``got`` equals (see ``core.first_matching_hint``;
    a list, since one slip can give two results: one per choice of sigma_t)."""
    return next((hint for hint, wrong in slips if close(got, wrong)), None)


def check_my_ddpm_step(
    student_fn: Callable[[torch.Tensor, torch.Tensor, int, NoiseSchedule, torch.Tensor], object],
    schedule: NoiseSchedule | None = None,
) -> CheckResult:
    """Check ``student_fn(eps_hat, x_t, t, schedule, noise) -> x_{t-1}`` at t = 600, 20, 1.

    The reference is :func:`diffusion_edu.samplers.ddpm_step` (``clip_x0=False``) with either
    variance; the default schedule is the course model's (cosine, T = 1000).
    """
    schedule = schedule or NoiseSchedule.cosine()
    g = torch.Generator().manual_seed(8)
    shape = (3, 1, 6, 6)  # (B, C, H, W): three small images
    for t in STEP_TIMESTEPS:
        x_t = torch.randn(shape, generator=g)
        eps_hat = torch.randn(shape, generator=g)
        noise = torch.randn(shape, generator=g)
        args = (eps_hat.clone(), x_t.clone(), t, schedule, noise.clone())
        got, problem = call_student(STEP, student_fn, *args, returns="x_{t-1}, a tensor")
        if problem is not None:
            return problem
        problem = _check_tensor(STEP, got, x_t)
        if problem is not None:
            return problem
        got = got.detach().to(torch.float64)
        right = _right_steps(eps_hat, x_t, t, schedule, noise)
        if any(close(got, want) for want in right.values()):
            continue
        hint = _hint(got, _step_slips(eps_hat, x_t, t, schedule, noise))
        want = right["posterior"]
        return failed(
            STEP,
            f"at t = {t}: {hint}"
            if hint
            else f"at t = {t} your x_{{t-1}} differs from the library's ddpm_step by up to "
            f"{(got - want).abs().max().item():.3g}. Check each coefficient against Eq. 11.",
        )
    return passed(
        STEP,
        f"right at t = {', '.join(map(str, STEP_TIMESTEPS))}: the mean of Eq. 11 plus sigma_t "
        "times fresh noise, and none on the last step.",
    )


# ----------------------------------------------------------------------------- loop checker
class ToyNoisePredictor:
    """A stand-in network for checking sampling loops: ``(x_t, t, labels) -> eps_hat``.

    A fixed smooth function of x_t, t and the label (``labels=None`` means "no label"), so a
    loop that skips a step, calls it at the wrong t or forgets the labels gives another answer.
    ``t`` may be an int or a LongTensor ``(B,)``, like the U-Net's.
    """

    def __init__(self, T: int) -> None:
        self.T = T

    def __call__(
        self, x_t: torch.Tensor, t: int | torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch = x_t.shape[0]
        t = torch.as_tensor(t)
        t = t.expand(batch) if t.ndim == 0 else t  # (B,)
        s = (t.to(x_t.dtype) / self.T).view(-1, *([1] * (x_t.ndim - 1)))  # (B, 1, 1, 1)
        y = torch.full((batch,), 10.0) if labels is None else torch.as_tensor(labels).double()
        y = (y.to(x_t.dtype) / 10).view(-1, *([1] * (x_t.ndim - 1)))
        return torch.tanh(0.8 * x_t * (0.5 + s)) + 0.3 * (y - 0.5) * (1 - s)


def _loop(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    labels: torch.Tensor | None,
    noises: torch.Tensor,
    ts: list[int],
    noise_at: Callable[[int, int], torch.Tensor],
    variance: Literal["posterior", "beta"] = "posterior",
) -> torch.Tensor:
    """The library's DDPM loop over ``ts``, with ``noise_at(i, t)`` as step i's noise."""
    x = x_T
    for i, t in enumerate(ts):
        eps_hat = model(x, torch.full((x.shape[0],), t, dtype=torch.long), labels)
        x = ddpm_step(eps_hat, x, t, schedule, noise_at(i, t), variance=variance)
    return x


def _loop_slips(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    labels: torch.Tensor,
    noises: torch.Tensor,
) -> list[tuple[str, torch.Tensor]]:
    """What each usual slip in the loop gives, ``(hint, result)``, for both sigma choices."""
    T = schedule.T
    down = list(range(T, 0, -1))
    by_t = lambda i, t: noises[t]  # noqa: E731  (the right noise)
    slips: list[tuple[str, torch.Tensor]] = []
    t_1 = torch.full((x_T.shape[0],), 1, dtype=torch.long)
    for variance in ("posterior", "beta"):
        cases = {
            "the model was called without the labels (model(x, t, None)): pass labels, or every "
            "sample is an unconditional one.": _loop(
                model, schedule, x_T, None, noises, down, by_t, variance
            ),
            "the loop starts at t = T - 1: it must start at t = T (x_T is the input) and run "
            "down to t = 1, e.g. range(T, 0, -1).": _loop(
                model, schedule, x_T, labels, noises, down[1:], by_t, variance
            ),
            "the loop stops at t = 2: the last step, from x_1 to x_0, is missing "
            "(range(T, 0, -1) includes t = 1).": _loop(
                model, schedule, x_T, labels, noises, down[:-1], by_t, variance
            ),
            "the timesteps run upwards: sampling goes from t = T (noise) down to t = 1.": _loop(
                model, schedule, x_T, labels, noises, down[::-1], by_t, variance
            ),
            "the noises are picked by step count (noises[0] for the first step): use noises[t], "
            "the noise of the step from x_t to x_{t-1}.": _loop(
                model, schedule, x_T, labels, noises, down, lambda i, t: noises[i], variance
            ),
            "the same noise is added at every step: each step needs its own fresh noise, "
            "noises[t].": _loop(
                model, schedule, x_T, labels, noises, down, lambda i, t: noises[T], variance
            ),
            "each step starts again from x_T: assign the step's result back to x "
            "(x = step(..., x, ...)).": ddpm_step(
                model(x_T, t_1, labels), x_T, 1, schedule, noises[1], variance=variance
            ),
        }
        slips.extend(cases.items())
    slips.append(("you returned x_T: the result of the last step is the sample.", x_T))
    return slips


def check_my_sampling_loop(
    student_fn: Callable[..., object], schedule: NoiseSchedule | None = None
) -> CheckResult:
    """Check ``student_fn(model, schedule, x_T, labels, noises) -> x_0`` (DDPM Algorithm 2).

    Runs it with a :class:`ToyNoisePredictor` on a cosine schedule with T = 20 (quick) and
    compares with :func:`diffusion_edu.samplers.sample_steps` (``sampler="ddpm"``,
    ``clip_x0=False``) on the same noises: ``noises[t]`` is the fresh noise of step t.
    """
    schedule = schedule or NoiseSchedule.cosine(T=20)
    T = schedule.T
    model = ToyNoisePredictor(T)
    g = torch.Generator().manual_seed(80)
    x_T = torch.randn(2, 1, 5, 5, generator=g)  # (B, C, H, W)
    labels = torch.tensor([3, 7])
    # The library's loop draws step t's noise as its (T - t + 1)-th draw: give the same draws,
    # indexed by t (noises[0] is never used: the step to x_0 adds no noise).
    draws = torch.randn(T, *x_T.shape, generator=g)  # (T, B, C, H, W), in the order t = T..1
    noises = torch.cat([torch.zeros(1, *x_T.shape), draws.flip(0)])  # (T + 1, B, C, H, W)
    got, problem = call_student(
        LOOP, student_fn, model, schedule, x_T.clone(), labels.clone(), noises.clone(),
        returns="the final x_0, a tensor",
    )  # fmt: skip
    if problem is not None:
        return problem
    problem = _check_tensor(LOOP, got, x_T)
    if problem is not None:
        return problem
    got = got.detach().to(torch.float64)
    down = list(range(T, 0, -1))
    right = [
        _loop(model, schedule, x_T, labels, noises, down, lambda i, t: noises[t], variance)
        for variance in ("posterior", "beta")
    ]
    if any(close(got, want) for want in right):
        return passed(
            LOOP,
            f"your loop gives the library's DDPM samples (T = {T} steps, the same noise): "
            "that is all of Algorithm 2.",
        )
    hint = _hint(got, _loop_slips(model, schedule, x_T, labels, noises))
    if hint is None:
        hint = (
            "the result differs from the library's DDPM loop on the same noise. If your loop "
            "calls my_ddpm_step, check that it passes first; the loop itself is: for t from T "
            "down to 1, eps_hat = model(x, t, labels), x = one step with noises[t]."
        )
    return failed(LOOP, hint)
