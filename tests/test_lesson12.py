"""Lesson 12's self-checking exercises (diffusion_edu.exercises.lesson12): the checkers pass the
solutions and the library's own steps, name each usual slip, and turn a stub or a crash into a
friendly verdict. (Its pictures and widget: tests/test_viz_sde_viz.py; the maths:
tests/test_sde.py and the Heun tests in tests/test_samplers.py.)"""

from __future__ import annotations

import math

import torch

from diffusion_edu import NoiseSchedule
from diffusion_edu.exercises.lesson12 import (
    check_my_euler_maruyama_step,
    check_my_flow_target,
    check_my_ode_euler_step,
    solution_my_euler_maruyama_step,
    solution_my_flow_target,
    solution_my_ode_euler_step,
    verify_steps_prediction,
)
from diffusion_edu.samplers import ddim_step, heun_step
from diffusion_edu.sde import VPSDE, euler_maruyama
from diffusion_edu.targets import predict_x0_from_eps


def test_the_solutions_pass_and_agree_with_the_library() -> None:
    assert check_my_euler_maruyama_step(solution_my_euler_maruyama_step).ok
    assert check_my_ode_euler_step(solution_my_ode_euler_step).ok
    assert check_my_flow_target(solution_my_flow_target).ok
    # the library's own pieces pass too: heun_step's predictor is the ODE's Euler step
    S = NoiseSchedule.linear()

    def library_ode_step(x, eps, ab, ab_prev):  # noqa: ANN001, ANN202
        t = int((S.alpha_bars - ab).abs().argmin())
        t_prev = int((S.alpha_bars - ab_prev).abs().argmin())
        x0_hat = predict_x0_from_eps(x, t, eps, S)  # heun_step's slope in rho is x0_hat
        return heun_step(x0_hat, None, x, t, t_prev, S, flow=False)

    assert check_my_ode_euler_step(library_ode_step).ok


def test_the_em_solution_is_one_step_of_the_librarys_euler_maruyama() -> None:
    sde = VPSDE(NoiseSchedule.linear())
    x = torch.randn(4, 2, dtype=torch.float64)
    got = euler_maruyama(sde, x, steps=1, tau_end=0.25, generator=torch.Generator().manual_seed(3))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    want = solution_my_euler_maruyama_step(x, sde.beta(0.25).item(), 0.25, z)
    torch.testing.assert_close(got, want)


def test_the_ode_solution_is_ddim() -> None:
    S = NoiseSchedule.cosine()
    x, eps = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    got = solution_my_ode_euler_step(x, eps, S.alpha_bars[700].item(), S.alpha_bars[650].item())
    torch.testing.assert_close(got, ddim_step(eps, x, 700, 650, S))


def test_each_usual_slip_gets_its_hint() -> None:
    em = {
        "its 1/2": lambda x, b, d, z: x - b * x * d + math.sqrt(b * d) * z,
        "standard deviation sqrt(dtau)": (
            lambda x, b, d, z: x - 0.5 * b * x * d + math.sqrt(b) * d * z
        ),
        "missing sqrt(dtau)": lambda x, b, d, z: x - 0.5 * b * x * d + math.sqrt(b) * z,
        "wrong sign": lambda x, b, d, z: x + 0.5 * b * x * d + math.sqrt(b * d) * z,
    }  # fmt: skip
    for words, fn in em.items():
        verdict = check_my_euler_maruyama_step(fn)
        assert not verdict.ok and words in verdict.message, (words, verdict.message)

    def x_bar_only(x, eps, ab, ab_prev):  # noqa: ANN001, ANN202
        return solution_my_ode_euler_step(x, eps, ab, ab_prev) / math.sqrt(ab_prev)

    def plain_sigma(x, eps, ab, ab_prev):  # noqa: ANN001, ANN202
        step = (math.sqrt(1 - ab_prev) - math.sqrt(1 - ab)) * eps
        return math.sqrt(ab_prev) * (x / math.sqrt(ab) + step)

    for words, fn in {"multiply by sqrt(alpha_bar_prev)": x_bar_only,
                      "not sqrt(1 - alpha_bar)": plain_sigma}.items():  # fmt: skip
        verdict = check_my_ode_euler_step(fn)
        assert not verdict.ok and words in verdict.message, (words, verdict.message)

    def papers_direction(x0, noise, t, T):  # noqa: ANN001, ANN202
        x_t, u = solution_my_flow_target(x0, noise, t, T)
        return x_t, -u

    def diffusion_path(x0, noise, t, T):  # noqa: ANN001, ANN202
        s = t / T
        return math.sqrt(1 - s) * x0 + math.sqrt(s) * noise, noise - x0

    for words, fn in {"the papers' way": papers_direction,
                      "diffusion path": diffusion_path}.items():  # fmt: skip
        verdict = check_my_flow_target(fn)
        assert not verdict.ok and words in verdict.message, (words, verdict.message)


def test_stubs_crashes_and_wrong_returns_get_friendly_verdicts() -> None:
    def stub(*args):  # noqa: ANN002, ANN202
        raise NotImplementedError

    for check in (check_my_euler_maruyama_step, check_my_ode_euler_step, check_my_flow_target):
        assert "not written yet" in check(stub).message
        assert "raised ZeroDivisionError" in check(lambda *a: 1 / 0).message
    assert "return two tensors" in check_my_flow_target(lambda *a: torch.zeros(3)).message


def test_steps_prediction_passes_within_half_and_says_why() -> None:
    assert verify_steps_prediction(12, 10).ok
    verdict = verify_steps_prediction(50, 10)
    assert not verdict.ok and "too high" in verdict.message and "bend" in verdict.message
    assert "write your prediction" in verify_steps_prediction(..., 10).message
