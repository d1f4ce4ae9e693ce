"""DDPM, DDIM, Euler and Heun steps against the papers' identities, and the sampling loop: oracles,
models that predict eps, x0, v or a flow velocity, and classifier-free guidance."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from diffusion_edu import NoiseSchedule, q_sample, sample
from diffusion_edu.forward import q_posterior
from diffusion_edu.samplers import (
    DEFAULT_STEPS,
    check_guidance_interval,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    dpm_solver_pp_step,
    euler_step,
    guided_prediction,
    heun_step,
    model_calls,
    sample_steps,
    sampling_timesteps,
    sdedit,
    slerp,
    step_guidance,
)
from diffusion_edu.targets import TARGETS, predict_x0_from_eps, regression_target, split_prediction

S = NoiseSchedule.linear()


def _noisy(t, shape=(4, 1, 6, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    return x0, eps, q_sample(x0, t, S, eps)


@pytest.mark.parametrize("t", [2, 10, 500, 1000])
def test_ddpm_step_with_true_noise_gives_the_posterior_mean(t):
    x0, eps, x_t = _noisy(t)
    mean, var = q_posterior(x0, x_t, t, S)
    out = ddpm_step(eps, x_t, t, S, noise=torch.zeros_like(x_t))
    assert_close(out, mean)
    # ...and the noise it adds has the posterior's standard deviation.
    z = torch.randn_like(x_t)
    assert_close(ddpm_step(eps, x_t, t, S, noise=z) - out, var.sqrt() * z)


def test_ddpm_step_beta_variance_uses_sqrt_beta():
    x0, eps, x_t = _noisy(100)
    z = torch.randn_like(x_t)
    diff = ddpm_step(eps, x_t, 100, S, z, variance="beta") - ddpm_step(eps, x_t, 100, S, z)
    assert_close(diff, (S.betas[100].sqrt() - S.posterior_variance[100].sqrt()) * z)


def test_ddpm_step_adds_no_noise_at_t1_and_lands_on_x0():
    x0, eps, x_1 = _noisy(1)
    out = ddpm_step(eps, x_1, 1, S, noise=torch.randn_like(x_1))
    assert_close(out, x0)


def test_ddpm_clipping_changes_nothing_when_x0_hat_is_in_range():
    x0, eps, x_t = _noisy(300)  # x0 in [-1, 1] and the true eps: x0_hat = x0
    z = torch.randn_like(x_t)
    assert_close(ddpm_step(eps, x_t, 300, S, z, clip_x0=True), ddpm_step(eps, x_t, 300, S, z))


def test_ddpm_per_sample_t_adds_noise_only_where_t_above_1():
    x0, eps, _ = _noisy(1)
    t = torch.tensor([1, 1, 5, 5])
    x_t = q_sample(x0, t, S, eps)
    z = torch.randn_like(x_t)
    diff = ddpm_step(eps, x_t, t, S, z) - ddpm_step(eps, x_t, t, S, torch.zeros_like(z))
    assert (diff[:2] == 0).all() and (diff[2:] != 0).all()


@pytest.mark.parametrize("t, t_prev", [(1000, 0), (1000, 980), (500, 300), (50, 49), (2, 1)])
def test_ddim_with_true_eps_maps_x_t_to_x_tprev_of_the_same_x0_and_eps(t, t_prev):
    x0, eps, x_t = _noisy(t)
    out = ddim_step(eps, x_t, t, t_prev, S, eta=0.0)
    assert_close(out, q_sample(x0, t_prev, S, eps))


def test_ddim_eta0_is_deterministic_and_tprev0_returns_x0_hat():
    x0, eps, x_t = _noisy(700)
    eps_hat = eps + 0.1 * torch.randn_like(eps)  # an imperfect model
    a = ddim_step(eps_hat, x_t, 700, 200, S, eta=0.0, noise=torch.randn_like(x_t))
    b = ddim_step(eps_hat, x_t, 700, 200, S, eta=0.0, noise=torch.randn_like(x_t))
    assert_close(a, b)
    x0_hat = (x_t - S.sqrt_one_minus_alpha_bars[700] * eps_hat) / S.sqrt_alpha_bars[700]
    assert_close(ddim_step(eps_hat, x_t, 700, 0, S), x0_hat)


@pytest.mark.parametrize("t", [2, 30, 600, 1000])
def test_full_step_ddim_with_eta1_is_ddpm_with_posterior_variance(t):
    x0, eps, x_t = _noisy(t)
    eps_hat = eps + 0.3 * torch.randn_like(eps)  # holds for any eps_hat, not only the true one
    z = torch.randn_like(x_t)
    assert_close(
        ddim_step(eps_hat, x_t, t, t - 1, S, eta=1.0, noise=z), ddpm_step(eps_hat, x_t, t, S, z)
    )


def test_ddim_timesteps_are_evenly_spaced_from_T_to_0():
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 51 and ts[0] == 1000 and ts[-1] == 0
    assert all(a - b == 20 for a, b in zip(ts[:-1], ts[1:], strict=True))
    assert ddim_timesteps(10, 10) == list(range(10, -1, -1))
    odd = ddim_timesteps(1000, 7)
    assert all(a > b for a, b in zip(odd[:-1], odd[1:], strict=True))


class PointOracle:
    """The exact noise predictor when the whole data set is one image per class.

    If x_0 is always ``points[label]``, then eps = (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t) exactly.
    With labels=None, the oracle assumes class 0. Any correct sampler must land on the point.
    """

    def __init__(self, points, schedule):
        self.points, self.schedule = points, schedule
        self.calls = []

    def __call__(self, x_t, t, labels):
        self.calls.append(None if labels is None else labels.clone())
        idx = torch.zeros_like(t) if labels is None else labels
        x0 = self.points[idx]  # (B, C, H, W)
        ab = self.schedule.alpha_bars[t].to(x_t).view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


@pytest.mark.parametrize(
    "sampler, steps, eta", [("ddpm", None, 0.0), ("ddim", 20, 0.0), ("ddim", 50, 1.0)]
)
def test_sampling_with_an_oracle_lands_exactly_on_the_data(sampler, steps, eta):
    s = NoiseSchedule.cosine(T=200)
    points = torch.rand(3, 1, 5, 5) * 1.6 - 0.8
    oracle = PointOracle(points, s)
    labels = torch.tensor([2, 0, 1, 2])
    out = sample(
        oracle,
        s,
        labels=labels,
        sampler=sampler,
        steps=steps,
        eta=eta,
        seed=0,
        shape=(1, 5, 5),
        progress=False,
    )
    assert_close(out, points[labels], atol=1e-4, rtol=0)


def test_sample_trajectory_and_steps_generator():
    s = NoiseSchedule.linear(T=100)
    oracle = PointOracle(torch.zeros(1, 1, 4, 4), s)
    traj = sample(
        oracle,
        s,
        n=2,
        sampler="ddim",
        steps=10,
        seed=3,
        shape=(1, 4, 4),
        return_trajectory=True,
        progress=False,
    )
    assert traj.xs.shape == (11, 2, 1, 4, 4) and traj.x0_hats.shape == (10, 2, 1, 4, 4)
    assert traj.timesteps == ddim_timesteps(100, 10)
    assert_close(traj.xs[-1], traj.images)
    # x_T is pure noise, later x_t shrink towards the point 0.
    assert traj.xs[0].std() > 0.5 and traj.xs[-1].abs().max() < 1e-4
    steps = list(sample_steps(oracle, s, torch.randn(2, 1, 4, 4), sampler="ddim", steps=5))
    assert [st.t for st in steps] == [100, 80, 60, 40, 20]
    assert [st.t_prev for st in steps] == [80, 60, 40, 20, 0]


def test_same_seed_same_images_other_seed_other_images():
    s = NoiseSchedule.linear(T=50)
    noisy_model = lambda x, t, labels: 0.5 * x  # noqa: E731  any deterministic predictor
    a = sample(noisy_model, s, n=3, seed=7, shape=(1, 4, 4), progress=False)
    b = sample(noisy_model, s, n=3, seed=7, shape=(1, 4, 4), progress=False)
    c = sample(noisy_model, s, n=3, seed=8, shape=(1, 4, 4), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_clip_x0_false_leaves_data_outside_minus_one_one_alone():
    # 2-D points (lesson 05) live outside [-1, 1]: an oracle for the point (3, -2) must land there.
    s = NoiseSchedule.linear(T=100)
    point = torch.tensor([3.0, -2.0])

    def oracle(x_t, t, labels):
        ab = s.alpha_bars[t].to(x_t).view(-1, 1)
        return (x_t - ab.sqrt() * point) / (1 - ab).sqrt()

    out = sample(oracle, s, n=4, shape=(2,), sampler="ddim", steps=10, clip_x0=False, seed=0,
                 progress=False)  # fmt: skip
    assert_close(out, point.expand(4, 2), atol=1e-4, rtol=0)
    clipped = sample(oracle, s, n=4, shape=(2,), sampler="ddim", steps=10, seed=0, progress=False)
    assert clipped.abs().max() <= 1.0


def test_guidance_combines_conditional_and_unconditional_predictions():
    s = NoiseSchedule.linear(T=20)
    oracle = PointOracle(torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4) * 0.5]), s)
    sample(
        oracle,
        s,
        labels=[1, 1],
        sampler="ddim",
        steps=4,
        guidance=1.0,
        seed=0,
        shape=(1, 4, 4),
        progress=False,
    )
    assert all(c is not None for c in oracle.calls)  # guidance 1: conditional pass only
    oracle.calls.clear()
    sample(
        oracle,
        s,
        labels=[1, 1],
        sampler="ddim",
        steps=4,
        guidance=3.0,
        seed=0,
        shape=(1, 4, 4),
        progress=False,
    )
    assert any(c is None for c in oracle.calls)  # guidance != 1 also asks "no label"


# --------------------------------------------------------------------------- bad input
X = torch.zeros(2, 1, 4, 4)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ddpm_step(X, X, 0, S), ValueError, r"1\.\.1000"),
        (lambda: ddpm_step(X, X, 5, S, variance="learned"), ValueError, "posterior"),
        (lambda: ddpm_step(torch.zeros(2, 1, 4, 5), X, 5, S), ValueError, "eps_hat must have"),
        (lambda: ddpm_step(X, X, 5, S, noise=torch.zeros(1, 1, 4, 4)), ValueError, "noise"),
        (lambda: ddim_step(X, X, 5, 5, S), ValueError, "t_prev must be smaller than t"),
        (lambda: ddim_step(X, X, 5, -1, S), ValueError, r"t_prev must lie in 0\.\.1000"),
        (lambda: ddim_step(X, X, 5, 2, S, eta=-0.5), ValueError, "eta must be >= 0"),
        (lambda: ddim_timesteps(100, 0), ValueError, r"1\.\.T=100"),
        (lambda: ddim_timesteps(100, 101), ValueError, "steps"),
    ],
)
def test_bad_step_input_gives_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_sample_arguments_give_clear_errors():
    m = lambda x, t, labels: x  # noqa: E731
    with pytest.raises(ValueError, match="DDPM sampling takes all T=1000 steps"):
        sample(m, S, n=1, sampler="ddpm", steps=50, shape=(1, 4, 4))
    with pytest.raises(ValueError, match="sampler must be"):
        sample(m, S, n=1, sampler="rk4", shape=(1, 4, 4))
    with pytest.raises(ValueError, match="predicts 'eps': use sampler='ddim'"):
        sample(m, S, n=1, sampler="euler", shape=(1, 4, 4))
    with pytest.raises(
        ValueError, match="one of labels=..., cond=... or prompts=..., not labels and cond"
    ):
        sample(m, S, labels=[1], cond=torch.zeros(1, 3), shape=(1, 4, 4))
    with pytest.raises(ValueError, match="n=3 but 2 labels"):
        sample(m, S, n=3, labels=[1, 2], shape=(1, 4, 4))
    with pytest.raises(ValueError, match="give n >= 1"):
        sample(m, S, shape=(1, 4, 4))
    with pytest.raises(ValueError, match="guidance needs labels"):
        sample(m, S, n=2, guidance=2.0, shape=(1, 4, 4))
    with pytest.raises(ValueError, match="image shape"):
        sample(m, S, n=2)


# --------------------------------------------------------------------------- targets
class AsTarget(nn.Module):
    """Wraps an eps-model and answers with ``target`` instead: the same knowledge, said another
    way. Any sampler must turn the two into the same images."""

    def __init__(self, eps_model: nn.Module, schedule: NoiseSchedule, target: str) -> None:
        super().__init__()
        self.inner, self.schedule, self.prediction = eps_model, schedule, target
        self.null_label, self.config = eps_model.null_label, eps_model.config

    def forward(self, x_t, t, labels=None):
        eps = self.inner(x_t, t, labels)
        x0 = predict_x0_from_eps(x_t, t, eps, self.schedule)
        return regression_target(x0, eps, t, self.schedule, self.prediction)


@pytest.mark.parametrize("target", ["x0", "v"])
@pytest.mark.parametrize("sampler, steps", [("ddim", 8), ("ddpm", None)])
def test_x0_and_v_models_sample_the_same_images_as_the_eps_model(target, sampler, steps, tiny_unet):
    schedule = NoiseSchedule.cosine(T=30)
    eps_model = tiny_unet(seed=3)
    for p in eps_model.parameters():
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    kwargs = dict(labels=[0, 7, 3], sampler=sampler, steps=steps, guidance=2.0, seed=5,
                  progress=False)  # fmt: skip
    want = sample(eps_model, schedule, **kwargs)
    got = sample(AsTarget(eps_model, schedule, target), schedule, **kwargs)
    assert_close(got, want, atol=2e-4, rtol=0)


POINT = torch.tensor([0.5, -0.25])


class FlowOracle(nn.Module):
    """The exact velocity when the data is the single point POINT (T = 100): u = eps - x0."""

    prediction = "flow"

    def forward(self, x_t, t, labels=None):
        sv = (t.to(x_t) / 100).view(-1, 1)
        eps = (x_t - (1 - sv) * POINT) / sv  # the noise this x_t came from
        return eps - POINT


def test_euler_follows_a_flow_oracle_onto_the_data_in_one_step_or_many():
    """On the straight path the true velocity is constant, so Euler is exact at any step count."""
    s = NoiseSchedule.linear(T=100)
    point = POINT

    for steps in (1, 7, 100):
        out = sample(FlowOracle(), s, n=3, shape=(2,), steps=steps, seed=0, progress=False)
        assert_close(out, point.expand(3, 2), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="sampler='euler'"):
        sample(FlowOracle(), s, n=1, shape=(2,), sampler="ddim", progress=False)


def test_euler_step_is_x_plus_ds_times_velocity_and_clips_through_x0():
    x, u = torch.tensor([[0.9, 0.0]]), torch.tensor([[-2.0, 1.0]])
    assert_close(euler_step(u, x, 50, 40, 100), x + (0.4 - 0.5) * u)
    clipped = euler_step(u, x, 50, 0, 100, clip_x0=True)  # lands on x0 = x - s u, clipped
    assert_close(clipped, (x - 0.5 * u).clamp(-1, 1))
    with pytest.raises(ValueError, match="t_prev < t"):
        euler_step(u, x, 40, 40, 100)


def test_one_default_step_count_for_ddim_and_euler():
    assert sampling_timesteps("ddim", 1000) == ddim_timesteps(1000, DEFAULT_STEPS)
    assert sampling_timesteps("euler", 1000, 10) == ddim_timesteps(1000, 10)
    assert sampling_timesteps("ddim", 20) == ddim_timesteps(20, 20)  # never more than T
    assert sampling_timesteps("ddpm", 5) == [5, 4, 3, 2, 1, 0]


# --------------------------------------------------------------------------- a real model
def busy_unet(make, seed):
    model = make(seed=seed)
    for p in model.parameters():
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed + 1))
    return model.eval()


def test_sampler_is_deterministic_given_a_seed(tiny_unet):
    model = busy_unet(tiny_unet, 3)
    schedule = NoiseSchedule.linear(T=30)
    kwargs = dict(labels=[0, 7, 7], sampler="ddpm", progress=False)
    a = sample(model, schedule, seed=11, **kwargs)
    b = sample(model, schedule, seed=11, **kwargs)
    c = sample(model, schedule, seed=12, **kwargs)
    assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    d, e = (
        sample(model, schedule, seed=11, labels=[0, 7, 7], sampler="ddim", steps=5, eta=1.0,
               guidance=2.0, progress=False)
        for _ in range(2)
    )  # fmt: skip
    assert_close(d, e, rtol=0, atol=0)


def test_guidance_1_is_plain_conditional_ddim_sampling(tiny_unet):
    """Reference: DDIM (eta=0) written out with ddim_step and model(x, t, labels) directly."""
    model = busy_unet(tiny_unet, 5)
    schedule = NoiseSchedule.linear(T=50)
    labels = torch.tensor([1, 4, 9])
    got = sample(model, schedule, labels=labels, sampler="ddim", steps=10, guidance=1.0,
                 seed=21, progress=False)  # fmt: skip
    x = torch.randn((3, 1, 28, 28), generator=torch.Generator().manual_seed(21))  # x_T
    timesteps = ddim_timesteps(schedule.T, 10)
    with torch.no_grad():
        for t, t_prev in zip(timesteps[:-1], timesteps[1:], strict=True):
            eps_hat = model(x, torch.full((3,), t), labels)
            x = ddim_step(eps_hat, x, t, t_prev, schedule, eta=0.0, clip_x0=True)
    assert_close(got, x.clamp(-1, 1), rtol=1e-5, atol=1e-6)


def test_guidance_calls_the_unconditional_branch_and_mixes_as_ho_and_salimans():
    """eps = eps_uncond + w (eps_cond - eps_uncond): with eps_cond = 1, eps_uncond = 0, eps = w."""

    class Spy(nn.Module):
        null_label = 10

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, x_t, t, labels=None):
            self.seen.append(labels.clone())
            is_cond = (labels != self.null_label).float().view(-1, 1, 1, 1)
            return torch.ones_like(x_t) * is_cond  # 1 with a label, 0 without

    schedule = NoiseSchedule.linear(T=20)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([3, 5])
    for w, expect_null in ((1.0, False), (2.5, True), (0.0, True)):
        spy = Spy()
        step = next(sample_steps(spy, schedule, x_T, labels, "ddim", 2, guidance=w, clip_x0=False))
        assert any((s == 10).any() for s in spy.seen) == expect_null
        eps_used = torch.full_like(x_T, w)
        assert_close(step.x0_hat, predict_x0_from_eps(x_T, 20, eps_used, schedule))


def test_guidance_works_for_a_prompt_of_token_ids_with_its_own_null_condition():
    """cond need not be a label: a (B, L) batch of token ids, "no prompt" = all padding."""

    class TextSpy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def null_condition(self, cond):
            return torch.zeros_like(cond)

        def forward(self, x_t, t, cond=None):
            self.seen.append(cond.clone())
            has_prompt = (cond != 0).any(dim=1).float().view(-1, 1, 1, 1)
            return torch.ones_like(x_t) * has_prompt

    schedule = NoiseSchedule.linear(T=20)
    prompts = torch.tensor([[4, 9, 2, 0], [7, 0, 0, 0]])
    spy = TextSpy()
    traj = sample(
        spy,
        schedule,
        cond=prompts,
        sampler="ddim",
        steps=2,
        guidance=3.0,
        seed=0,
        shape=(1, 4, 4),
        clip_x0=False,
        return_trajectory=True,
        progress=False,
    )
    both = spy.seen[0]
    assert torch.equal(both[:2], prompts) and bool((both[2:] == 0).all())  # [cond; null] rows
    x0_hat, _ = split_prediction(
        torch.full_like(traj.xs[0], 3.0), traj.xs[0], torch.full((2,), 20), schedule, "eps"
    )
    assert_close(traj.x0_hats[0], x0_hat)  # eps = 0 + 3 * (1 - 0)
    assert set(TARGETS) == {"eps", "x0", "v", "flow"}


# --------------------------------------------------------------------------- DPM-Solver++(2M)
class GaussianOracle:
    """The exact noise predictor when every pixel of the data is N(mu, s^2), independently.

    x_t = a x0 + b eps is then Gaussian too, and E[eps | x_t] = b (x_t - a mu) / (a^2 s^2 + b^2)
    (a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t)). The probability-flow ODE keeps each
    value's z-score: the exact solution from x_t to t2 is
    a2 mu + sqrt(v2) (x_t - a mu) / sqrt(v)  with v = a^2 s^2 + b^2 (the variance of x_t).
    """

    def __init__(self, schedule, mu=0.3, s=0.5):
        self.schedule, self.mu, self.s = schedule, mu, s

    def _a_b(self, t, like):
        ab = self.schedule.alpha_bars[t].to(like).view(-1, *([1] * (like.ndim - 1)))
        return ab.sqrt(), (1 - ab).sqrt()

    def __call__(self, x_t, t, cond=None):
        a, b = self._a_b(t, x_t)
        return b * (x_t - a * self.mu) / (a * a * self.s**2 + b * b)

    def exact(self, x_t, t, t2):
        """The ODE's exact solution at t2 from x_t at t (ints)."""
        ab = self.schedule.alpha_bars
        v, v2 = (ab[t] * self.s**2 + 1 - ab[t]).sqrt(), (ab[t2] * self.s**2 + 1 - ab[t2]).sqrt()
        return ab[t2].sqrt() * self.mu + v2 * (x_t - ab[t].sqrt() * self.mu) / v


def _x0_hat(model, x_t, t, schedule):
    return predict_x0_from_eps(x_t, t, model(x_t, torch.full((x_t.shape[0],), t)), schedule)


@pytest.mark.parametrize("t, t_prev", [(1000, 0), (1000, 950), (500, 300), (50, 49), (2, 1)])
def test_first_order_dpm_solver_pp_step_is_ddim_eta0(t, t_prev):
    x0, eps, x_t = _noisy(t)
    eps_hat = eps + 0.3 * torch.randn_like(eps)  # any model, not only a perfect one
    x0_hat = predict_x0_from_eps(x_t, t, eps_hat, S)
    assert_close(
        dpm_solver_pp_step(x0_hat, x_t, t, t_prev, S), ddim_step(eps_hat, x_t, t, t_prev, S)
    )


def test_dpm_solver_pp_second_order_step_follows_algorithm_2():
    """Algorithm 2's update, written out with its own symbols from the schedule's alpha_bars."""
    t_last, t, t_prev = 800, 600, 400
    x0, eps, x_t = _noisy(t)
    x0_hat, x0_hat_last = x0 + 0.1 * eps, x0 - 0.2 * eps
    ab = S.alpha_bars
    alpha = lambda k: ab[k].sqrt()  # noqa: E731
    sigma = lambda k: (1 - ab[k]).sqrt()  # noqa: E731
    lam = lambda k: torch.log(alpha(k) / sigma(k))  # noqa: E731
    h, h_last = lam(t_prev) - lam(t), lam(t) - lam(t_last)
    r = h_last / h
    D = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_hat_last
    want = sigma(t_prev) / sigma(t) * x_t - alpha(t_prev) * (torch.exp(-h) - 1) * D
    got = dpm_solver_pp_step(x0_hat, x_t, t, t_prev, S, x0_hat_last=x0_hat_last, t_last=t_last)
    assert_close(got, want)
    # With a constant x0_hat the second-order correction vanishes: DDIM again.
    assert_close(
        dpm_solver_pp_step(x0_hat, x_t, t, t_prev, S, x0_hat, t_last),
        dpm_solver_pp_step(x0_hat, x_t, t, t_prev, S),
    )


def test_dpm_solver_pp_final_step_to_0_returns_x0_hat_even_with_a_last_x0_hat():
    x0, eps, x_t = _noisy(40)
    x0_hat, x0_hat_last = x0 + 0.1 * eps, x0 - 0.3 * eps
    got = dpm_solver_pp_step(x0_hat, x_t, 40, 0, S, x0_hat_last=x0_hat_last, t_last=80)
    assert_close(got, x0_hat)
    assert torch.isfinite(got).all()


def test_dpm_solver_pp_per_sample_timesteps_equal_one_call_per_sample():
    x0, eps, _ = _noisy(1)
    t, t_prev, t_last = torch.tensor([900, 500, 30, 10]), torch.tensor([700, 0, 20, 5]), 950
    x_t = q_sample(x0, t, S, eps)
    x0_hat, x0_hat_last = x0 + 0.1 * eps, x0 - 0.1 * eps
    batch = dpm_solver_pp_step(x0_hat, x_t, t, t_prev, S, x0_hat_last, t_last)
    for i in range(4):
        one = dpm_solver_pp_step(
            x0_hat[i : i + 1], x_t[i : i + 1], int(t[i]), int(t_prev[i]), S,
            x0_hat_last[i : i + 1], t_last,
        )  # fmt: skip
        assert_close(batch[i : i + 1], one)


def _multistep_reference(model, schedule, x, timesteps):
    """Algorithm 2 driven by hand: first step first order, then second order, last to 0."""
    x0_hat_last = t_last = None
    for t, t_prev in zip(timesteps[:-1], timesteps[1:], strict=True):
        x0_hat = _x0_hat(model, x, t, schedule)
        x = dpm_solver_pp_step(x0_hat, x, t, t_prev, schedule, x0_hat_last, t_last)
        x0_hat_last, t_last = x0_hat, t
    return x


def test_sample_steps_runs_dpm_solver_pp_as_algorithm_2():
    s = NoiseSchedule.cosine(T=1000)
    oracle = GaussianOracle(s)
    x_T = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    steps = list(sample_steps(oracle, s, x_T, sampler="dpm-solver++", steps=12, clip_x0=False))
    assert [st.t for st in steps] == ddim_timesteps(1000, 12)[:-1]
    want = _multistep_reference(oracle, s, x_T, ddim_timesteps(1000, 12))
    assert_close(steps[-1].x_prev, want)


def _schedule_linear_in_lambda(T=1280, lam_max=5.0, lam_min=-5.0):
    """A schedule whose lambda = log(alpha / sigma) falls linearly in t, so that evenly spaced
    timesteps are evenly spaced in lambda too: every step has the same h, the setting of the
    order analysis (alpha_bar_t = sigmoid(2 lambda_t))."""
    t = torch.arange(1, T + 1, dtype=torch.float64)
    alpha_bar = torch.sigmoid(2 * (lam_max - (lam_max - lam_min) * t / T))
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return NoiseSchedule(1 - alpha_bar / alpha_bar_prev)


def test_dpm_solver_pp_error_falls_quadratically_and_ddim_linearly_on_gaussian_data():
    """The library's loop against the exact ODE solution for Gaussian data, from T to t = T/10
    (on every grid below): doubling the steps divides DPM-Solver++(2M)'s error by about 4
    (order 2) and DDIM's by about 2 (order 1). Measured: 3.64, 3.93, 3.98 and 1.94, 1.97, 1.98."""
    s = _schedule_linear_in_lambda()
    oracle = GaussianOracle(s)
    x_T = torch.randn(512, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t_end = s.T // 10
    exact = oracle.exact(x_T, s.T, t_end)

    def error(sampler, n):
        run = sample_steps(oracle, s, x_T, sampler=sampler, steps=n, clip_x0=False)
        (at_t_end,) = [step.x_prev for step in run if step.t_prev == t_end]
        return (at_t_end - exact).pow(2).mean().sqrt().item()

    ns = (20, 40, 80, 160)
    errors = {sampler: [error(sampler, n) for n in ns] for sampler in ("ddim", "dpm-solver++")}
    ratios = {k: [a / b for a, b in zip(v, v[1:], strict=False)] for k, v in errors.items()}
    assert all(1.8 < r < 2.2 for r in ratios["ddim"]), ratios
    assert all(3.4 < r < 4.4 for r in ratios["dpm-solver++"]), ratios
    assert all(d < 0.2 * e for e, d in zip(*errors.values(), strict=True)), errors  # ddim, dpm


def test_dpm_solver_pp_sampling_beats_ddim_at_every_step_count_on_gaussian_data():
    """The library's own loop, all the way to t = 0, against the exact ODE solution."""
    s = NoiseSchedule.cosine(T=1000)
    oracle = GaussianOracle(s)
    x_T = torch.randn(512, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = oracle.exact(x_T, 1000, 0)

    def error(sampler, steps):
        last = list(sample_steps(oracle, s, x_T, sampler=sampler, steps=steps, clip_x0=False))[-1]
        return (last.x_prev - exact).pow(2).mean().sqrt().item()

    for steps in (10, 20, 40, 80):
        assert error("dpm-solver++", steps) < 0.5 * error("ddim", steps), steps
    assert error("dpm-solver++", 80) < 1e-3


def test_dpm_solver_pp_samples_with_guidance_deterministically(tiny_unet):
    model = busy_unet(tiny_unet, 7)
    schedule = NoiseSchedule.cosine(T=50)
    kwargs = dict(labels=[0, 3, 3], sampler="dpm-solver++", steps=6, guidance=2.0, progress=False)
    a = sample(model, schedule, seed=5, **kwargs)
    b = sample(model, schedule, seed=5, **kwargs)
    c = sample(model, schedule, seed=6, **kwargs)
    assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    # guidance mixes the two predictions before the solver sees them: a different result
    assert not torch.allclose(a, sample(model, schedule, seed=5, **{**kwargs, "guidance": 1.0}))


def test_dpm_solver_pp_with_an_oracle_lands_exactly_on_the_data():
    s = NoiseSchedule.cosine(T=200)
    points = torch.rand(3, 1, 5, 5) * 1.6 - 0.8
    labels = torch.tensor([2, 0, 1, 2])
    out = sample(PointOracle(points, s), s, labels=labels, sampler="dpm-solver++", steps=7,
                 seed=0, shape=(1, 5, 5), progress=False)  # fmt: skip
    assert_close(out, points[labels], atol=1e-4, rtol=0)


def test_dpm_solver_pp_clips_x0_hat_as_ddim_does():
    """One step from T with an x0_hat far outside [-1, 1]: clipped, both solvers agree."""
    s = NoiseSchedule.linear(T=100)
    wild = lambda x, t, labels: -5.0 * torch.ones_like(x)  # noqa: E731  implies x0_hat >> 1
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    (ddim,) = sample_steps(wild, s, x_T, sampler="ddim", steps=1)
    (dpm,) = sample_steps(wild, s, x_T, sampler="dpm-solver++", steps=1)
    assert dpm.x0_hat.max() <= 1.0
    assert_close(dpm.x_prev, ddim.x_prev)
    assert_close(dpm.x_prev, torch.ones_like(x_T))  # the clipped x0_hat itself (t_prev = 0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dpm_solver_pp_step(X, X, 5, 5, S), "t_prev must be smaller than t"),
        (lambda: dpm_solver_pp_step(X, X, 5, 7, S), "t_prev must be smaller than t"),
        (lambda: dpm_solver_pp_step(X, X, 0, 0, S), r"t must lie in 1\.\.1000"),
        (lambda: dpm_solver_pp_step(X, X, 5, 2, S, x0_hat_last=X), "both x0_hat_last and t_last"),
        (lambda: dpm_solver_pp_step(X, X, 5, 2, S, t_last=9), "both x0_hat_last and t_last"),
        (lambda: dpm_solver_pp_step(X, X, 5, 2, S, X, 5), "t_last .* must be larger than t"),
        (lambda: dpm_solver_pp_step(X, X, 5, 2, S, X, 1001), r"t_last must lie in 1\.\.1000"),
        (lambda: dpm_solver_pp_step(X[:1], X, 5, 2, S), "x0_hat must have the same shape"),
        (lambda: dpm_solver_pp_step(X, X, 5, 2, S, X[:1], 9), "x0_hat_last must have"),
        (lambda: sampling_timesteps("dpm-solver++", 100, 101), r"steps must be .* 1\.\.T=100"),
        (lambda: sampling_timesteps("dpm-solver", 100, 10), "sampler must be one of"),
    ],
)
def test_dpm_solver_pp_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dpm_solver_pp_refuses_a_flow_model():
    flow = lambda x, t, labels: x  # noqa: E731
    flow.prediction = "flow"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="sample it with sampler='euler'"):
        sample(flow, S, n=1, sampler="dpm-solver++", shape=(1, 4, 4))


# --------------------------------------------------------------------------- start part-way: SDEdit
def test_t_start_timesteps_run_from_t_start_and_keep_the_full_runs_step_size():
    assert sampling_timesteps("ddim", 1000, 5, t_start=300) == [300, 240, 180, 120, 60, 0]
    assert sampling_timesteps("ddim", 1000, t_start=300) == ddim_timesteps(1000, 15, 300)
    assert sampling_timesteps("dpm-solver++", 1000, t_start=5) == [5, 0]  # at least 1 step
    assert sampling_timesteps("ddpm", 1000, t_start=4) == [4, 3, 2, 1, 0]
    assert sampling_timesteps("ddim", 1000, 7, t_start=1000) == ddim_timesteps(1000, 7)


def test_sample_steps_from_t_start_visits_only_the_later_timesteps():
    s = NoiseSchedule.linear(T=100)
    oracle = PointOracle(torch.zeros(1, 1, 4, 4), s)
    x = torch.randn(2, 1, 4, 4)
    steps = list(sample_steps(oracle, s, x, sampler="dpm-solver++", steps=4, t_start=40))
    assert [st.t for st in steps] == [40, 30, 20, 10] and steps[-1].t_prev == 0
    assert steps[0].x_t is x


def test_sdedit_with_an_oracle_lands_on_the_data_from_any_t_start():
    """It is the same loop as sample(): an exact predictor for one point per class lands on it."""
    s = NoiseSchedule.cosine(T=200)
    points = torch.rand(2, 1, 5, 5) * 1.6 - 0.8
    oracle = PointOracle(points, s)
    guides = torch.rand(3, 1, 5, 5) * 2 - 1
    for sampler, steps in (("ddim", 6), ("dpm-solver++", 6), ("ddpm", None)):
        out = sdedit(oracle, s, guides, 120, labels=[1, 0, 1], sampler=sampler, steps=steps, seed=0)
        assert_close(out, points[[1, 0, 1]], atol=1e-4, rtol=0)


def test_sdedit_keeps_the_image_at_small_t_start_and_ignores_it_at_T():
    """Gaussian data, exact predictor: from t_start = 20 the result stays next to the guide;
    from t_start = T two very different guides give (almost) the same image."""
    s = NoiseSchedule.cosine(T=1000)
    oracle = GaussianOracle(s, mu=0.0, s=0.5)
    g = torch.Generator().manual_seed(0)
    guide = (0.5 * torch.randn(8, 1, 6, 6, generator=g)).clamp(-1, 1)
    other = -guide
    near = sdedit(oracle, s, guide, 20, steps=4, seed=1)
    far, far_other = (sdedit(oracle, s, x, 1000, steps=20, seed=1) for x in (guide, other))
    mse = lambda a, b: (a - b).pow(2).mean().item()  # noqa: E731
    assert mse(near, guide) < 0.01 * mse(guide, other)  # kept
    assert mse(far, guide) > 0.5 * 0.25  # about var(new) + var(guide): a new image
    assert mse(far, far_other) < 1e-3 * mse(guide, other)  # the guide made no difference


def test_sdedit_t_start_0_returns_the_input_and_same_seed_same_result():
    s = NoiseSchedule.linear(T=50)
    model = lambda x, t, labels: 0.5 * x  # noqa: E731  any deterministic predictor
    images = torch.rand(3, 1, 4, 4) * 2 - 1
    out = sdedit(model, s, images, 0)
    assert torch.equal(out, images) and out is not images
    traj = sdedit(model, s, images, 0, return_trajectory=True)
    assert traj.timesteps == [0] and traj.xs.shape == (1, 3, 1, 4, 4) and len(traj.x0_hats) == 0
    a, b, c = (sdedit(model, s, images, 30, seed=seed) for seed in (4, 4, 5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    traj = sdedit(model, s, images, 30, steps=3, seed=4, return_trajectory=True)
    assert traj.timesteps == [30, 20, 10, 0] and traj.xs.shape == (4, 3, 1, 4, 4)
    assert_close(traj.images, sdedit(model, s, images, 30, steps=3, seed=4))
    assert_close(traj.xs[0], q_sample(images, 30, s, torch.randn(
        images.shape, generator=torch.Generator().manual_seed(4))))  # fmt: skip


def test_sdedit_with_guidance_on_a_real_model_is_deterministic(tiny_unet):
    model = busy_unet(tiny_unet, 2)
    schedule = NoiseSchedule.cosine(T=40)
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kwargs = dict(labels=[3, 8], sampler="dpm-solver++", steps=5, guidance=2.0, seed=9)
    a, b = (sdedit(model, schedule, images, 20, **kwargs) for _ in range(2))
    assert_close(a, b, rtol=0, atol=0)
    assert a.shape == images.shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t_start=-1), r"t_start must be a whole number in 0\.\.T=50"),
        (dict(t_start=51), r"t_start must be a whole number in 0\.\.T=50"),
        (dict(t_start=2.5), "t_start must be a whole number"),
        (dict(t_start=True), "t_start must be a whole number"),
        (dict(t_start=10, steps=11), r"steps must be a whole number in 1\.\.t_start=10"),
        (dict(t_start=10, sampler="ddpm", steps=5), "DDPM sampling takes all t_start=10 steps"),
        (dict(t_start=10, sampler="rk4"), "sampler must be one of"),
        (dict(t_start=10, labels=[1, 2]), "n=3 but 2 labels"),
        (dict(t_start=10, guidance=2.0), "guidance needs labels"),
        (dict(t_start=10, images=torch.zeros(3)), r"images must be a tensor \(B, C, H, W\)"),
    ],
)
def test_sdedit_bad_input_gives_a_clear_error(kwargs, match):
    s = NoiseSchedule.linear(T=50)
    model = lambda x, t, labels: x  # noqa: E731
    args = {"images": torch.zeros(3, 1, 4, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        sdedit(model, s, **args)


# --------------------------------------------------------------------------- slerp
def test_slerp_endpoints_and_a_quarter_turn_by_hand():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    assert_close(slerp(a, b, 0.0), a)
    assert_close(slerp(a, b, 1.0), b)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # 90 degrees apart
    half = 2**-0.5
    assert_close(slerp(e1, e2, 0.5), torch.tensor([[half, half]]))  # on the unit circle
    assert_close(slerp(e1, e2, 1 / 3), torch.tensor([[3**0.5 / 2, 0.5]]))  # 30 degrees along


def test_slerp_keeps_the_norm_of_gaussian_noise_where_lerp_loses_29_percent():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 1, 28, 28, generator=g), torch.randn(64, 1, 28, 28, generator=g)
    norm = lambda x: x.flatten(1).norm(dim=1)  # noqa: E731  (B,)
    ratio_slerp = norm(slerp(a, b, 0.5)) / norm(a)
    ratio_lerp = norm(0.5 * a + 0.5 * b) / norm(a)
    assert_close(ratio_slerp, torch.ones(64), atol=0.08, rtol=0)
    assert_close(ratio_lerp, torch.full((64,), 2**-0.5), atol=0.05, rtol=0)


def test_slerp_takes_one_weight_per_item_and_falls_back_to_lerp_for_parallel_vectors():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 3, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    weights = torch.linspace(0, 1, 5)
    sweep = slerp(a.expand(5, -1, -1, -1), b.expand(5, -1, -1, -1), weights)
    for i, w in enumerate(weights.tolist()):
        assert_close(sweep[i : i + 1], slerp(a, b, w))
    assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)  # same direction: no arc to follow


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.ones(2, 3), torch.ones(2, 4), 0.5), ValueError, "b must have the same shape"),
        ((torch.ones(2, 3), torch.ones(2, 3), 1.5), ValueError, r"weight must lie in \[0, 1\]"),
        ((torch.ones(2, 3), torch.ones(2, 3), -0.1), ValueError, r"weight must lie in \[0, 1\]"),
        ((torch.ones(2, 3), torch.ones(2, 3), float("nan")), ValueError, "weight must lie"),
        ((torch.ones(2, 3), torch.ones(2, 3), torch.ones(3)), ValueError, r"shape \(2,\)"),
        ((torch.zeros(2, 3), torch.ones(2, 3), 0.5), ValueError, "non-zero vectors"),
        (([1.0], torch.ones(1), 0.5), TypeError, "must be tensors"),
    ],
)
def test_slerp_bad_input_gives_a_clear_error(args, error, match):
    with pytest.raises(error, match=match):
        slerp(*args)


# ----------------------------------------------------------------------------- a given x_T
def _noisy_unet(tiny_unet):  # noqa: ANN001, ANN202
    net = tiny_unet(seed=3).eval()
    with torch.no_grad():  # a fresh U-Net predicts exactly 0: make it depend on x_t, t, label
        torch.nn.init.normal_(net.conv_out.weight, std=0.3)
    return net


def test_sample_from_a_given_x_T_is_the_library_loop_from_that_x_T(tiny_unet, one_thread) -> None:
    model, schedule = _noisy_unet(tiny_unet), NoiseSchedule.cosine(T=40)
    x_T = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    got = sample(model, schedule, labels=[1, 2, 3], x_T=x_T, sampler="ddim", steps=5, eta=0.5,
                 guidance=2.0, seed=4, progress=False)  # fmt: skip
    *_, last = sample_steps(model, schedule, x_T, torch.tensor([1, 2, 3]), "ddim", 5, 0.5, 2.0,
                            torch.Generator().manual_seed(4))  # fmt: skip
    torch.testing.assert_close(got, last.x_prev.clamp(-1, 1))


def test_sample_from_a_given_x_T_at_eta_0_ignores_the_seed_and_at_eta_1_does_not(tiny_unet) -> None:
    model, schedule = _noisy_unet(tiny_unet), NoiseSchedule.cosine(T=40)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))

    def run(eta: float, seed: int) -> torch.Tensor:
        return sample(model, schedule, labels=[0, 1], x_T=x_T, sampler="ddim", steps=10,
                      eta=eta, seed=seed, progress=False)  # fmt: skip

    torch.testing.assert_close(run(0.0, 1), run(0.0, 2), rtol=0, atol=0)
    assert (run(1.0, 1) - run(1.0, 2)).abs().max() > 1e-3
    unlabelled = sample(model, schedule, x_T=x_T, sampler="ddim", steps=3, progress=False)
    assert unlabelled.shape == x_T.shape  # n and the image shape come from x_T


def test_sample_rejects_an_x_T_that_does_not_fit(tiny_unet) -> None:
    model, schedule = _noisy_unet(tiny_unet), NoiseSchedule.cosine(T=40)
    with pytest.raises(ValueError, match="x_T must be a tensor"):
        sample(model, schedule, x_T=torch.zeros(28))
    with pytest.raises(ValueError, match="2 starting noises for 3 images"):
        sample(model, schedule, labels=[1, 2, 3], x_T=torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"x_T's images are \(1, 28, 28\), but shape"):
        sample(model, schedule, n=2, x_T=torch.zeros(2, 1, 28, 28), shape=(1, 14, 14))


# --------------------------------------------------------------------------- guidance interval
class CallCounter:
    """A noise predictor (no null label: guidance calls it twice, with cond and with None) that
    counts its calls per timestep; guided steps get a different prediction than plain ones."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x_t, t, cond=None):  # noqa: ANN001, ANN204
        self.calls.append(int(t[0]))
        return 0.1 * x_t + (0.0 if cond is None else 0.05 * cond.view(-1, 1, 1, 1))


def test_guidance_interval_covering_every_step_is_full_guidance_exactly(tiny_unet):
    model = busy_unet(tiny_unet, 4)
    schedule = NoiseSchedule.cosine(T=40)
    for sampler, steps in (("ddim", 8), ("ddpm", None), ("dpm-solver++", 6)):
        kwargs = dict(labels=[2, 5, 5], sampler=sampler, steps=steps, eta=0.0, seed=3,
                      progress=False)  # fmt: skip
        full = sample(model, schedule, guidance=3.0, **kwargs)
        everywhere = sample(model, schedule, guidance=3.0, guidance_interval=(0, 40), **kwargs)
        plain = sample(model, schedule, guidance=1.0, **kwargs)
        assert_close(everywhere, full, rtol=0, atol=0)
        assert not torch.allclose(full, plain, atol=1e-4)  # guidance does change the digits


def test_guidance_interval_that_guides_no_visited_step_is_guidance_1_exactly(tiny_unet):
    model = busy_unet(tiny_unet, 4)
    schedule = NoiseSchedule.cosine(T=1000)
    kwargs = dict(labels=[0, 9], sampler="ddim", steps=10, seed=1, progress=False)
    plain = sample(model, schedule, guidance=1.0, **kwargs)
    # DDIM-10 visits t = 1000, 900, ..., 100: none lies in (900, 999] or (0, 99].
    for interval in ((900, 999), (0, 99)):
        got = sample(model, schedule, guidance=4.0, guidance_interval=interval, **kwargs)
        assert_close(got, plain, rtol=0, atol=0)
    # An interval with guidance 1 is allowed and changes nothing.
    assert_close(sample(model, schedule, guidance_interval=(200, 800), **kwargs), plain,
                 rtol=0, atol=0)  # fmt: skip


def test_guidance_interval_guides_t_lo_below_t_up_to_t_hi_and_saves_model_calls():
    schedule = NoiseSchedule.linear(T=1000)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 2])
    for interval, guided in (
        (None, [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]),
        ((300, 700), [700, 600, 500, 400]),  # 300 < t <= 700: 700 in, 300 out
        ((299, 700), [700, 600, 500, 400, 300]),
        ((900, 1000), [1000]),
        ((0, 1000), [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]),
    ):
        model = CallCounter()
        steps = list(sample_steps(model, schedule, x_T, labels, "ddim", 10, guidance=2.5,
                                  clip_x0=False, guidance_interval=interval))  # fmt: skip
        assert [s.t for s in steps if s.guidance == 2.5] == guided
        assert all(s.guidance == 1.0 for s in steps if s.t not in guided)
        # two calls (cond, no cond) at a guided step, one elsewhere
        assert len(model.calls) == 10 + len(guided)
        assert sorted(set(t for t in model.calls if model.calls.count(t) == 2)) == sorted(guided)
        assert [step_guidance(t, 2.5, interval) for t in range(1000, 0, -100)] == [
            2.5 if t in guided else 1.0 for t in range(1000, 0, -100)
        ]


def test_guidance_interval_outside_mixes_nothing_inside_mixes_as_full_guidance():
    """At a guided step eps = eps_uncond + w (eps_cond - eps_uncond); elsewhere eps_cond."""
    schedule = NoiseSchedule.linear(T=100)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1.0, 3.0])
    steps = list(sample_steps(CallCounter(), schedule, x_T, labels, "ddim", 4, guidance=3.0,
                              clip_x0=False, guidance_interval=(50, 100)))  # fmt: skip
    for step in steps:
        eps_cond = 0.1 * step.x_t + 0.05 * labels.view(-1, 1, 1, 1)
        eps_uncond = 0.1 * step.x_t
        w = 3.0 if 50 < step.t <= 100 else 1.0
        eps = eps_uncond + w * (eps_cond - eps_uncond)
        expected = predict_x0_from_eps(step.x_t, torch.full((2,), step.t), eps, schedule)
        assert_close(step.x0_hat, expected)
    assert [s.guidance for s in steps] == [3.0, 3.0, 1.0, 1.0]  # t = 100, 75 | 50, 25


def test_sdedit_guidance_interval_counts_in_the_full_runs_timesteps():
    schedule = NoiseSchedule.linear(T=1000)
    images = torch.zeros(2, 1, 4, 4)
    model = CallCounter()
    sdedit(model, schedule, images, 500, labels=torch.tensor([1, 2]), steps=5, guidance=2.0,
           guidance_interval=(200, 400), clip_x0=False)  # fmt: skip
    # from t_start = 500 in 5 steps: 500, 400, 300, 200, 100; guided: 400, 300
    assert model.calls == [500, 400, 400, 300, 300, 200, 100]


@pytest.mark.parametrize(
    "interval, match",
    [
        (5, "must be a pair"),
        ("ab", "must be a pair"),
        ((100,), "two timesteps, got 1 values"),
        ((1, 2, 3), "two timesteps, got 3 values"),
        ((100.5, 200), "t_lo must be a whole number"),
        ((100, True), "t_hi must be a whole number"),
        ((500, 500), r"0 <= t_lo < t_hi <= T=1000"),
        ((600, 500), r"got \(600, 500\)"),
        ((-1, 500), r"0 <= t_lo < t_hi <= T=1000"),
        ((0, 1001), r"0 <= t_lo < t_hi <= T=1000"),
    ],
)
def test_bad_guidance_interval_gives_a_clear_error(interval, match):
    model = lambda x, t, labels: x  # noqa: E731
    with pytest.raises(ValueError, match=match):
        sample(model, S, labels=[1], guidance=2.0, guidance_interval=interval, shape=(1, 4, 4))
    with pytest.raises(ValueError, match=match):  # with guidance 1 too: a mistake all the same
        sdedit(model, S, torch.zeros(1, 1, 4, 4), 10, labels=[1], guidance_interval=interval)
    with pytest.raises(ValueError, match=match):
        check_guidance_interval(interval, 1000)


def test_check_guidance_interval_accepts_a_json_list_and_returns_a_tuple():
    assert check_guidance_interval([200, 800], 1000) == (200, 800)
    assert check_guidance_interval(None, 1000) is None
    assert check_guidance_interval((0, 1000), 1000) == (0, 1000)


# --------------------------------------------------------------------------- prompts
class PromptSpy(nn.Module):
    """A text model stand-in: its "no prompt" is all padding; predicts from the token ids."""

    def null_condition(self, cond):  # noqa: ANN001, ANN201
        return torch.zeros_like(cond)

    def forward(self, x_t, t, cond=None):  # noqa: ANN001, ANN201
        return 0.1 * x_t + 0.01 * cond.float().sum(dim=1).view(-1, 1, 1, 1)


def test_prompts_are_the_same_as_cond_from_the_tokenizer():
    from diffusion_edu.text import tokenize

    schedule = NoiseSchedule.linear(T=50)
    prompts = ["a bold seven", "a thin 3 leaning left"]
    kwargs = dict(sampler="ddim", steps=5, guidance=2.0, seed=0, shape=(1, 4, 4), clip_x0=False,
                  progress=False)  # fmt: skip
    by_prompt = sample(PromptSpy(), schedule, prompts=prompts, **kwargs)
    by_cond = sample(PromptSpy(), schedule, cond=tokenize(prompts), **kwargs)
    assert by_prompt.shape == (2, 1, 4, 4)
    assert_close(by_prompt, by_cond, rtol=0, atol=0)
    other = sample(PromptSpy(), schedule, prompts=["a bold seven", "a thin 4"], **kwargs)
    assert not torch.equal(other[1], by_prompt[1])  # the prompt matters
    single = sample(PromptSpy(), schedule, prompts="a bold seven", **kwargs)  # one string: one
    assert_close(single, by_prompt[:1], rtol=0, atol=0)
    images = torch.zeros(2, 1, 4, 4)
    a = sdedit(PromptSpy(), schedule, images, 30, prompts=prompts, seed=1, clip_x0=False)
    b = sdedit(PromptSpy(), schedule, images, 30, cond=tokenize(prompts), seed=1, clip_x0=False)
    assert_close(a, b, rtol=0, atol=0)


def test_prompts_mistakes_give_clear_errors():
    from diffusion_edu.text import PromptError

    schedule = NoiseSchedule.linear(T=50)
    kwargs = dict(shape=(1, 4, 4), progress=False)
    with pytest.raises(ValueError, match="not labels and prompts"):
        sample(PromptSpy(), schedule, labels=[1], prompts=["a seven"], **kwargs)
    with pytest.raises(ValueError, match="not cond and prompts"):
        sample(PromptSpy(), schedule, cond=torch.zeros(1, 8), prompts=["a seven"], **kwargs)
    with pytest.raises(ValueError, match="n=3 but 2 prompts"):
        sample(PromptSpy(), schedule, n=3, prompts=["a seven", "a two"], **kwargs)
    with pytest.raises(PromptError, match="unknown word 'purple'"):
        sample(PromptSpy(), schedule, prompts=["a purple seven"], **kwargs)
    with pytest.raises(ValueError, match="not labels and prompts"):
        sdedit(PromptSpy(), schedule, torch.zeros(1, 1, 4, 4), 10, labels=[1], prompts="a one")


def test_guided_prediction_is_ho_and_salimans_eq_6_with_the_courses_w():
    cond, uncond = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.0])
    assert_close(guided_prediction(cond, uncond, 1.0), cond)  # w = 1: conditional
    assert_close(guided_prediction(cond, uncond, 0.0), uncond)  # w = 0: unconditional
    w_theirs = 2.0  # Ho & Salimans: (1 + w) eps_cond - w eps_uncond
    assert_close(
        guided_prediction(cond, uncond, w_theirs + 1), (1 + w_theirs) * cond - w_theirs * uncond
    )
    with pytest.raises(ValueError, match="pred_uncond must have"):
        guided_prediction(cond, torch.zeros(3), 2.0)


# ----------------------------------------------------------------------------- Heun (lesson 12)
class GaussianFlowOracle:
    """The exact velocity on the straight path when every value of the data is N(mu, s^2).

    x_u = (1 - u) x0 + u eps (u = t / T) is Gaussian with mean (1 - u) mu and standard deviation
    v(u) = sqrt((1 - u)^2 s^2 + u^2); the ODE keeps each value's z-score, so its exact solution
    from u to u2 is (1 - u2) mu + v(u2) / v(u) (x_u - (1 - u) mu), and the velocity is the
    derivative of that in u2 at u2 = u.
    """

    prediction = "flow"

    def __init__(self, T, mu=0.3, s=0.5):
        self.T, self.mu, self.s = T, mu, s

    def _v(self, u):
        return ((1 - u) ** 2 * self.s**2 + u**2) ** 0.5

    def __call__(self, x_t, t, cond=None):
        u = (t.to(x_t) / self.T).view(-1, *([1] * (x_t.ndim - 1)))
        dv = (-(1 - u) * self.s**2 + u) / self._v(u)  # d v / d u
        return -self.mu + dv / self._v(u) * (x_t - (1 - u) * self.mu)

    def exact(self, x_t, t, t2):
        u, u2 = t / self.T, t2 / self.T
        return (1 - u2) * self.mu + self._v(u2) / self._v(u) * (x_t - (1 - u) * self.mu)


def test_heun_step_without_a_second_slope_is_ddim_eta0_and_the_flow_euler_step():
    """The predictor half of Heun is Euler's method: on the diffusion path's probability-flow
    ODE in (y, rho) that is DDIM with eta = 0 (DDIM paper, Sec. 4.3); on the straight path it
    is the flow Euler step."""
    for t, t_prev in [(1000, 0), (1000, 950), (500, 300), (2, 1)]:
        x0, eps, x_t = _noisy(t)
        eps_hat = eps + 0.3 * torch.randn_like(eps)
        x0_hat = predict_x0_from_eps(x_t, t, eps_hat, S)  # the slope in rho: dy/drho = x0_hat
        got = heun_step(x0_hat, None, x_t, t, t_prev, S, flow=False)
        assert_close(got, ddim_step(eps_hat, x_t, t, t_prev, S), atol=1e-5, rtol=1e-5)
        u = torch.randn_like(x_t)
        assert_close(heun_step(u, None, x_t, t, t_prev, S, flow=True),
                     euler_step(u, x_t, t, t_prev, S.T))  # fmt: skip
    # the corrector steps along the mean of the two slopes
    x0, eps, x_t = _noisy(400)
    a, b = torch.randn_like(x_t), torch.randn_like(x_t)
    assert_close(heun_step(a, b, x_t, 400, 200, S, flow=True),
                 heun_step((a + b) / 2, None, x_t, 400, 200, S, flow=True))  # fmt: skip


def test_heun_error_falls_quadratically_and_euler_linearly_on_both_paths():
    """The library's loop against exact ODE solutions for Gaussian data, from T to T/10:
    doubling the steps divides Heun's error by about 4 (second order) and Euler's (DDIM's on
    the diffusion path) by about 2, on the probability-flow ODE and on the straight path.
    Measured on the diffusion path: Heun 4.28, 4.13, 4.06; DDIM 1.94, 1.97, 1.98."""
    s = _schedule_linear_in_lambda()
    x_T = torch.randn(512, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t_end = s.T // 10
    ns = (20, 40, 80, 160)
    for oracle, euler in ((GaussianOracle(s), "ddim"), (GaussianFlowOracle(s.T), "euler")):
        exact = oracle.exact(x_T, s.T, t_end)

        def error(sampler, n, oracle=oracle, exact=exact):
            run = sample_steps(oracle, s, x_T, sampler=sampler, steps=n, clip_x0=False)
            (at_t_end,) = [step.x_prev for step in run if step.t_prev == t_end]
            return (at_t_end - exact).pow(2).mean().sqrt().item()

        errors = {k: [error(k, n) for n in ns] for k in (euler, "heun")}
        ratios = {k: [a / b for a, b in zip(v, v[1:], strict=False)] for k, v in errors.items()}
        assert all(1.7 < r < 2.3 for r in ratios[euler]), ratios
        assert all(3.3 < r < 4.5 for r in ratios["heun"]), ratios
        # at (about) equal model calls, N Heun steps (2N - 1 calls) against 2N Euler steps
        assert all(h < 0.7 * e for h, e in zip(errors["heun"], errors[euler][1:], strict=False)), (
            errors
        )


def test_heun_calls_the_model_twice_per_step_but_not_at_t_0_and_guides_both_calls():
    calls = []

    class Counting(nn.Module):
        prediction = "flow"
        null_label = 10

        def forward(self, x_t, t, labels=None):
            calls.append((x_t.shape[0], int(t[0])))
            return torch.zeros_like(x_t)

    s = NoiseSchedule.linear(T=100)
    sample(Counting(), s, labels=[1, 2], shape=(2,), sampler="heun", steps=4, guidance=2.0,
           progress=False)  # fmt: skip
    assert len(calls) == 2 * 4 - 1  # 4 Euler predictions + 3 corrections (none at t = 0)
    assert all(n == 4 for n, _ in calls)  # every call guided: [conditional; unconditional]
    assert sorted({t for _, t in calls}, reverse=True) == [100, 75, 50, 25]


def test_heun_with_an_oracle_lands_on_the_data_and_refuses_bad_steps():
    s = NoiseSchedule.linear(T=100)
    point = POINT

    out = sample(FlowOracle(), s, n=3, shape=(2,), sampler="heun", steps=5, seed=0,
                 progress=False)  # fmt: skip
    assert_close(out, point.expand(3, 2), atol=1e-5, rtol=0)
    u = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="t_prev < t"):
        heun_step(u, None, u, 40, 40, s, flow=True)
    with pytest.raises(ValueError, match="shape"):
        heun_step(u, torch.zeros(1, 3), u, 40, 20, s, flow=True)


def test_model_calls_counts_guided_steps_twice_and_heuns_corrections():
    """model_calls against the calls sample() really makes (a counting model)."""
    calls = []

    class Counting(nn.Module):
        null_label = 10

        def forward(self, x_t, t, labels=None):
            calls.append(x_t.shape[0])  # 2 rows per label when guided: [cond; uncond]
            return torch.zeros_like(x_t)

    s = NoiseSchedule.linear(T=100)
    for sampler, steps, w, interval in [("ddim", 10, 2.0, None), ("ddim", 10, 2.0, (30, 70)),
                                        ("heun", 4, 2.0, None), ("heun", 5, 1.0, None),
                                        ("ddpm", None, 1.0, None)]:  # fmt: skip
        calls.clear()
        sample(Counting(), s, labels=[1], shape=(2,), sampler=sampler, steps=steps, guidance=w,
               guidance_interval=interval, progress=False)  # fmt: skip
        assert model_calls(sampler, 100, steps, w, interval) == sum(calls), (sampler, steps)
    assert model_calls("heun", 100, 4, 2.0) == 14 and model_calls("heun", 100, 5) == 9


class Constant(nn.Module):
    """Predicts ``value`` with a label and ``value_null`` without (label 10 = no label)."""

    null_label = 10

    def __init__(self, value: float, value_null: float) -> None:
        super().__init__()
        self.value, self.value_null = value, value_null
        self.inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x_t, t, labels=None):  # noqa: ANN001, ANN201
        self.inputs.append((x_t.clone(), t.clone(), labels.clone()))
        has_label = (labels != self.null_label).float().view(-1, 1, 1, 1)
        return torch.ones_like(x_t) * (self.value_null + (self.value - self.value_null) * has_label)


@pytest.mark.parametrize("autoguidance", [0.0, 2.0, 3.5])
@pytest.mark.parametrize("guidance", [1.0, 1.5])
def test_autoguidance_mixes_every_pass_as_karras_et_al_and_guidance_mixes_the_results(
    autoguidance, guidance
):
    """D = D0 + w_a (D1 - D0) for the conditional and the unconditional pass (Karras et al.
    2024); classifier-free guidance then mixes those: eps = U + w (C - U) (Ho & Salimans)."""
    good, bad = Constant(1.0, 0.2), Constant(0.4, 0.1)
    schedule = NoiseSchedule.linear(T=20)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    step = next(sample_steps(good, schedule, x_T, torch.tensor([3, 5]), "ddim", 2,
                             guidance=guidance, clip_x0=False, guide_model=bad,
                             autoguidance=autoguidance))  # fmt: skip
    cond = 0.4 + autoguidance * (1.0 - 0.4)
    uncond = 0.1 + autoguidance * (0.2 - 0.1)
    eps = uncond + guidance * (cond - uncond)
    expected = predict_x0_from_eps(x_T, 20, torch.full_like(x_T, eps), schedule)
    assert_close(step.x0_hat, expected)
    # The guide saw exactly what the model saw: the same x_t, t and labels (nulls included).
    assert len(bad.inputs) == len(good.inputs) == 1
    for seen_by_guide, seen_by_model in zip(bad.inputs[0], good.inputs[0], strict=True):
        assert torch.equal(seen_by_guide, seen_by_model)


def test_autoguidance_1_is_the_model_alone_and_never_calls_the_guide(tiny_unet):
    model, guide = busy_unet(tiny_unet, 5), busy_unet(tiny_unet, 6)
    schedule = NoiseSchedule.cosine(T=40)
    kwargs = dict(labels=[1, 8], sampler="ddim", steps=6, eta=1.0, guidance=2.0, seed=4,
                  progress=False)  # fmt: skip
    plain = sample(model, schedule, **kwargs)
    calls = []
    guide.register_forward_hook(lambda *args: calls.append(1))
    assert_close(sample(model, schedule, guide_model=guide, autoguidance=1.0, **kwargs), plain,
                 rtol=0, atol=0)  # fmt: skip
    assert calls == []
    guided = sample(model, schedule, guide_model=guide, autoguidance=2.0, **kwargs)
    assert calls and not torch.allclose(guided, plain, atol=1e-4)
    # Guiding by the bad model's direction, scaled to 0, gives the guide's own digits.
    assert_close(sample(model, schedule, guide_model=guide, autoguidance=0.0, **kwargs),
                 sample(guide, schedule, **kwargs), rtol=1e-5, atol=1e-5)  # fmt: skip


def test_autoguidance_calls_the_guide_once_for_every_model_call_even_in_heun_and_sdedit(
    tiny_unet,
):
    model, guide = busy_unet(tiny_unet, 7), busy_unet(tiny_unet, 8)
    counts = {"model": 0, "guide": 0}
    model.register_forward_hook(lambda *a: counts.__setitem__("model", counts["model"] + 1))
    guide.register_forward_hook(lambda *a: counts.__setitem__("guide", counts["guide"] + 1))
    schedule = NoiseSchedule.cosine(T=100)
    sample(model, schedule, labels=[0, 3], sampler="heun", steps=4, guidance=1.5,
           guidance_interval=(40, 80), guide_model=guide, autoguidance=2.0,
           progress=False)  # fmt: skip
    assert counts["model"] == counts["guide"] == 7  # Heun-4: 4 + 3 passes (batched with nulls)
    images = torch.zeros(2, 1, 28, 28)
    a, b = (
        sdedit(model, schedule, images, 60, labels=[2, 2], steps=3, seed=1, guide_model=guide,
               autoguidance=2.0)
        for _ in range(2)
    )  # fmt: skip
    assert counts["model"] == counts["guide"] == 7 + 6
    assert_close(a, b, rtol=0, atol=0)


def test_autoguidance_leaves_a_guide_in_training_mode_as_it_found_it(tiny_unet):
    model, guide = busy_unet(tiny_unet, 1), tiny_unet(seed=2).train()
    modes = []
    guide.register_forward_hook(lambda module, *a: modes.append(module.training))
    sample(model, NoiseSchedule.linear(T=10), labels=[4], sampler="ddim", steps=2,
           guide_model=guide, autoguidance=2.0, progress=False)  # fmt: skip
    assert modes == [False, False] and guide.training


def test_autoguidance_bad_input_gives_clear_errors(tiny_unet):
    model = busy_unet(tiny_unet, 1)
    schedule = NoiseSchedule.linear(T=10)
    kwargs = dict(labels=[4], sampler="ddim", steps=2, progress=False)
    cases = [
        (dict(autoguidance=2.0), "needs guide_model"),
        (dict(guide_model=model, autoguidance=2.0), "is the model itself"),
        (dict(guide_model=tiny_unet(prediction="v"), autoguidance=2.0), "predicts 'v'"),
        (dict(guide_model=tiny_unet(image_size=16), autoguidance=2.0), "shape"),
        (dict(guide_model=tiny_unet(num_classes=None), autoguidance=2.0), "is unconditional"),
        (dict(guide_model=tiny_unet(num_classes=5), autoguidance=2.0), "knows 5"),
        (dict(guide_model=tiny_unet(seed=3), autoguidance="2"), "must be a number"),
        (dict(guide_model=tiny_unet(seed=3), autoguidance=float("nan")), "finite"),
    ]
    for extra, match in cases:
        with pytest.raises(ValueError, match=match):
            sample(model, schedule, **kwargs, **extra)
    with pytest.raises(ValueError, match="needs guide_model"):
        sdedit(model, schedule, torch.zeros(1, 1, 28, 28), 5, labels=[4], autoguidance=1.5)
    with pytest.raises(ValueError, match="needs guide_model"):
        next(sample_steps(model, schedule, torch.zeros(1, 1, 28, 28), None, "ddim", 2,
                          autoguidance=3.0))  # fmt: skip
    with pytest.raises(ValueError, match="guide_model is on meta but the sampling runs on cpu"):
        sample(model, schedule, **kwargs, guide_model=tiny_unet(seed=3).to("meta"),
               autoguidance=2.0)  # fmt: skip
