"""Lesson 08's self-checking exercises (diffusion_edu.exercises.lesson08): one DDPM step and the
sampling loop. The checkers pass the solutions and the library's own functions, name each usual
slip, and turn a stub, a crash or a wrong shape into a friendly verdict."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_edu.exercises.lesson08 import (
    ToyNoisePredictor,
    check_my_ddpm_step,
    check_my_sampling_loop,
    solution_my_ddpm_step,
    solution_my_sampling_loop,
)
from diffusion_edu.samplers import ddpm_step, sample_steps
from diffusion_edu.schedules import NoiseSchedule


def _c(schedule: NoiseSchedule, t: int) -> tuple[float, float, float, float]:
    """(alpha_t, beta_t, alpha_bar_t, beta_tilde_t) as floats."""
    return (
        schedule.alphas[t].item(),
        schedule.betas[t].item(),
        schedule.alpha_bars[t].item(),
        schedule.posterior_variance[t].item(),
    )


def _step(eps_hat, x_t, t, schedule, noise, *, inv=None, coef=None, sigma=None, at=None):  # noqa: ANN001, ANN202
    """A DDPM step with any of its pieces replaced (a slip), from step ``at``'s coefficients."""
    alpha, beta, alpha_bar, post = _c(schedule, t if at is None else at)
    inv = 1 / math.sqrt(alpha) if inv is None else inv(alpha, beta, alpha_bar)
    coef = beta / math.sqrt(1 - alpha_bar) if coef is None else coef(alpha, beta, alpha_bar)
    sigma = (math.sqrt(post) if t > 1 else 0.0) if sigma is None else sigma(t, beta, post)
    return inv * (x_t - coef * eps_hat) + sigma * noise


# ----------------------------------------------------------------------------- my_ddpm_step
def test_step_solution_and_library_pass() -> None:
    assert check_my_ddpm_step(solution_my_ddpm_step).ok
    lib = lambda e, x, t, s, n: ddpm_step(e, x, t, s, n, clip_x0=False)  # noqa: E731
    assert check_my_ddpm_step(lib).ok


def test_step_accepts_sigma_squared_beta_too() -> None:
    # DDPM Sec. 3.2: sigma_t^2 = beta_t works as well as the posterior variance.
    beta_version = lambda e, x, t, s, n: ddpm_step(e, x, t, s, n, variance="beta")  # noqa: E731
    assert check_my_ddpm_step(beta_version).ok


def test_step_solution_matches_posterior_mean_of_x0_hat() -> None:
    # Eq. 11's mean is the posterior mean (Eq. 7) at the x0_hat the noise estimate implies.
    from diffusion_edu.forward import q_posterior
    from diffusion_edu.targets import predict_x0_from_eps

    schedule = NoiseSchedule.cosine()
    g = torch.Generator().manual_seed(0)
    x_t, eps_hat = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    zero = torch.zeros_like(x_t)
    for t in (2, 300, 999):
        mean, _ = q_posterior(predict_x0_from_eps(x_t, t, eps_hat, schedule), x_t, t, schedule)
        torch.testing.assert_close(solution_my_ddpm_step(eps_hat, x_t, t, schedule, zero), mean)


SLIPS = [
    ("variance: 1 - alpha_bar", dict(coef=lambda a, b, ab: b / (1 - ab)), "not its variance"),
    ("noise times beta_tilde", dict(sigma=lambda t, b, p: p), "multiplied by a variance"),
    ("noise times beta", dict(sigma=lambda t, b, p: b), "multiplied by a variance"),
    ("no fresh noise", dict(sigma=lambda t, b, p: 0.0), "no fresh noise"),
    ("noise at t = 1", dict(sigma=lambda t, b, p: math.sqrt(b)), "noise was added at t = 1"),
    (
        "alpha and beta swapped",
        dict(inv=lambda a, b, ab: 1 / math.sqrt(b), coef=lambda a, b, ab: a / math.sqrt(1 - ab)),
        "swapped",
    ),
    ("missing 1/sqrt(alpha_t)", dict(inv=lambda a, b, ab: 1.0), "is missing"),
    ("1/sqrt(alpha_bar_t)", dict(inv=lambda a, b, ab: 1 / math.sqrt(ab)), "sqrt(alpha_bar_t)"),
    ("+ eps_hat", dict(coef=lambda a, b, ab: -b / math.sqrt(1 - ab)), "is added"),
]


@pytest.mark.parametrize(("name", "slip", "hint"), SLIPS, ids=[s[0] for s in SLIPS])
def test_step_checker_names_each_slip(name: str, slip: dict, hint: str) -> None:
    def student(eps_hat, x_t, t, schedule, noise):  # noqa: ANN001, ANN202
        if name == "noise at t = 1":  # right everywhere else, with sigma^2 = beta
            return _step(eps_hat, x_t, t, schedule, noise, sigma=lambda t, b, p: math.sqrt(b))
        return _step(eps_hat, x_t, t, schedule, noise, **slip)

    result = check_my_ddpm_step(student)
    assert not result.ok
    assert hint in result.message, result.message


def test_step_checker_names_off_by_one() -> None:
    def student(eps_hat, x_t, t, schedule, noise):  # noqa: ANN001, ANN202
        return _step(eps_hat, x_t, t, schedule, noise, at=t - 1, sigma=lambda t, b, p: math.sqrt(
            schedule.posterior_variance[t - 1].item()))  # fmt: skip

    result = check_my_ddpm_step(student)
    assert not result.ok and "off by one" in result.message, result.message


def test_step_checker_names_x0_hat_returned() -> None:
    def student(eps_hat, x_t, t, schedule, noise):  # noqa: ANN001, ANN202
        ab = schedule.alpha_bars[t].item()
        return (x_t - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)

    result = check_my_ddpm_step(student)
    assert not result.ok and "predicted x_0" in result.message


def test_step_checker_stub_crash_none_and_shape() -> None:
    def stub(eps_hat, x_t, t, schedule, noise):  # noqa: ANN001, ANN202
        raise NotImplementedError

    assert "not written yet" in check_my_ddpm_step(stub).message
    assert "None" in check_my_ddpm_step(lambda *a: None).message
    assert "ZeroDivisionError" in check_my_ddpm_step(lambda *a: 1 / 0).message
    shape = check_my_ddpm_step(lambda e, x, t, s, n: x[0])
    assert not shape.ok and "shape" in shape.message
    kind = check_my_ddpm_step(lambda e, x, t, s, n: x.tolist())
    assert not kind.ok and "torch.Tensor" in kind.message


def test_step_checker_unknown_mistake_says_how_far_off() -> None:
    result = check_my_ddpm_step(lambda e, x, t, s, n: x * 0.5)
    assert not result.ok and "differs from the library" in result.message


# ----------------------------------------------------------------------------- my_sample
def test_reference_loop_equals_library_sample_steps_on_the_same_noise() -> None:
    # The checker's noises[t] are the library loop's draws, so the two loops must agree.
    schedule = NoiseSchedule.cosine(T=20)
    model = ToyNoisePredictor(schedule.T)
    g = torch.Generator().manual_seed(1)
    x_T, labels = torch.randn(2, 1, 5, 5, generator=g), torch.tensor([1, 2])
    library = sample_steps(model, schedule, x_T, labels, sampler="ddpm",
                           generator=torch.Generator().manual_seed(5), clip_x0=False)  # fmt: skip
    *_, last = library
    g5 = torch.Generator().manual_seed(5)
    draws = torch.stack([torch.randn(x_T.shape, generator=g5) for _ in range(schedule.T)])
    noises = torch.cat([torch.zeros(1, *x_T.shape), draws.flip(0)])  # noises[t]
    torch.testing.assert_close(
        solution_my_sampling_loop(model, schedule, x_T, labels, noises), last.x_prev
    )


def test_loop_solution_passes() -> None:
    assert check_my_sampling_loop(solution_my_sampling_loop).ok


def test_loop_with_library_step_passes() -> None:
    def student(model, schedule, x_T, labels, noises):  # noqa: ANN001, ANN202
        x = x_T
        for t in range(schedule.T, 0, -1):
            x = ddpm_step(model(x, t, labels), x, t, schedule, noises[t])  # int t is fine too
        return x

    assert check_my_sampling_loop(student).ok


def _loop(ts, noise_at, use_labels=True, keep_x=True):  # noqa: ANN001, ANN202
    def student(model, schedule, x_T, labels, noises):  # noqa: ANN001, ANN202
        x = x_T
        for i, t in enumerate(ts(schedule.T)):
            eps_hat = model(x if keep_x else x_T, t, labels if use_labels else None)
            step = ddpm_step(eps_hat, x if keep_x else x_T, t, schedule, noise_at(noises, i, t))
            x = step
        return x

    return student


LOOP_SLIPS = [
    ("labels", _loop(lambda T: range(T, 0, -1), lambda n, i, t: n[t], use_labels=False), "labels"),
    ("start T-1", _loop(lambda T: range(T - 1, 0, -1), lambda n, i, t: n[t]), "t = T - 1"),
    ("stop at 2", _loop(lambda T: range(T, 1, -1), lambda n, i, t: n[t]), "stops at t = 2"),
    ("upwards", _loop(lambda T: range(1, T + 1), lambda n, i, t: n[t]), "upwards"),
    ("noise by count", _loop(lambda T: range(T, 0, -1), lambda n, i, t: n[i]), "step count"),
    ("same noise", _loop(lambda T: range(T, 0, -1), lambda n, i, t: n[-1]), "same noise"),
    (
        "x never updated",
        _loop(lambda T: range(T, 0, -1), lambda n, i, t: n[t], keep_x=False),
        "starts again from x_T",
    ),  # fmt: skip
    ("returns x_T", lambda model, schedule, x_T, labels, noises: x_T, "you returned x_T"),
]


@pytest.mark.parametrize(("name", "student", "hint"), LOOP_SLIPS, ids=[s[0] for s in LOOP_SLIPS])
def test_loop_checker_names_each_slip(name: str, student, hint: str) -> None:  # noqa: ANN001
    result = check_my_sampling_loop(student)
    assert not result.ok
    assert hint in result.message, result.message


def test_loop_checker_stub_shape_and_wrong_step() -> None:
    def stub(model, schedule, x_T, labels, noises):  # noqa: ANN001, ANN202
        raise NotImplementedError

    assert "not written yet" in check_my_sampling_loop(stub).message
    shape = check_my_sampling_loop(lambda m, s, x, y, n: x[:1])
    assert not shape.ok and "shape" in shape.message

    def bad_step(eps_hat, x_t, t, schedule, noise):  # noqa: ANN001, ANN202
        return solution_my_ddpm_step(eps_hat, x_t, t, schedule, noise) * 1.01

    result = check_my_sampling_loop(
        lambda m, s, x, y, n: solution_my_sampling_loop(m, s, x, y, n, step=bad_step)
    )
    assert not result.ok and "my_ddpm_step" in result.message


def test_toy_predictor_depends_on_t_and_label() -> None:
    model = ToyNoisePredictor(T=20)
    x = torch.randn(2, 1, 3, 3)
    base = model(x, 10, torch.tensor([1, 1]))
    assert not torch.allclose(base, model(x, 11, torch.tensor([1, 1])))
    assert not torch.allclose(base, model(x, 10, torch.tensor([2, 2])))
    assert not torch.allclose(base, model(x, 10, None))
    torch.testing.assert_close(base, model(x, torch.tensor([10, 10]), torch.tensor([1, 1])))
