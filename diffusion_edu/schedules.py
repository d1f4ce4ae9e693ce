"""Noise schedules: how much noise the forward process adds at each step.

The timestep convention (used everywhere in diffusion_edu)
----------------------------------------------------------
We follow the DDPM paper (Ho et al. 2020) exactly:

* ``x_0`` is a clean data sample, ``x_T`` is (almost) pure Gaussian noise.
* ``t`` runs ``1, 2, ..., T``.
* Every per-step array has length ``T + 1``. Index ``t`` holds the value for step ``t``, and
  index ``0`` means "no noise": ``betas[0] = 0``, ``alphas[0] = 1``, ``alpha_bars[0] = 1``.

So ``schedule.alpha_bars[t]`` is the paper's alpha_bar_t with no off-by-one to remember.

Notation (code name -> paper symbol):

=====================  ====================================================  ==============
code                   meaning                                               paper
=====================  ====================================================  ==============
``betas[t]``           variance of the noise added at step t                 beta_t
``alphas[t]``          ``1 - betas[t]``                                      alpha_t
``alpha_bars[t]``      ``alphas[1] * ... * alphas[t]``                        alpha_bar_t
``snr[t]``             signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)``  SNR(t)
``posterior_variance`` variance of q(x_{t-1} | x_t, x_0)                     beta_tilde_t
``posterior_mean_*``   coefficients of x_0 and x_t in that posterior's mean  mu_tilde_t
=====================  ====================================================  ==============

Schedules are stored in float64 (so that products of 1000 numbers close to 1 stay exact) and
cast to the data's dtype where they are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "NoiseSchedule",
    "ScheduleKind",
    "make_schedule",
    "PURE_NOISE_ALPHA_BAR",
    "log_snr_zero_crossing",
    "ScheduleSummary",
    "summarize_schedule",
]

ScheduleKind = Literal["linear", "cosine", "sigmoid"]
PURE_NOISE_ALPHA_BAR = 0.01  # below this, sqrt(alpha_bar) < 0.1: the digit is 10% of the pixel


class NoiseSchedule:
    """A variance schedule beta_1..beta_T and everything derived from it.

    Build one with a named constructor::

        NoiseSchedule.linear()            # DDPM: T=1000, beta from 1e-4 to 0.02
        NoiseSchedule.cosine()            # Nichol & Dhariwal (2021)
        NoiseSchedule.sigmoid()           # Chen (2023)
        NoiseSchedule.from_betas(betas)   # your own, betas for t = 1..T

    Attributes (float64 tensors of length ``T + 1``, index 0 = "no noise"):
        betas, alphas, alpha_bars, snr, log_snr, sqrt_alpha_bars, sqrt_one_minus_alpha_bars,
        posterior_variance, posterior_mean_coef_x0, posterior_mean_coef_xt.
    """

    def __init__(self, betas: torch.Tensor | list[float], name: str = "custom") -> None:
        betas_1_to_T = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        _validate_betas(betas_1_to_T)
        self.name = name
        self.T: int = int(betas_1_to_T.shape[0])
        # Index 0 means "no noise": beta_0 = 0 so that alpha_bar_0 = 1.
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas_1_to_T])
        self.alphas = 1.0 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.sqrt_alpha_bars = self.alpha_bars.sqrt()
        self.sqrt_one_minus_alpha_bars = (1.0 - self.alpha_bars).sqrt()
        # SNR(t) = alpha_bar_t / (1 - alpha_bar_t); infinite at t = 0 (no noise at all).
        self.snr = self.alpha_bars / (1.0 - self.alpha_bars)
        self.log_snr = self.snr.log()
        # DDPM Eq. 7: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t.
        # At t = 1 this is 0: given x_1 and x_0, x_0 is known exactly. Index 0 is unused (0).
        # DDPM Eq. 7, mean: coef_x0 * x_0 + coef_xt * x_t with
        #   coef_x0 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)
        #   coef_xt = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
        ab, ab_prev = self.alpha_bars[1:], self.alpha_bars[:-1]  # alpha_bar_t, alpha_bar_{t-1}
        zero = torch.zeros(1, dtype=torch.float64)
        self.posterior_variance = torch.cat([zero, (1.0 - ab_prev) / (1.0 - ab) * self.betas[1:]])
        self.posterior_mean_coef_x0 = torch.cat(
            [zero, ab_prev.sqrt() * self.betas[1:] / (1.0 - ab)]
        )
        self.posterior_mean_coef_xt = torch.cat(
            [zero, self.alphas[1:].sqrt() * (1.0 - ab_prev) / (1.0 - ab)]
        )

    # ----------------------------------------------------------------- constructors
    @classmethod
    def linear(
        cls,
        T: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        scale_to_T: bool = False,
    ) -> NoiseSchedule:
        """DDPM's schedule: beta_t rises linearly from ``beta_start`` (t=1) to ``beta_end`` (t=T).

        Source: Ho et al. 2020, Section 4 ("beta_1 = 1e-4 to beta_T = 0.02", T = 1000).

        ``scale_to_T=True`` is for short chains: DDPM's betas suit T = 1000, and with T = 25
        the same betas would stop far short of pure noise. Both ends are then multiplied by
        1000 / T (capped at 0.1 and 0.9), which keeps DDPM's ``beta_T * T = 20``.
        """
        _check_T(T)
        if scale_to_T:
            scale = 1000 / T
            beta_start, beta_end = min(beta_start * scale, 0.1), min(beta_end * scale, 0.9)
        for name, value, ddpm in (
            ("beta_start", beta_start, "1e-4"),
            ("beta_end", beta_end, "0.02"),
        ):
            if not (math.isfinite(value) and 0.0 < value < 1.0):
                fix = "a smaller" if value >= 1 else "a positive" if value <= 0 else "a finite"
                raise ValueError(
                    f"{name} must be a number strictly between 0 and 1, got "
                    f"{_short_number(value)}{' (after scale_to_T)' if scale_to_T else ''}. It is "
                    f"the variance of the noise added in one step: choose {fix} value, such as "
                    f"DDPM's {ddpm}."
                )
        if T == 1:
            betas = torch.tensor([beta_end], dtype=torch.float64)
        else:
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls(betas, name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal (2021), Eq. 17: alpha_bar follows a squared cosine.

        ``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos(((t / T + s) / (1 + s)) * pi / 2) ** 2``,
        and ``beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta)``. The small offset
        ``s`` keeps beta_1 from being vanishingly small; ``max_beta`` stops the last steps from
        being a division by (nearly) zero.
        """
        _check_T(T)
        if not (math.isfinite(s) and s >= 0.0):
            raise ValueError(f"s must be a finite number >= 0, got {s!r} (the paper uses 0.008).")
        if not (math.isfinite(max_beta) and 0.0 < max_beta < 1.0):
            raise ValueError(f"max_beta must be strictly between 0 and 1, got {max_beta!r}.")
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos(((steps / T + s) / (1 + s)) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=1e-12, max=max_beta)
        return cls(betas, name="cosine")

    @classmethod
    def sigmoid(
        cls,
        T: int = 1000,
        start: float = -3.0,
        end: float = 3.0,
        tau: float = 1.0,
        max_beta: float = 0.999,
    ) -> NoiseSchedule:
        """Chen (2023), "On the importance of noise scheduling", Algorithm 1 (sigmoid).

        ``alpha_bar(t) = (sigmoid(end / tau) - sigmoid((t/T * (end - start) + start) / tau))
        / (sigmoid(end / tau) - sigmoid(start / tau))``. A larger ``tau`` spreads the
        destruction more evenly over t; ``start``/``end`` choose which part of the sigmoid is used.
        """
        _check_T(T)
        if not (math.isfinite(start) and math.isfinite(end) and start < end):
            raise ValueError(f"need finite start < end, got start={start!r}, end={end!r}.")
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be a positive number, got {tau!r}.")
        if not (math.isfinite(max_beta) and 0.0 < max_beta < 1.0):
            raise ValueError(f"max_beta must be strictly between 0 and 1, got {max_beta!r}.")
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
        v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
        alpha_bar = (v_end - torch.sigmoid((steps * (end - start) + start) / tau)) / (
            v_end - v_start
        )
        betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=1e-12, max=max_beta)
        return cls(betas, name="sigmoid")

    @classmethod
    def from_betas(cls, betas: torch.Tensor | list[float], name: str = "custom") -> NoiseSchedule:
        """Your own schedule: ``betas`` holds beta_1..beta_T (length T; index 0 is added)."""
        return cls(betas, name=name)

    # ----------------------------------------------------------------- helpers
    def to_dict(self) -> dict[str, object]:
        """A plain description (name, T, betas) that can be saved with ``weights_only`` loading."""
        return {"name": self.name, "T": self.T, "betas": self.betas[1:].clone()}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> NoiseSchedule:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "betas" not in d:
            raise ValueError("a saved schedule must be a dict with a 'betas' entry (see to_dict).")
        return cls(d["betas"], name=str(d.get("name", "custom")))  # type: ignore[arg-type]

    def on(
        self, name: str, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The table ``name`` (e.g. ``"sqrt_alpha_bars"``) as ``dtype`` on ``device``, cached.

        ``q_sample`` and the training loss look their coefficients up here, so that the
        float64 CPU tables are copied to the GPU once, not every step (each copy would make the
        GPU wait for the CPU). The values are the float64 ones rounded once to ``dtype``.
        """
        key = (name, str(torch.device(device)), dtype)
        cache = self.__dict__.setdefault("_device_tables", {})
        if key not in cache:
            cache[key] = getattr(self, name).to(device=device, dtype=dtype)
        return cache[key]

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule.{self.name}(T={self.T}): beta_1={self.betas[1].item():.3g}, "
            f"beta_T={self.betas[-1].item():.3g}, alpha_bar_T={self.alpha_bars[-1].item():.3g}"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoiseSchedule):
            return NotImplemented
        return self.T == other.T and torch.equal(self.betas, other.betas)

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------- choosing and comparing
def make_schedule(
    kind: ScheduleKind = "linear",
    T: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    s: float = 0.008,
    tau: float = 1.0,
    scale_to_T: bool = False,
) -> NoiseSchedule:
    """The named schedule with the given knobs (only the ones that kind uses are read).

    linear: DDPM (Ho et al. 2020), ``scale_to_T`` as in :meth:`NoiseSchedule.linear`;
    cosine: Nichol & Dhariwal 2021, Eq. 17 (offset ``s``); sigmoid: Chen 2023, Algorithm 1
    (temperature ``tau``). Raises ValueError for bad values.
    """
    if kind == "linear":
        return NoiseSchedule.linear(T, beta_start, beta_end, scale_to_T=scale_to_T)
    if kind == "cosine":
        return NoiseSchedule.cosine(T=T, s=s)
    if kind == "sigmoid":
        return NoiseSchedule.sigmoid(T=T, tau=tau)
    raise ValueError(f"kind must be 'linear', 'cosine' or 'sigmoid', got {kind!r}.")


def log_snr_zero_crossing(schedule: NoiseSchedule) -> int:
    """The first step t at which log-SNR(t) <= 0, i.e. alpha_bar_t <= 1/2.

    log SNR(t) = log(alpha_bar_t / (1 - alpha_bar_t)) is 0 exactly when signal and noise have
    equal variance (the SNR of Kingma et al. 2021, Variational Diffusion Models). Returns
    ``T + 1`` if it never happens (the schedule never gets that noisy).
    """
    below = torch.nonzero(schedule.log_snr[1:] <= 0)
    return int(below[0]) + 1 if below.numel() else schedule.T + 1


@dataclass(frozen=True)
class ScheduleSummary:
    """How a schedule spends its T steps.

    Attributes:
        name, T: the schedule.
        t_half: first t with log-SNR <= 0 (alpha_bar <= 1/2); ``T + 1`` if never.
        t_pure_noise: first t with alpha_bar < ``threshold`` (the image is under 10% of the
            pixel when threshold = 0.01); ``T + 1`` if never.
        pure_noise_fraction: fraction of the T steps with alpha_bar < ``threshold``.
        alpha_bar_T: alpha_bar at the last step (should be ~0 so x_T is pure noise).
        threshold: the alpha_bar level counted as "pure noise".
    """

    name: str
    T: int
    t_half: int
    t_pure_noise: int
    pure_noise_fraction: float
    alpha_bar_T: float
    threshold: float

    @property
    def crosses_zero(self) -> bool:
        """True if log-SNR reaches 0 (alpha_bar <= 1/2) at some step t <= T."""
        return self.t_half <= self.T

    @property
    def reaches_pure_noise(self) -> bool:
        """True if alpha_bar falls below ``threshold`` at some step t <= T."""
        return self.t_pure_noise <= self.T

    def __str__(self) -> str:
        if self.crosses_zero:
            half = f"log-SNR crosses 0 at t={self.t_half} ({self.t_half / self.T:.0%} of the way)"
        else:  # t_half = T + 1 is a marker, not a step: say what happens instead
            half = "log-SNR never crosses 0 (it stays above 0: alpha_bar_T > 1/2)"
        if self.reaches_pure_noise:
            noise = (
                f"alpha_bar < {self.threshold:g} from t={self.t_pure_noise}, so "
                f"{self.pure_noise_fraction:.0%} of the steps see (almost) pure noise"
            )
        else:
            noise = (
                f"alpha_bar never falls below {self.threshold:g}: no step is (almost) pure noise"
            )
        return f"{self.name:>8} (T={self.T}): {half}; {noise}; alpha_bar_T = {self.alpha_bar_T:.2g}"


def summarize_schedule(
    schedule: NoiseSchedule, threshold: float = PURE_NOISE_ALPHA_BAR
) -> ScheduleSummary:
    """Summarise where a schedule's log-SNR crosses 0 and how many steps are nearly pure noise.

    Nichol & Dhariwal (2021, Section 3.2) note that the linear schedule's last steps are
    almost pure noise and contribute little; ``pure_noise_fraction`` measures that.
    """
    ab = schedule.alpha_bars[1:]  # alpha_bar_1..alpha_bar_T
    noisy = torch.nonzero(ab < threshold)
    return ScheduleSummary(
        name=schedule.name,
        T=schedule.T,
        t_half=log_snr_zero_crossing(schedule),
        t_pure_noise=int(noisy[0]) + 1 if noisy.numel() else schedule.T + 1,
        pure_noise_fraction=(ab < threshold).double().mean().item(),
        alpha_bar_T=schedule.alpha_bars[-1].item(),
        threshold=threshold,
    )


def _short_number(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, for messages: 1.0023744672545447 -> "1.002".

    More digits are used only when rounding would turn a value into exactly 0 or 1 (the bounds
    most messages talk about), so that "got 1" never stands for 1.0000001.
    """
    for n in range(digits, 18):
        text = f"{value:.{n}g}"
        if float(text) == value or float(text) not in (0.0, 1.0):
            return text
    return repr(value)


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (the number of diffusion steps) must be an integer >= 1, got {T!r}.")


def _validate_betas(betas: torch.Tensor) -> None:
    if betas.ndim != 1:
        raise ValueError(
            f"betas must be a 1-D sequence beta_1..beta_T, got shape {tuple(betas.shape)}."
        )
    if betas.shape[0] < 1:
        raise ValueError("betas is empty: a schedule needs at least one step (T >= 1).")
    if not torch.isfinite(betas).all():
        bad = int(torch.nonzero(~torch.isfinite(betas))[0]) + 1
        raise ValueError(f"betas must be finite numbers; beta_{bad} is {betas[bad - 1].item()}.")
    outside = (betas <= 0) | (betas >= 1)
    if outside.any():
        bad = int(torch.nonzero(outside)[0]) + 1
        hint = (
            " Pass beta_1..beta_T only (length T): index 0 ('no noise') is added for you."
            if bad == 1 and betas[0] == 0
            else ""
        )
        raise ValueError(
            f"every beta_t must lie strictly between 0 and 1; beta_{bad} = "
            f"{_short_number(betas[bad - 1].item())}." + hint
        )
