"""What generating an image costs (lesson 13): FLOPs per network call from a model's shape,
times the calls a sampler makes, divided by a throughput measured on this machine.

The rule, stated once (and tested against PyTorch's FLOP counter,
:func:`~diffusion_edu.models.forward_flops`, in ``tests/test_costs.py``)::

    FLOPs per call  ~=  2 * P * N * grid_share

* ``P``: the denoiser's parameters.
* ``N = h * w``: the positions of the grid it reads: pixels (``H * W``) for a pixel model, latent
  positions (``(H / f) * (W / f)``, f the autoencoder's downsampling factor) for a latent one.
  Channels do not count: they change only the first and last layer.
* ``2``: a multiply-add counts 2 FLOPs (``forward_flops``' convention).
* ``grid_share``: the average fraction of the N positions each weight is applied to, a property
  of the network's *layout*. A Transformer on one token per position applies every weight to
  every token, so its share is close to 1 (the "2N FLOPs per token" of Kaplan et al. 2020, Sec.
  2.1). A U-Net runs most of its weights on downsampled grids (a quarter of the positions, a
  sixteenth, ...), so its share is well below 1. :func:`grid_share` measures it on any course
  model; for a fully-convolutional layout it does not change with the width or the grid size
  (the tests check both), so a small copy of a layout measures the share of a big one.

Then, per image: ``calls = steps * (2 if guidance else 1)`` (classifier-free guidance runs the
network with and without the condition, lesson 09), and ``seconds = FLOPs / throughput``, with
the throughput (FLOPs per second) measured by :func:`measure_throughput`: a short timed run of a
course model on this machine. The autoencoder's decoder (once per image, lesson 11) and a text
encoder (once per prompt) are left out: next to tens of denoiser calls they are small.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion_edu.models import UNet, count_parameters, forward_flops
from diffusion_edu.models.common import decodes_latents, unwrap
from diffusion_edu.models.unet import UNetConfig

__all__ = [
    "SD_V1",
    "SD_V1_GRID_SHARE",
    "GenerationSetup",
    "CostEstimate",
    "Throughput",
    "SpeedRow",
    "grid_share",
    "flops_per_call",
    "calls_per_image",
    "estimate_cost",
    "measure_throughput",
    "sd_v1_layout",
    "speed_rows",
    "flow_speed_row",
]


# ----------------------------------------------------------------------------- the rule
def _grid_positions(model: nn.Module, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    inner = unwrap(model)
    if shape is not None:
        return tuple(shape)
    if decodes_latents(inner):
        return tuple(inner.latent_shape)  # type: ignore[union-attr]
    config = getattr(inner, "config", None)
    if config is None or not hasattr(config, "image_size"):
        raise ValueError(
            f"{type(inner).__name__} reads no image grid: grid_share needs a model of images or "
            "latents (a U-Net, a DiT, a latent model), or give shape=(C, H, W)."
        )
    return (config.in_channels, config.image_size, config.image_size)


def _denoiser_parameters(model: nn.Module) -> int:
    """Parameters of the network that runs at every step (a latent model's denoiser only)."""
    inner = unwrap(model)
    if decodes_latents(inner):
        return count_parameters(inner.denoiser)  # type: ignore[union-attr]
    return count_parameters(inner)


def grid_share(model: nn.Module, shape: tuple[int, ...] | None = None) -> float:
    """The layout's grid share, measured: ``forward_flops / (2 * P * h * w)``.

    ``P`` counts the denoiser's trainable parameters (a latent model's frozen autoencoder is not
    run at every step); ``shape`` is ``(C, H, W)`` of the input (default: the model's own
    grid, its latents for a latent model).
    """
    c, h, w = _grid_positions(model, shape)
    inner = unwrap(model)
    network = inner.denoiser if decodes_latents(inner) else inner  # type: ignore[union-attr]
    flops = forward_flops(network, (c, h, w))
    return flops / (2 * _denoiser_parameters(model) * h * w)


def flops_per_call(parameters: float, positions: float, share: float) -> float:
    """The rule: ``2 * parameters * positions * share`` FLOPs for one network call on one image."""
    if parameters <= 0 or positions <= 0:
        raise ValueError(
            f"parameters and positions must be positive, got {parameters} and {positions}."
        )
    if not 0 < share <= 2:
        raise ValueError(
            f"the grid share must be in (0, 2] (about 1 for a Transformer, below 1 for a U-Net; "
            f"measure it with grid_share(model)), got {share}."
        )
    return 2.0 * parameters * positions * share


def calls_per_image(steps: int, guidance: bool) -> int:
    """Network calls per image: one per step, two with classifier-free guidance (lesson 09).

    The shape-only count of the calculator; :func:`diffusion_edu.samplers.model_calls` counts a
    given sampler's calls exactly (Heun's extra call, a guidance interval)."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps}.")
    return int(steps) * (2 if guidance else 1)


# ----------------------------------------------------------------------------- a setting
@dataclass(frozen=True)
class GenerationSetup:
    """One way of generating images, described by its shape only.

    Attributes:
        name: what to call it in a figure.
        image_size: pixels on each side of the (square) image.
        latent: True if the denoiser runs on an autoencoder's latents, False on pixels.
        downsampling: the autoencoder's factor f (latent side = image_size / f); 1 for pixels.
        parameters: the denoiser's parameters.
        share: the layout's grid share (:func:`grid_share`).
        steps: sampling steps; guidance: classifier-free guidance (2 calls per step).
        batch: images generated together (changes the throughput, not the FLOPs per image).
    """

    name: str
    image_size: int
    latent: bool
    downsampling: int
    parameters: float
    share: float
    steps: int
    guidance: bool
    batch: int = 1

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"{self.name}: image_size must be >= 1 pixel, got {self.image_size}.")
        if self.downsampling < 1:
            raise ValueError(f"{self.name}: downsampling must be >= 1, got {self.downsampling}.")
        if not self.latent and self.downsampling != 1:
            raise ValueError(
                f"{self.name}: a pixel model has downsampling 1 (got {self.downsampling}); set "
                "latent=True for a model on an autoencoder's latents."
            )
        if self.image_size % self.downsampling:
            raise ValueError(
                f"{self.name}: the image side {self.image_size} is not a multiple of the "
                f"downsampling factor {self.downsampling}: pick a side the autoencoder can halve "
                "that often."
            )
        if self.batch < 1:
            raise ValueError(f"{self.name}: batch must be >= 1, got {self.batch}.")
        flops_per_call(self.parameters, self.positions, self.share)  # checks the rest
        calls_per_image(self.steps, self.guidance)

    @property
    def grid_side(self) -> int:
        """Side of the grid the denoiser reads: ``image_size / f`` (latents) or image_size."""
        return self.image_size // self.downsampling

    @property
    def positions(self) -> int:
        """N = h * w: grid positions the denoiser reads."""
        return self.grid_side**2


#: Stable Diffusion v1's U-Net layout measured by :func:`grid_share` on :func:`sd_v1_layout`
#: (the course's U-Net with SD's channel multipliers and block count, 64 x 64 x 4 latents);
#: tests/test_costs.py measures it again. SD's own U-Net also has attention at the 64, 32 and
#: 16 grids and cross-attention, which this copy leaves out: the share is an estimate.
SD_V1_GRID_SHARE = 0.0862

#: Stable Diffusion v1 at its published shapes: 512 x 512 images, 64 x 64 x 4 latents (f = 8),
#: an 860M-parameter U-Net (CompVis/stable-diffusion README), 50 DDIM steps with guidance
#: scale 7.5 (scripts/txt2img.py defaults: --ddim_steps 50, --H/--W 512, --C 4, --f 8,
#: --scale 7.5). The grid share is this course's estimate (:data:`SD_V1_GRID_SHARE`).
SD_V1 = GenerationSetup(
    name="Stable Diffusion v1",
    image_size=512,
    latent=True,
    downsampling=8,
    parameters=860e6,
    share=SD_V1_GRID_SHARE,
    steps=50,
    guidance=True,
)


def sd_v1_layout(base_channels: int = 16) -> UNet:
    """A small copy of Stable Diffusion v1's U-Net layout with the course's U-Net: 4 input
    channels, channel multipliers (1, 2, 4, 4), 2 residual blocks per level (SD's
    ``v1-inference.yaml``: ``channel_mult: [1, 2, 4, 4]``, ``num_res_blocks: 2``), on a 64 x 64
    latent grid, no condition. SD's width is 320; ``base_channels`` scales it down (the grid
    share does not depend on the width: tests)."""
    if base_channels < 8 or base_channels % 8:
        raise ValueError(
            f"base_channels must be a multiple of 8 (GroupNorm groups), got {base_channels}."
        )
    config = UNetConfig(
        image_size=64,
        in_channels=4,
        base_channels=base_channels,
        channel_mults=(1, 2, 4, 4),
        num_res_blocks=2,
        attention=True,
        num_classes=None,
    )
    return UNet(config)


# ----------------------------------------------------------------------------- throughput
@dataclass(frozen=True)
class Throughput:
    """FLOPs per second measured on this machine, per batch size (:func:`measure_throughput`).

    Attributes:
        batches: the batch sizes timed, increasing.
        flops_per_second: the throughput at each.
        model: what was timed; threads: torch's CPU threads during the timing.
        device: where it ran (``"cpu"``, ``"cuda"``...).
    """

    batches: tuple[int, ...]
    flops_per_second: tuple[float, ...]
    model: str = ""
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.batches or len(self.batches) != len(self.flops_per_second):
            raise ValueError("give one throughput per batch size, at least one.")
        if list(self.batches) != sorted(set(self.batches)) or self.batches[0] < 1:
            raise ValueError(f"batch sizes must be increasing and >= 1, got {self.batches}.")
        if any(not (f > 0 and math.isfinite(f)) for f in self.flops_per_second):
            raise ValueError(f"throughputs must be positive, got {self.flops_per_second}.")

    def at(self, batch: int) -> float:
        """The throughput at ``batch``: interpolated on a log axis of batch sizes between the
        measured ones, the nearest measured value outside them (no extrapolation)."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}.")
        bs, fs = self.batches, self.flops_per_second
        if batch <= bs[0]:
            return fs[0]
        if batch >= bs[-1]:
            return fs[-1]
        for k in range(len(bs) - 1):
            (b0, f0), (b1, f1) = (bs[k], fs[k]), (bs[k + 1], fs[k + 1])
            if b0 <= batch <= b1:
                w = math.log(batch / b0) / math.log(b1 / b0)
                return f0 + w * (f1 - f0)
        raise AssertionError("unreachable")  # pragma: no cover


def measure_throughput(
    model: nn.Module,
    batches: Sequence[int] = (1, 4, 16),
    repeats: int = 3,
    name: str = "",
) -> Throughput:
    """Time forward passes of ``model`` (no gradients, label 0 for a conditional model) on
    batches of each size; the fastest of ``repeats`` timed runs counts, after one untimed warm-up.
    FLOPs per image from :func:`~diffusion_edu.models.forward_flops`."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    batches = tuple(sorted(set(int(b) for b in batches)))
    if not batches or batches[0] < 1:
        raise ValueError(f"give batch sizes >= 1, got {batches}.")
    inner = unwrap(model)
    network = inner.denoiser if decodes_latents(inner) else inner  # type: ignore[union-attr]
    shape = _grid_positions(model, None)
    flops = forward_flops(network, shape)
    device = next(network.parameters()).device
    conditional = getattr(getattr(network, "config", None), "num_classes", None) is not None
    rates = []
    with torch.no_grad():
        for b in batches:
            x = torch.randn(b, *shape, device=device)  # (B, C, H, W)
            t = torch.full((b,), 500, dtype=torch.long, device=device)
            y = torch.zeros(b, dtype=torch.long, device=device) if conditional else None
            network(x, t, y)  # warm-up
            best = math.inf
            for _ in range(repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                network(x, t, y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            rates.append(flops * b / best)
    return Throughput(
        batches=batches,
        flops_per_second=tuple(rates),
        model=name or type(network).__name__,
        threads=torch.get_num_threads(),
        device=device.type,
    )


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class CostEstimate:
    """What one :class:`GenerationSetup` costs on a measured :class:`Throughput`."""

    setup: GenerationSetup
    flops_per_call: float
    calls_per_image: int
    flops_per_image: float
    flops_per_second: float
    seconds_per_image: float
    seconds_per_batch: float


def estimate_cost(
    setup: GenerationSetup, throughput: Throughput, speedup: float = 1.0
) -> CostEstimate:
    """FLOPs per call (the rule) x calls per image, divided by the throughput at the setup's batch
    size (times ``speedup``: a what-if for a faster machine; 1 = as measured)."""
    if not speedup > 0:
        raise ValueError(f"speedup must be positive, got {speedup}.")
    per_call = flops_per_call(setup.parameters, setup.positions, setup.share)
    calls = calls_per_image(setup.steps, setup.guidance)
    per_image = per_call * calls
    rate = throughput.at(setup.batch) * speedup
    seconds = per_image / rate
    return CostEstimate(setup, per_call, calls, per_image, rate, seconds, seconds * setup.batch)


# ----------------------------------------------------------------------------- sampler speeds
@dataclass(frozen=True)
class SpeedRow:
    """One way of sampling the digits, with its cost and quality, read from a record."""

    name: str
    model_calls: int
    seconds_per_image: float
    class_agreement: float
    frechet_distance: float
    source: str


def speed_rows(sweep: Any, points: Sequence[tuple[str, int]]) -> list[SpeedRow]:
    """Rows of lesson 08's recorded sweep (:func:`~diffusion_edu.metrics.load_sampling_cost`)
    for the ``(sampler, steps)`` points, e.g. ``[("ddpm", 1000), ("ddim", 50)]``."""
    names = {"ddpm": "DDPM", "ddim": "DDIM", "dpm-solver++": "DPM-Solver++(2M)"}
    rows = []
    for sampler, steps in points:
        c = sweep.get(sampler, steps)
        rows.append(
            SpeedRow(
                name=f"{names.get(sampler, sampler)}-{steps}",
                model_calls=c.model_calls,
                seconds_per_image=c.seconds_per_image,
                class_agreement=c.class_agreement,
                frechet_distance=c.frechet_distance,
                source=f"data/results/sampling_cost.json (guidance {c.guidance:g}, n={c.n})",
            )
        )
    return rows


def flow_speed_row(record: dict[str, Any], guidance: float = 1.0) -> SpeedRow:
    """Lesson 12's flow model as a row of the race, from its record
    (``pretrained_info("mnist-flow").record``): 50 Euler steps at ``guidance``, scored on 500
    digits by ``scripts/make_pretrained.py`` (key ``"euler50_guidance1"`` or ``"...2"``), the
    same digits, metric and guidance as lesson 08's rows."""
    key = f"euler50_guidance{guidance:g}"
    entry = record.get(key)
    if not isinstance(entry, dict):
        raise ValueError(
            f"the flow model's record has no {key!r}: scripts/make_pretrained.py writes it (50 "
            "Euler steps at guidance 1 and 2)."
        )
    return SpeedRow(
        name="flow matching, Euler-50",
        model_calls=50 if guidance == 1 else 100,  # guided: conditional + unconditional
        seconds_per_image=float(entry["seconds_per_image"]),
        class_agreement=float(entry["class_agreement"]),
        frechet_distance=float(entry["frechet_distance"]),
        source=f"data/pretrained/mnist_flow.json ({key})",
    )
