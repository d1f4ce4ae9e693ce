"""The continuous-time view against its closed forms: the VP-SDE's marginals are DDPM's, the
Euler-Maruyama forward run matches them in mean and variance, Langevin dynamics settles on the
stationary law of its discretisation, the reverse SDE and the probability-flow ODE carry noise
onto Gaussian data, and a flow model's paths are straight."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from diffusion_edu import NoiseSchedule, sample
from diffusion_edu.sde import (
    VPSDE,
    annealed_langevin,
    euler_maruyama,
    langevin_dynamics,
    model_score,
    path_straightness,
    probability_flow_step,
    reverse_sde_step,
    solve_reverse,
)

LINEAR = NoiseSchedule.linear()


class GaussianEps(nn.Module):
    """The exact eps predictor when every value of the data is N(mu, s^2): E[eps | x_t]."""

    def __init__(self, schedule, mu=0.3, s=0.5):
        super().__init__()
        self.schedule, self.mu, self.s = schedule, mu, s

    def forward(self, x_t, t, cond=None):
        ab = self.schedule.alpha_bars[t].to(x_t).view(-1, *([1] * (x_t.ndim - 1)))
        a, b = ab.sqrt(), (1 - ab).sqrt()
        return b * (x_t - a * self.mu) / (a * a * self.s**2 + b * b)


@pytest.mark.parametrize("schedule", [LINEAR, NoiseSchedule.cosine()], ids=["linear", "cosine"])
def test_vp_sde_marginals_are_ddpms_closed_form_at_every_step(schedule):
    sde = VPSDE(schedule)
    for t in (1, 7, 250, 500, 999, 1000):
        m, s = sde.marginal(t / schedule.T)
        assert m == pytest.approx(schedule.sqrt_alpha_bars[t].item(), rel=1e-9, abs=1e-12)
        assert s == pytest.approx(schedule.sqrt_one_minus_alpha_bars[t].item(), rel=1e-9)
    assert sde.marginal(0.0) == (1.0, 0.0)


def test_linear_schedule_gives_song_et_als_beta_min_and_max():
    sde = VPSDE(LINEAR)
    assert sde.beta(1e-6).item() == pytest.approx(0.1, rel=1e-3)  # -1000 log(1 - 1e-4)
    assert sde.beta(1.0).item() == pytest.approx(20.2, rel=1e-2)  # -1000 log(1 - 0.02)


@pytest.mark.parametrize("t", [100, 400, 1000])
def test_euler_maruyama_matches_the_closed_form_in_mean_and_variance(t):
    """Iterating the SDE's Euler-Maruyama step from a fixed x_0 to tau = t / T gives the mean
    sqrt(alpha_bar_t) x_0 and the variance 1 - alpha_bar_t of Eq. 4 (20,000 samples)."""
    x0 = torch.full((20_000, 1), 1.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    xt = euler_maruyama(VPSDE(LINEAR), x0, steps=t, tau_end=t / 1000, generator=g)
    mean_want = LINEAR.sqrt_alpha_bars[t].item() * 1.5
    var_want = 1 - LINEAR.alpha_bars[t].item()
    assert xt.mean().item() == pytest.approx(mean_want, abs=4 * math.sqrt(var_want / 20_000) + 0.01)
    assert xt.var().item() == pytest.approx(var_want, rel=0.04)


def test_euler_maruyama_step_error_shrinks_with_the_step_and_one_step_is_ddpms_to_order_beta2():
    """The EM mean factor prod (1 - beta' dtau / 2) approaches sqrt(alpha_bar) as the steps
    shrink; with dtau = 1/T one step is DDPM's step up to O(beta^2)."""
    sde = VPSDE(LINEAR)
    x0 = torch.ones(1, 1, dtype=torch.float64)
    zero = torch.Generator().manual_seed(0)
    errors = []
    for steps in (10, 100, 1000):  # the mean of the chain: run with the noise switched off

        class NoNoise(VPSDE):
            def diffusion(self, tau):
                return 0.0

        mean = euler_maruyama(NoNoise(LINEAR), x0, steps, generator=zero)
        errors.append(abs(mean.item() - LINEAR.sqrt_alpha_bars[-1].item()))
    assert errors[0] > errors[1] > errors[2]
    beta = LINEAR.betas[1000].item()
    em = 1 - 0.5 * sde.beta(1.0).item() / 1000  # one EM step's mean factor
    assert abs(em - math.sqrt(1 - beta)) < beta**2


def test_langevin_settles_on_the_stationary_law_of_its_discretisation():
    """For p = N(mu, s^2) the Langevin chain is linear, with stationary variance
    s^2 / (1 - eps / (4 s^2)), reached from any start (here far away, at 5)."""
    mu, s, eps = 0.3, 0.5, 0.05
    x = torch.full((20_000, 1), 5.0, dtype=torch.float64)
    out = langevin_dynamics(lambda x: -(x - mu) / s**2, x, eps, 400,
                            torch.Generator().manual_seed(1))  # fmt: skip
    assert out.mean().item() == pytest.approx(mu, abs=0.01)
    assert out.var().item() == pytest.approx(s**2 / (1 - eps / (4 * s**2)), rel=0.03)
    path = langevin_dynamics(lambda x: -x, x[:3], 0.1, 5, keep_path=True)
    assert path.shape == (6, 3, 1) and torch.equal(path[0], x[:3])


def test_annealed_langevin_with_the_exact_score_samples_gaussian_data():
    model = GaussianEps(LINEAR)
    x = torch.randn(20_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    step = 0.2 * (1 - LINEAR.alpha_bars[10].item())  # Song & Ermon: eps / sigma_L^2 = 0.2
    levels = [800, 600, 400, 300, 200, 150, 100, 70, 50, 30, 20, 10]  # about geometric
    out = annealed_langevin(model, LINEAR, x, levels, steps_per_level=100, step_size=step,
                            generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert out.mean().item() == pytest.approx(0.3, abs=0.02)
    assert out.std().item() == pytest.approx(0.5, rel=0.05)


def test_model_score_is_minus_eps_over_sigma():
    model = GaussianEps(LINEAR)
    x = torch.randn(5, 2, dtype=torch.float64)
    t = torch.full((5,), 300)
    want = -model(x, t) / LINEAR.sqrt_one_minus_alpha_bars[300]
    assert_close(model_score(model, LINEAR, 300)(x), want)


@pytest.mark.parametrize("ode", [True, False], ids=["probability-flow ODE", "reverse SDE"])
def test_reverse_sde_and_ode_carry_noise_onto_gaussian_data(ode):
    model = GaussianEps(LINEAR)
    x_T = torch.randn(20_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    path = solve_reverse(model, LINEAR, x_T, steps=500, ode=ode,
                         generator=torch.Generator().manual_seed(5))  # fmt: skip
    assert path.shape == (501, 20_000, 1) and torch.equal(path[0], x_T)
    assert path[-1].mean().item() == pytest.approx(0.3, abs=0.01)
    assert path[-1].std().item() == pytest.approx(0.5, rel=0.03)


def test_probability_flow_euler_converges_at_first_order_to_the_exact_map():
    """Euler steps of the probability-flow ODE with the exact score of every p_tau (Gaussian
    data, the VP-SDE's marginals) approach the exact map, which keeps each value's z-score:
    the error halves when the steps double (measured 0.00245, 0.00122, 0.00061)."""
    sde, mu, s = VPSDE(LINEAR), 0.3, 0.5
    x_T = torch.linspace(-2, 2, 9, dtype=torch.float64).view(-1, 1)

    def law(tau):  # mean and standard deviation of p_tau
        m, sd = sde.marginal(tau)
        return m * mu, math.sqrt(m * m * s * s + sd * sd)

    (m1, v1), (m0, v0) = law(1.0), law(0.0)
    exact = m0 + v0 * (x_T - m1) / v1
    errors = []
    for n in (1000, 2000, 4000):
        x = x_T
        for i in range(n, 0, -1):
            m, v = law(i / n)
            x = probability_flow_step(-(x - m) / v**2, x, i / n, 1 / n, sde)
        errors.append((x - exact).abs().max().item())
    ratios = [a / b for a, b in zip(errors, errors[1:], strict=False)]
    assert all(1.9 < r < 2.1 for r in ratios), (errors, ratios)


def test_the_ode_solved_three_ways_lands_on_the_same_images():
    """Song et al.'s Euler steps in tau, DDIM and Heun (the library's samplers) are three
    discretisations of one probability-flow ODE: from the same noise they agree with the
    exact map and with each other."""
    model = GaussianEps(LINEAR)
    x_T = torch.randn(512, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    ab = LINEAR.alpha_bars
    v1, v0 = (ab[-1] * 0.25 + 1 - ab[-1]).sqrt(), 0.5
    exact = 0.3 + v0 * (x_T - ab[-1].sqrt() * 0.3) / v1
    kw = dict(x_T=x_T, clip_x0=False, progress=False)
    ends = {
        "euler in tau": solve_reverse(model, LINEAR, x_T, steps=1000, ode=True)[-1],
        "ddim": sample(model, LINEAR, sampler="ddim", steps=1000, **kw),
        "heun": sample(model, LINEAR, sampler="heun", steps=500, **kw),
    }
    for name, end in ends.items():
        assert (end - exact).abs().max().item() < 0.006, name


def test_one_step_formulas_written_out():
    sde = VPSDE(LINEAR)
    x, s, z = torch.tensor([[1.0]]), torch.tensor([[-2.0]]), torch.tensor([[0.5]])
    beta = sde.beta(0.5).item()
    assert_close(probability_flow_step(s, x, 0.5, 0.01, sde),
                 x - (-0.5 * beta * x - 0.5 * beta * s) * 0.01)  # fmt: skip
    assert_close(reverse_sde_step(s, x, 0.5, 0.01, sde, z),
                 x - (-0.5 * beta * x - beta * s) * 0.01 + math.sqrt(beta * 0.01) * z)  # fmt: skip


def test_a_flow_oracles_paths_are_straight_and_a_diffusion_oracles_are_not():
    """For a single data point the flow-matching path is exactly the straight line from the
    noise to the point (Lipman et al. 2023, Sec. 4.1), so Euler's path is straight at any
    step count; DDIM on the diffusion path curves."""
    point = torch.tensor([0.5, -0.25])
    s = NoiseSchedule.cosine(T=100)  # alpha_bar_T ~ 0: x_T is the noise itself

    class FlowOracle(nn.Module):
        prediction = "flow"

        def forward(self, x_t, t, labels=None):
            u = (t.to(x_t) / 100).view(-1, 1)
            return (x_t - (1 - u) * point) / u - point

    class EpsOracle(nn.Module):
        def forward(self, x_t, t, labels=None):
            ab = s.alpha_bars[t].to(x_t).view(-1, 1)
            return (x_t - ab.sqrt() * point) / (1 - ab).sqrt()

    kw = dict(n=64, shape=(2,), steps=20, seed=0, clip_x0=False, progress=False,
              return_trajectory=True)  # fmt: skip
    flow = sample(FlowOracle(), s, **kw).xs
    assert_close(path_straightness(flow), torch.ones(64), atol=1e-5, rtol=0)
    # DDIM's path from noise e is x_t = a_t point + b_t e with a^2 + b^2 = 1: a quarter
    # ellipse, unless e is parallel to the point. From e perpendicular to it, twice as long:
    # chord / arc = 1.25 / 1.354 = 0.923 (the arc from Ramanujan's perimeter formula).
    e = 2 * torch.tensor([[0.25, 0.5]])
    ddim = sample(EpsOracle(), s, sampler="ddim", **{**kw, "n": 1, "x_T": e}).xs
    assert path_straightness(ddim).item() == pytest.approx(0.923, abs=0.005)


def test_bad_input_gives_clear_errors():
    sde = VPSDE(LINEAR)
    with pytest.raises(ValueError, match=r"tau must lie in \[0, 1\]"):
        sde.beta(1.5)
    with pytest.raises(ValueError, match="steps must be a whole number"):
        euler_maruyama(sde, torch.zeros(2, 1), steps=0)
    with pytest.raises(ValueError, match="tau_end"):
        euler_maruyama(sde, torch.zeros(2, 1), steps=3, tau_end=0.0)
    with pytest.raises(ValueError, match="step_size must be a number > 0"):
        langevin_dynamics(lambda x: x, torch.zeros(2, 1), -0.1, 3)
    with pytest.raises(ValueError, match="strictly decreasing"):
        annealed_langevin(GaussianEps(LINEAR), LINEAR, torch.zeros(2, 1), [10, 20], 3, 0.1)
    with pytest.raises(ValueError, match="path must be a tensor"):
        path_straightness(torch.zeros(1, 3, 2))
