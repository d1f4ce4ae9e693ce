"""Lesson 05 exercises: DDPM's training loss; a noise estimate as a score; memorisation.

0. ``my_diffusion_loss(model, x0, t, eps, schedule)``: DDPM's Algorithm 1 for given x_0, t and
   eps: build x_t (Eq. 4), ask the model for eps_hat, return the mean squared error (Eq. 14);
   checked against :func:`diffusion_edu.training.diffusion_loss`.

1. ``score(x_t) = grad_x log q(x_t) = -eps_hat / sqrt(1 - alpha_bar_t)`` (Tweedie's formula;
   Luo 2022, Eq. 151): noise estimation and score estimation are the same job.
2. The copy fraction: tau = 5th percentile of fresh points' nearest-training distances, and
   the fraction of samples closer than tau to a training point (check 1 of
   :func:`diffusion_edu.metrics.memorisation_report`).
3. Predict-then-check: what classifier-free guidance with w = 0 does
   (:func:`verify_guidance_zero_prediction`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_edu.exercises.core import (
    CheckResult,
    call_student,
    close,
    failed,
    first_matching_hint,
    passed,
)
from diffusion_edu.exercises.core import check_prediction as _check_prediction
from diffusion_edu.pretrained import load_pretrained
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.toy2d import copy_fraction, eps_to_score, make_spiral
from diffusion_edu.training import diffusion_loss

__all__ = [
    "solution_diffusion_loss",
    "check_diffusion_loss",
    "GUIDANCE_CHOICES",
    "verify_guidance_zero_prediction",
    "solution_eps_to_score",
    "check_eps_to_score",
    "solution_copy_fraction",
    "check_copy_fraction",
]

EXERCISE = "eps_hat -> score"


def solution_eps_to_score(eps_hat: torch.Tensor, t: int, schedule: NoiseSchedule) -> torch.Tensor:
    """Reference solution: ``-eps_hat / sqrt(1 - alpha_bar_t)`` for one int timestep t."""
    return -eps_hat / (1.0 - schedule.alpha_bars[t]).sqrt().to(eps_hat.dtype)


def check_eps_to_score(
    student_fn: Callable[[torch.Tensor, int, NoiseSchedule], torch.Tensor | None],
) -> CheckResult:
    """Check ``student_fn(eps_hat, t, schedule) -> score`` at several t."""
    schedule = NoiseSchedule.cosine(T=100)
    eps_hat = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    for t in (3, 40, 90):
        ab = schedule.alpha_bars[t].to(eps_hat.dtype)
        got, problem = call_student(
            EXERCISE, student_fn, eps_hat.clone(), t, schedule, returns="the score tensor"
        )
        if problem is not None:
            return problem
        got = torch.as_tensor(got, dtype=eps_hat.dtype)
        if got.shape != eps_hat.shape:
            return failed(
                EXERCISE, f"expected shape {tuple(eps_hat.shape)}, got {tuple(got.shape)}."
            )
        want = eps_to_score(eps_hat, t, schedule)
        if close(got, want, atol=1e-6):
            continue
        wrong = {
            "the sign is flipped: the score points AWAY from the noise, so it is "
            "-eps_hat / sqrt(1 - alpha_bar_t).": -want,
            "missing square root: divide by sqrt(1 - alpha_bar_t), the noise's standard "
            "deviation, not by its variance (1 - alpha_bar_t).": -eps_hat / (1 - ab),
            "you multiplied by sqrt(1 - alpha_bar_t); divide by it.": -eps_hat * (1 - ab).sqrt(),
            "you used sqrt(alpha_bar_t); the noise's scale in x_t is sqrt(1 - alpha_bar_t).": (
                -eps_hat / ab.sqrt()
            ),
            "the score is not the noise itself: scale -eps_hat by 1 / sqrt(1 - alpha_bar_t).": (
                -eps_hat
            ),
        }
        hint = first_matching_hint(got, wrong, atol=1e-6)
        return failed(
            EXERCISE,
            hint
            or f"at t={t} the first score should be {want[0].tolist()}, yours is "
            f"{got[0].tolist()}.",
        )
    return passed(
        EXERCISE, "score = -eps_hat / sqrt(1 - alpha_bar_t): noise estimation IS score estimation."
    )


COPY_EXERCISE = "copy fraction"


def solution_copy_fraction(
    samples: torch.Tensor, train: torch.Tensor, fresh: torch.Tensor
) -> float:
    """Reference solution: the share of samples closer to ``train`` than 95% of fresh points.

    tau = 5th percentile of min_j ||fresh_i - train_j||; answer = mean of
    1[min_j ||sample_i - train_j|| < tau].
    """
    d_fresh = torch.cdist(fresh, train).min(dim=1).values  # (M,)
    tau = torch.quantile(d_fresh, 0.05)
    d_samples = torch.cdist(samples, train).min(dim=1).values  # (N,)
    return (d_samples < tau).float().mean().item()


def check_copy_fraction(
    student_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float | None],
) -> CheckResult:
    """Check ``student_fn(samples, train, fresh) -> fraction`` on a half-copied sample set."""
    train, fresh = make_spiral(200, seed=0), make_spiral(1000, seed=1)
    g = torch.Generator().manual_seed(2)
    # 30 near-copies of training points and 70 new spiral points.
    copies = train[:30] + 1e-3 * torch.randn(30, 2, generator=g)
    samples = torch.cat([copies, make_spiral(70, seed=3)])
    got, problem = call_student(
        COPY_EXERCISE,
        student_fn,
        samples.clone(),
        train.clone(),
        fresh.clone(),
        returns="a float between 0 and 1",
    )
    if problem is not None:
        return problem
    want = copy_fraction(samples, train, fresh, percentile=5.0)
    if close(got, want, atol=1e-6):
        return passed(
            COPY_EXERCISE,
            f"{want:.0%} of these samples are copies (30 of the 100 were planted). A model that "
            "makes new points scores about 5%.",
        )
    d_fresh = torch.cdist(fresh, train).min(dim=1).values
    d_samples = torch.cdist(samples, train).min(dim=1).values

    def share_below(tau: torch.Tensor, d: torch.Tensor = d_samples) -> float:
        return (d < tau).float().mean().item()

    tau = torch.quantile(d_fresh, 0.05)
    wrong = {
        "you counted the samples FARTHER than the threshold; copies are the ones closer "
        "(d < tau).": 1.0 - want,
        "use the 5th percentile of the fresh distances, torch.quantile(d_fresh, 0.05), not "
        "the 95th.": share_below(torch.quantile(d_fresh, 0.95)),
        "the threshold is a low percentile of the fresh distances, torch.quantile(d_fresh, "
        "0.05), not their mean.": share_below(d_fresh.mean()),
        "measure each sample's distance to the TRAINING points (torch.cdist(samples, train)), "
        "not to the fresh ones.": share_below(tau, torch.cdist(samples, fresh).min(dim=1).values),
        "return a fraction (divide the count by the number of samples).": want * len(samples),
    }
    hint = first_matching_hint(got, wrong, atol=1e-6)
    return failed(
        COPY_EXERCISE,
        hint or f"expected {want:.3f} (30 planted copies among 100 samples), got {got!r}.",
    )


# ----------------------------------------------------------------------------- the loss
LOSS_EXERCISE = "DDPM's loss"


def solution_diffusion_loss(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """Reference solution: DDPM Algorithm 1 for given ``t`` (shape ``(B,)``) and ``eps``.

    ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` (Eq. 4), then
    ``mean((eps - model(x_t, t))^2)`` over the batch and every coordinate (Eq. 14).
    """
    shape = (-1,) + (1,) * (x0.ndim - 1)  # (B, 1, ...): one coefficient per example
    alpha_bar = schedule.alpha_bars[t].to(x0.dtype).view(shape)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    return ((eps - model(x_t, t)) ** 2).mean()


class _Float32Model(torch.nn.Module):
    """The checker's network: casts x_t to float32, so float64 arithmetic is no trap."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.net(x_t.float(), t, labels)


def _loss_inputs() -> tuple[_Float32Model, torch.Tensor, torch.Tensor, torch.Tensor, NoiseSchedule]:
    net, schedule = load_pretrained("spiral")  # a trained noise predictor: slips show in its loss
    model = _Float32Model(net).eval()
    x0 = make_spiral(64, seed=0)  # (64, 2)
    g = torch.Generator().manual_seed(1)
    t = torch.randint(1, schedule.T + 1, (64,), generator=g)  # (64,): one t per example
    t[:4] = torch.tensor([1, 2, 99, 100])  # the two ends, where slips show most
    eps = torch.randn(64, 2, generator=g)
    return model, x0, t, eps, schedule


def _variant(
    model: _Float32Model,
    x0: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    signal: str = "sqrt",
    noise: str = "sqrt",
    target: str = "eps",
    shift: int = 0,
) -> float:
    """The loss with one slip: coefficients without their square root, swapped, a wrong target."""
    ab = schedule.alpha_bars[(t + shift).clamp(0, schedule.T)].to(x0.dtype)[:, None]  # (B, 1)
    a = {"sqrt": ab.sqrt(), "plain": ab, "swap": (1 - ab).sqrt()}[signal]
    b = {"sqrt": (1 - ab).sqrt(), "plain": 1 - ab, "swap": ab.sqrt()}[noise]
    x_t = a * x0 + b * eps
    wanted = {"eps": eps, "x0": x0, "x_t": x_t}[target]
    with torch.no_grad():
        return float(((wanted - model(x_t, t)) ** 2).mean())


def check_diffusion_loss(
    student_fn: Callable[..., torch.Tensor | float | None],
) -> CheckResult:
    """Check ``student_fn(model, x0, t, eps, schedule) -> loss`` against the library's loss.

    The reference is :func:`diffusion_edu.training.diffusion_loss` with the same ``t`` and
    ``eps`` (64 spiral points, and lesson 05's shipped spiral model with its cosine schedule,
    T = 100: a trained network, so a wrong x_t shows in the loss).
    Known slips (alpha_bar for its square root, the noise's variance for its std, signal and
    noise swapped, eps_hat compared with x_0 or x_t, an off-by-one t, a sum or a per-example
    loss instead of the mean, a missing square) get their own hint.
    """
    model, x0, t, eps, schedule = _loss_inputs()
    with torch.no_grad():
        want = float(diffusion_loss(model, x0, schedule, t=t, eps=eps))
        got, problem = call_student(
            LOSS_EXERCISE,
            student_fn,
            model,
            x0.clone(),
            t.clone(),
            eps.clone(),
            schedule,
            returns="the loss, one number",
        )
    if problem is not None:
        if "must match the size of tensor" in problem.message:
            return failed(
                LOSS_EXERCISE,
                f"{problem.message}. t holds one timestep per example, so alpha_bars[t] has "
                "shape (B,) while x0 is (B, 2): reshape the coefficient to (B, 1), e.g. with "
                "[:, None], so that it scales each row of x0.",
            )
        return problem
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64).detach()
    except (TypeError, ValueError, RuntimeError):
        return failed(LOSS_EXERCISE, f"return the loss as a number or a tensor, got {got!r}.")
    if got_t.numel() == x0.shape[0]:
        return failed(
            LOSS_EXERCISE,
            "you returned one loss per example; Algorithm 1's loss is one number, the mean "
            "over the batch as well.",
        )
    if got_t.numel() == x0.numel():
        return failed(
            LOSS_EXERCISE,
            "you returned every squared error; average them into one number (.mean()).",
        )
    if got_t.numel() != 1:
        return failed(
            LOSS_EXERCISE, f"return one number, got a tensor of shape {tuple(got_t.shape)}."
        )
    value = float(got_t.reshape(()))
    if close(value, want, rtol=1e-4, atol=1e-6):
        return passed(
            LOSS_EXERCISE,
            f"your loss is {value:.4f}, the library's diffusion_loss gives {want:.4f}: that is "
            "DDPM's Algorithm 1, written by you.",
        )
    args = (model, x0, t, eps, schedule)
    with torch.no_grad():
        abs_err = float((eps - model(_variant_x_t(*args), t)).abs().mean())
    wrong = {
        "x_t needs the SQUARE ROOTS of alpha_bar_t and 1 - alpha_bar_t: they scale x_0 and "
        "eps, whose variances they multiply by alpha_bar_t and 1 - alpha_bar_t.": _variant(
            *args, signal="plain", noise="plain"
        ),
        "the signal's coefficient is sqrt(alpha_bar_t), not alpha_bar_t.": _variant(
            *args, signal="plain"
        ),
        "the noise's coefficient is its standard deviation sqrt(1 - alpha_bar_t), not its "
        "variance 1 - alpha_bar_t.": _variant(*args, noise="plain"),
        "signal and noise are swapped: x_0 gets sqrt(alpha_bar_t), eps gets "
        "sqrt(1 - alpha_bar_t).": _variant(*args, signal="swap", noise="swap"),
        "the model predicts the NOISE: compare eps_hat with eps, not with x_0.": _variant(
            *args, target="x0"
        ),
        "the model predicts the NOISE: compare eps_hat with eps, not with x_t.": _variant(
            *args, target="x_t"
        ),
        "off by one: alpha_bars[t] is alpha_bar_t (index 0 means no noise), no -1 needed.": (
            _variant(*args, shift=-1)
        ),
        "off by one: alpha_bars[t] is alpha_bar_t, no +1 needed.": _variant(*args, shift=1),
        "you summed the squared errors; take their mean (over the batch and the coordinates).": (
            want * x0.numel()
        ),
        "you averaged over the batch but summed over the coordinates; average over both.": (
            want * x0.shape[1]
        ),
        "square the error: DDPM's loss is the mean SQUARED error, not the mean absolute one.": (
            abs_err
        ),
    }
    hint = first_matching_hint(value, wrong, rtol=1e-4, atol=1e-6)
    return failed(LOSS_EXERCISE, hint or f"expected {want:.4f}, got {value:.4f}.")


def _variant_x_t(
    model: _Float32Model,
    x0: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    ab = schedule.alpha_bars[t].to(x0.dtype)[:, None]  # (B, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


# ----------------------------------------------------------------------------- prediction
GUIDANCE_EXERCISE = "predict: guidance w = 0"

GUIDANCE_CHOICES = {
    1: "the label is ignored: the samples cover the whole data set, as an unconditional model's",
    2: "plain conditional sampling: the samples follow the label, without exaggeration",
    3: "nothing is denoised: the samples stay pure noise",
    4: "the samples avoid the requested class",
}


def verify_guidance_zero_prediction(choice: int | None) -> CheckResult:
    """Predict-then-check (multiple choice, :data:`GUIDANCE_CHOICES`): what w = 0 does.

    With ``eps = eps_uncond + w (eps_cond - eps_uncond)`` (the course's and diffusers'
    convention), w = 0 leaves ``eps_uncond``: unconditional sampling (choice 1).
    """
    if choice is not None and choice is not ... and choice not in GUIDANCE_CHOICES:
        return failed(GUIDANCE_EXERCISE, f"choose one of {sorted(GUIDANCE_CHOICES)}.")
    return _check_prediction(
        GUIDANCE_EXERCISE,
        choice,
        1,
        rel=0.0,
        abs_tol=0.1,
        wrong_answers={
            "that is w = 1: eps_uncond + 1 x (eps_cond - eps_uncond) = eps_cond.": 2,
            "w only mixes two noise estimates; the sampler still denoises with whatever "
            "estimate w gives.": 3,
            "that needs a NEGATIVE w, which pushes away from the label; w = 0 is neutral.": 4,
        },
        why="With w = 0 the mix eps_uncond + 0 x (eps_cond - eps_uncond) is eps_uncond, the "
        "model's estimate with the label hidden: unconditional sampling (choice 1).",
    )
