"""The reverse process: one DDPM step, one DDIM step, one Euler step, and a sampling loop.

A sampler needs a trained network: any callable ``model(x_t, t, cond) -> prediction``. The
samplers never import a concrete model, so a tiny MLP, the U-Net or a DiT all work. What the
network predicts (``model.prediction``: the noise eps by default, or x_0, v, or a flow
velocity) is turned into the pair (x0_hat, eps_hat) by
:func:`diffusion_edu.targets.split_prediction`, and the steps below use that pair.

Notation (code name -> paper symbol), shared by the steps:

=================  ======================================================  ===============
code               meaning                                                 paper
=================  ======================================================  ===============
``x_t``            the current noisy sample                                x_t
``eps_hat``        the model's estimate of the noise in x_t                epsilon_theta(x_t, t)
``x0_hat``         the clean image that eps_hat implies                    "predicted x_0"
``alpha_bar_t``    ``schedule.alpha_bars[t]``                              alpha_bar_t
``sigma``          standard deviation of the fresh noise added             sigma_t
=================  ======================================================  ===============

Which sampler for which model: ``"ddpm"`` and ``"ddim"`` for models on the diffusion path
(eps, x0, v); ``"euler"`` for flow models, which live on the straight path of
:mod:`diffusion_edu.targets`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from diffusion_edu.device import cpu_threads, threads_for
from diffusion_edu.forward import as_timesteps, check_same_shape, coef, q_posterior
from diffusion_edu.models.common import null_condition
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.targets import (
    predict_eps_from_x0,
    predict_x0_from_eps,
    prediction_of,
    split_prediction,
)

__all__ = [
    "SAMPLERS",
    "DEFAULT_STEPS",
    "ddpm_step",
    "ddim_step",
    "euler_step",
    "ddim_timesteps",
    "sampling_timesteps",
    "plan_sampling",
    "sample",
    "sample_steps",
    "SampleStep",
    "Trajectory",
]

NoisePredictor = Callable[..., torch.Tensor]
Sampler = Literal["ddpm", "ddim", "euler"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "euler")
DEFAULT_STEPS = 50  # DDIM's and Euler's number of steps when none is given


def ddpm_step(
    eps_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    variance: Literal["posterior", "beta"] = "posterior",
    clip_x0: bool = False,
) -> torch.Tensor:
    """One step of ancestral sampling, x_t -> x_{t-1}. DDPM, Algorithm 2, line 4.

    1. mean = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_hat)   (Eq. 11)
    2. sigma_t^2 = beta_tilde_t (``variance="posterior"``) or beta_t (``"beta"``); the paper
       reports that both give similar results (Section 3.2).
    3. x_{t-1} = mean + sigma_t * noise, except at t = 1 where no noise is added.

    With ``clip_x0=True`` the implied x0_hat is clipped to [-1, 1] first and the mean is taken
    from the posterior q(x_{t-1} | x_t, x0_hat) (Eq. 7). Without clipping the two are equal.
    ``noise=None`` draws fresh N(0, I) noise.
    """
    check_same_shape(x_t, eps_hat, "x_t", "eps_hat")
    if variance not in ("posterior", "beta"):
        raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}.")
    t = as_timesteps(t, x_t.shape[0], schedule, low=1)
    if clip_x0:
        x0_hat = predict_x0_from_eps(x_t, t, eps_hat, schedule).clamp(-1.0, 1.0)
        mean, _ = q_posterior(x0_hat, x_t, t, schedule)
    else:
        scale = coef(schedule.betas / schedule.sqrt_one_minus_alpha_bars.clamp(min=1e-20), t, x_t)
        mean = (x_t - scale * eps_hat) / coef(schedule.alphas.sqrt(), t, x_t)
    var = schedule.posterior_variance if variance == "posterior" else schedule.betas
    sigma = coef(var.sqrt(), t, x_t)
    sigma = sigma * (t > 1).to(sigma).view_as(sigma)  # no noise on the last step (t = 1)
    if noise is None:
        noise = torch.randn_like(x_t)
    check_same_shape(x_t, noise, "x_t", "noise")
    return mean + sigma * noise


def ddim_step(
    eps_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: bool = False,
) -> torch.Tensor:
    """One DDIM step, x_t -> x_{t_prev} for any earlier ``t_prev``. DDIM (Song et al. 2021), Eq. 12.

    1. x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t)     "predicted x_0"
    2. sigma = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
                   * sqrt(1 - alpha_bar_t / alpha_bar_prev)                    (Eq. 16)
    3. x_prev = sqrt(alpha_bar_prev) x0_hat                                    "predicted x_0" part
               + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat                    "direction to x_t"
               + sigma * noise                                                 random noise

    ``eta = 0`` is deterministic (DDIM proper); ``eta = 1`` with ``t_prev = t - 1`` is DDPM with
    the posterior variance. ``t_prev = 0`` returns x0_hat (alpha_bar_0 = 1).
    With ``clip_x0=True``, x0_hat is clipped to [-1, 1] and eps_hat re-derived from it.
    """
    check_same_shape(x_t, eps_hat, "x_t", "eps_hat")
    if not (eta >= 0.0):
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta!r}.")
    batch = x_t.shape[0]
    t = as_timesteps(t, batch, schedule, low=1)
    t_prev = as_timesteps(t_prev, batch, schedule, low=0, what="t_prev")
    if (t_prev >= t).any():
        raise ValueError(
            f"t_prev must be smaller than t (sampling runs from T down to 0), "
            f"got t={t.tolist()[:4]} and t_prev={t_prev.tolist()[:4]}."
        )
    x0_hat = predict_x0_from_eps(x_t, t, eps_hat, schedule)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_hat = predict_eps_from_x0(x_t, t, x0_hat, schedule)
    alpha_bar_t = coef(schedule.alpha_bars, t, x_t)
    alpha_bar_prev = coef(schedule.alpha_bars, t_prev, x_t)
    sigma = (
        eta
        * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)).sqrt()
        * (1 - alpha_bar_t / alpha_bar_prev).sqrt()
    )
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0.0).sqrt() * eps_hat
    x_prev = alpha_bar_prev.sqrt() * x0_hat + direction
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(x_t)
        check_same_shape(x_t, noise, "x_t", "noise")
        x_prev = x_prev + sigma * noise
    return x_prev


def euler_step(
    velocity: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    T: int,
    clip_x0: bool = False,
) -> torch.Tensor:
    """One Euler step of a flow model, x_s -> x_{s_prev} with s = t / T (Lipman et al. 2023,
    in the course's direction of time: s = 0 is the data, s = 1 pure noise).

    On the straight path ``x_s = (1 - s) x_0 + s eps`` the model predicts the velocity
    ``u = dx_s/ds = eps - x_0``; stepping back in time, ``x_{s_prev} = x_s + (s_prev - s) u``.
    With ``clip_x0=True`` the x_0 it implies (``x_s - s u``) is clipped to [-1, 1] first and
    the step lands on the straight line between that x_0 and the implied noise.
    """
    check_same_shape(x_t, velocity, "x_t", "velocity")
    if not (0 <= t_prev < t <= T):
        raise ValueError(f"need 0 <= t_prev < t <= T={T}, got t={t} and t_prev={t_prev}.")
    s, s_prev = t / T, t_prev / T
    if not clip_x0:
        return x_t + (s_prev - s) * velocity
    x0_hat = (x_t - s * velocity).clamp(-1.0, 1.0)
    eps_hat = (x_t - (1 - s) * x0_hat) / s
    return (1 - s_prev) * x0_hat + s_prev * eps_hat


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps + 1`` evenly spaced, strictly decreasing timesteps from T down to 0 (DDIM's tau)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not (1 <= steps <= T):
        raise ValueError(f"steps must be an integer in 1..T={T}, got {steps!r}.")
    return torch.linspace(T, 0, steps + 1, dtype=torch.float64).round().long().tolist()


def sampling_timesteps(sampler: str, T: int, steps: int | None = None) -> list[int]:
    """The timesteps ``[T, ..., 0]`` a sampler visits; checks ``sampler`` and ``steps``.

    ``"ddpm"`` visits all T (DDPM's Algorithm 2); ``"ddim"`` and ``"euler"`` take ``steps``
    evenly spaced ones (default :data:`DEFAULT_STEPS`, at most T).
    """
    if sampler not in SAMPLERS:
        names = ", ".join(map(repr, SAMPLERS))
        raise ValueError(f"sampler must be one of {names}, got {sampler!r}.")
    if sampler == "ddpm":
        if steps not in (None, T):
            raise ValueError(
                f"DDPM sampling takes all T={T} steps; got steps={steps}. For fewer steps use "
                "sampler='ddim' (eta=1.0 gives DDPM-like noise)."
            )
        return list(range(T, -1, -1))
    if steps is not None and not (isinstance(steps, int) and 1 <= steps <= T):
        raise ValueError(f"steps must be a whole number in 1..T={T}, got {steps!r}.")
    return ddim_timesteps(T, min(DEFAULT_STEPS, T) if steps is None else steps)


def plan_sampling(
    model: NoisePredictor, T: int, sampler: str | None = None, steps: int | None = None
) -> tuple[Sampler, list[int]]:
    """``(sampler, timesteps)`` for this model: checks that they fit, with a clear error.

    ``sampler=None`` picks ``"ddpm"``, or ``"euler"`` for a flow model.
    """
    prediction = prediction_of(model)
    sampler = sampler or ("euler" if prediction == "flow" else "ddpm")
    timesteps = sampling_timesteps(sampler, T, steps)
    _check_sampler(sampler, prediction)
    return sampler, timesteps  # type: ignore[return-value]


def _check_sampler(sampler: str, prediction: str) -> None:
    if prediction == "flow" and sampler != "euler":
        raise ValueError(
            f"this model predicts a flow velocity (prediction='flow'), which sampler={sampler!r} "
            "cannot use: sample it with sampler='euler'."
        )
    if prediction != "flow" and sampler == "euler":
        raise ValueError(
            f"sampler='euler' follows a flow model's velocity, but this model predicts "
            f"{prediction!r}: use sampler='ddim' or 'ddpm'."
        )


# ----------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class SampleStep:
    """One step of a sampling run, for watching or animating it."""

    index: int  # 0 for the first step
    t: int  # the timestep x_t was at
    t_prev: int  # the timestep the step moved to
    x_t: torch.Tensor  # (B, C, H, W) before the step
    x0_hat: torch.Tensor  # (B, C, H, W) the model's guess of the clean image
    x_prev: torch.Tensor  # (B, C, H, W) after the step


@dataclass(frozen=True)
class Trajectory:
    """What ``sample(..., return_trajectory=True)`` returns."""

    images: torch.Tensor  # (B, C, H, W), final samples in [-1, 1]
    timesteps: list[int]  # [T, ..., 0]: the timestep of each entry of xs
    xs: torch.Tensor  # (S + 1, B, C, H, W): x_T, ..., x_0 on the CPU
    x0_hats: torch.Tensor  # (S, B, C, H, W): predicted x_0 at each step, on the CPU


def _predict(
    model: NoisePredictor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None,
    guidance: float,
) -> torch.Tensor:
    """The model's prediction, with classifier-free guidance when ``guidance != 1``.

    pred = pred_uncond + guidance * (pred_cond - pred_uncond)   (Ho & Salimans 2022, as in
    diffusers). Every target is an affine function of eps at a given (x_t, t), so mixing
    predictions mixes the noise estimates the same way.
    """
    if cond is None or guidance == 1.0:
        return model(x_t, t, cond)
    null = null_condition(model, cond)  # type: ignore[arg-type]
    if null is None:  # any callable: two passes, cond=None meaning "no condition"
        pred_cond, pred_uncond = model(x_t, t, cond), model(x_t, t, None)
    else:  # one batched pass: [conditional; unconditional]
        both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null]))
        pred_cond, pred_uncond = both.chunk(2)
    return pred_uncond + guidance * (pred_cond - pred_uncond)


def sample_steps(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    cond: torch.Tensor | None = None,
    sampler: Sampler | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
    progress: bool = False,
) -> Iterator[SampleStep]:
    """Run the reverse process from ``x_T``, yielding a :class:`SampleStep` after every step.

    ``sampler="ddpm"`` takes all T steps (DDPM Algorithm 2, posterior variance);
    ``sampler="ddim"`` takes ``steps`` evenly spaced steps with DDIM's ``eta``;
    ``sampler="euler"`` takes ``steps`` Euler steps along a flow model's velocity.
    None picks ``"ddpm"``, or ``"euler"`` for a flow model.
    """
    sampler, timesteps = plan_sampling(model, schedule.T, sampler, steps)
    prediction = prediction_of(model)
    batch = x_T.shape[0]
    x_t = x_T
    pairs = list(zip(timesteps[:-1], timesteps[1:], strict=True))
    for index, (t, t_prev) in enumerate(
        tqdm(pairs, desc=f"{sampler} sampling", disable=not progress)
    ):
        t_batch = torch.full((batch,), t, dtype=torch.long, device=x_t.device)
        pred = _predict(model, x_t, t_batch, cond, guidance).to(x_t.dtype)
        x0_hat, eps_hat = split_prediction(pred, x_t, t_batch, schedule, prediction)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        if sampler == "ddpm":
            x_prev = ddpm_step(eps_hat, x_t, t, schedule, noise=noise, clip_x0=clip_x0)
        elif sampler == "ddim":
            x_prev = ddim_step(
                eps_hat, x_t, t, t_prev, schedule, eta=eta, noise=noise, clip_x0=clip_x0
            )
        else:
            x_prev = euler_step(pred, x_t, t, t_prev, schedule.T, clip_x0=clip_x0)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        yield SampleStep(index=index, t=t, t_prev=t_prev, x_t=x_t, x0_hat=x0_hat, x_prev=x_prev)
        x_t = x_prev


def _model_image_shape(model: NoisePredictor) -> tuple[int, int, int] | None:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_size") and hasattr(config, "in_channels"):
        return (config.in_channels, config.image_size, config.image_size)
    return None


def _model_device(model: NoisePredictor) -> torch.device | None:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


@torch.no_grad()
def sample(
    model: NoisePredictor,
    schedule: NoiseSchedule,
    n: int | None = None,
    labels: Sequence[int] | torch.Tensor | None = None,
    sampler: Sampler | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 1.0,
    seed: int | None = None,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
    shape: tuple[int, ...] | None = None,
    clip_x0: bool = True,
    progress: bool = True,
    cond: torch.Tensor | None = None,
) -> torch.Tensor | Trajectory:
    """Draw new images from a trained noise predictor, starting from pure noise x_T ~ N(0, I).

    Args:
        model: callable ``(x_t, t, cond) -> prediction`` (e.g. :class:`~diffusion_edu.UNet`).
        schedule: the schedule the model was trained with.
        n: how many images (or give ``labels``/``cond``: one image per entry).
        labels: class labels for a class-conditional model, e.g. ``[0, 1, ..., 9]``.
        sampler: ``"ddpm"`` (all T steps), ``"ddim"`` or ``"euler"`` (``steps`` steps, default
            :data:`DEFAULT_STEPS`). None: ``"ddpm"``, or ``"euler"`` for a flow model.
        eta: DDIM's noise level (0 = deterministic).
        guidance: classifier-free guidance scale w in
            ``eps = eps_uncond + w * (eps_cond - eps_uncond)``; 1.0 is plain conditional sampling.
        seed: same seed, same device -> the same images.
        return_trajectory: also return every x_t and x0_hat (for animations), as a
            :class:`Trajectory`.
        device: where to sample; default: the model's device.
        shape: ``(C, H, W)`` of one image; default: from ``model.config``.
        clip_x0: clip the predicted x_0 to [-1, 1] at each step, and the result at the end
            (standard practice for images in [-1, 1]); False for data on another scale,
            e.g. the 2-D points of lesson 05.
        cond: any other condition, one row per image (e.g. token ids ``(n, L)`` of a text
            prompt), instead of ``labels``.

    Returns:
        ``(n, C, H, W)`` images (in [-1, 1] with ``clip_x0``), or a :class:`Trajectory`.
    """
    if labels is not None and cond is not None:
        raise ValueError("give labels=... or cond=..., not both (labels are a kind of cond).")
    if labels is not None:
        cond = torch.as_tensor(labels, dtype=torch.long)
        if cond.ndim != 1:
            raise ValueError(
                f"labels must be a 1-D list of class ids, got shape {tuple(cond.shape)}."
            )
    if cond is not None:
        if n is not None and n != cond.shape[0]:
            raise ValueError(
                f"n={n} but {cond.shape[0]} labels were given: give one label per image."
            )
        n = cond.shape[0]
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"give n >= 1 (how many images) or a list of labels; got n={n!r}.")
    if guidance != 1.0 and cond is None:
        raise ValueError("classifier-free guidance needs labels: pass labels=... or guidance=1.0.")
    if shape is None:
        shape = _model_image_shape(model)
        if shape is None:
            raise ValueError("cannot tell the image shape from this model: pass shape=(C, H, W).")
    device = (
        torch.device(device)
        if device is not None
        else (_model_device(model) or torch.device("cpu"))
    )
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    if cond is not None:
        cond = cond.to(device)
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with cpu_threads(threads_for(model, device)):  # the thread policy (device.py)
            x_T = torch.randn((n, *shape), generator=generator, device=device)  # (B, C, H, W)
            xs, x0_hats, timesteps = [x_T.cpu()], [], []
            x = x_T
            for step in sample_steps(
                model, schedule, x_T, cond, sampler, steps, eta, guidance, generator, clip_x0,
                progress,
            ):  # fmt: skip
                x = step.x_prev
                if return_trajectory:
                    timesteps.append(step.t)
                    xs.append(x.cpu())
                    x0_hats.append(step.x0_hat.cpu())
    finally:
        if was_training:
            model.train()
    images = x.clamp(-1.0, 1.0) if clip_x0 else x  # data in [-1, 1]; other data left as it is
    if not return_trajectory:
        return images
    return Trajectory(
        images=images,
        timesteps=timesteps + [0],
        xs=torch.stack(xs),  # (S + 1, B, C, H, W)
        x0_hats=torch.stack(x0_hats),  # (S, B, C, H, W)
    )
