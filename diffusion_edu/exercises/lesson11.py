"""Lesson 11 exercises: Stable Diffusion's scale factor and decoding scaled latents by hand, and a
predict-then-check question on compute.

1. ``my_scale_factor(latents) -> float``: ``1 / std`` of a batch of (unscaled) training latents,
   over all their numbers, as Stable Diffusion computes its ``scale_factor`` (Rombach et al.
   2022, Sec. 4.3.2 and the appendix on rescaling; ``scale_by_std`` in CompVis' code).
2. ``my_decode(model, z) -> images``: pixels from the *scaled* latents a latent model samples:
   ``model.autoencoder.decode(z / model.scale_factor)``, what
   :meth:`~diffusion_edu.models.LatentDiffusion.decode_latents` does after sampling.

The checkers compare with the library (:func:`diffusion_edu.models.latent_scale_factor`,
:meth:`~diffusion_edu.models.LatentDiffusion.decode_latents`) and name the usual slips by
computing what each slip would give. :func:`verify_flops_ratio_prediction` checks a prediction
written down before the lesson counts the FLOPs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import nn

from diffusion_edu.exercises.core import CheckResult, call_student, close, failed, passed
from diffusion_edu.exercises.core import check_prediction as _check_prediction
from diffusion_edu.models.autoencoder import LatentDiffusion, latent_scale_factor
from diffusion_edu.models.common import unwrap
from diffusion_edu.pretrained import load_pretrained

__all__ = [
    "solution_my_scale_factor",
    "solution_my_decode",
    "check_my_scale_factor",
    "check_my_decode",
    "verify_flops_ratio_prediction",
    "example_latents",
]

SCALE = "my_scale_factor"
DECODE = "my_decode"
FLOPS = "FLOPs per denoiser call"


# ----------------------------------------------------------------------------- solutions
def solution_my_scale_factor(latents: torch.Tensor) -> float:
    """Reference solution: ``1 / std`` of all the latents' numbers together.

    Stable Diffusion (Rombach et al. 2022, Sec. 4.3.2; ``scale_by_std``) computes
    ``1 / z.flatten().std()`` of its training latents and multiplies every latent by it, so
    the data the diffusion model learns has unit standard deviation, the scale of its noise.
    """
    return 1.0 / float(latents.flatten().std())


def solution_my_decode(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Reference solution: ``D(z / scale_factor)``: undo the scaling, then decode.

    The denoiser works on ``E(x) * scale_factor``; the decoder was trained on ``E(x)``.
    """
    inner = unwrap(model)
    return inner.autoencoder.decode(z / inner.scale_factor)


# ----------------------------------------------------------------------------- exercise 1
def example_latents(seed: int = 11) -> torch.Tensor:
    """The latents the scale-factor checker tries: ``(16, 4, 7, 7)``, each channel with its own
    spread and offset (std about 1.2, 2.0, 2.8, 3.6; means -1, 1, 2, 3), so that every usual
    slip gives its own answer."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.tensor([1.2, 2.0, 2.8, 3.6]).view(1, 4, 1, 1)
    offset = torch.tensor([-1.0, 1.0, 2.0, 3.0]).view(1, 4, 1, 1)
    return torch.randn(16, 4, 7, 7, generator=g) * spread + offset  # (B, c, h, w)


def _scale_slips(z: torch.Tensor) -> list[tuple[str, object]]:
    """What each usual slip gives for latents ``z``, ``(hint, result)``, in the order to report."""
    std = z.flatten().std()
    per_channel = z.transpose(0, 1).flatten(1).std(dim=1)  # (c,)
    return [
        (
            "that is the standard deviation itself: the scale factor is 1 / std, so that "
            "z * scale_factor has std 1.",
            std,
        ),
        ("that is 1 / variance: divide by the standard deviation, not its square.", 1 / std**2),
        (
            "that is 1 / sqrt(mean(z^2)), the root mean square: it counts the latents' mean as "
            "spread. Stable Diffusion uses the standard deviation (z.flatten().std()).",
            1 / z.square().mean().sqrt(),
        ),
        (
            "that is one factor per channel: Stable Diffusion uses one number for all the "
            "latents (1 / z.flatten().std()), so the channels keep their relative sizes.",
            1 / per_channel,
        ),
        (
            "that is 1 / the largest |z|: one extreme value decides it. Use the standard "
            "deviation of all the numbers.",
            1 / z.abs().max(),
        ),
        (
            "that is the mean over channels of 1 / std per channel: Stable Diffusion takes one "
            "std over all the numbers together.",
            (1 / per_channel).mean(),
        ),
    ]


def check_my_scale_factor(student_fn: Callable[[torch.Tensor], object]) -> CheckResult:
    """Check ``student_fn(latents) -> float`` against
    :func:`~diffusion_edu.models.latent_scale_factor` on :func:`example_latents`, and that the
    scaled latents then have std 1."""
    z = example_latents()
    got, problem = call_student(SCALE, student_fn, z.clone(), returns="one number, 1 / std")
    if problem is not None:
        return problem
    right = latent_scale_factor(z)
    number = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
    is_number = isinstance(number, numbers.Real) and not isinstance(number, bool)
    if is_number and close(number, right):
        return passed(
            SCALE,
            f"{float(number):.4g}: the library's latent_scale_factor. z * scale_factor has std "
            f"{float((z * float(number)).std()):.3f}, the noise's scale.",
        )
    hint = next((h for h, wrong in _scale_slips(z) if close(number, wrong)), None)
    if hint is not None:
        return failed(SCALE, hint)
    if not is_number:
        what = (
            f"a tensor of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else repr(got)
        )
        return failed(SCALE, f"return one number (a float), got {what[:80]}.")
    return failed(
        SCALE,
        f"for these latents (std {1 / right:.4g}) the scale factor is {right:.4g}, yours is "
        f"{float(number):.4g}: then z * scale_factor has std {float(z.std()) * float(number):.3g}, "
        "not 1.",
    )


# ----------------------------------------------------------------------------- exercise 2
def check_my_decode(
    student_fn: Callable[[nn.Module, torch.Tensor], object], model: nn.Module | None = None
) -> CheckResult:
    """Check ``student_fn(model, z) -> images`` against ``model.decode_latents(z)`` on four
    scaled latents (the scaled latents of random noise: what a sampler starts from, and any
    point the student's code might decode). ``model``: a latent model, e.g.
    ``load_pretrained("mnist-latent")[0]``, which is loaded when ``model`` is None."""
    if model is None:
        model = load_pretrained("mnist-latent")[0]
    inner = unwrap(model)
    if not isinstance(inner, LatentDiffusion):
        raise TypeError(
            f"check_my_decode needs the latent model (LatentDiffusion), got "
            f"{type(inner).__name__}: pass load_pretrained('mnist-latent')[0]."
        )
    device = next(inner.parameters()).device
    g = torch.Generator().manual_seed(5)
    z = torch.randn(4, *inner.latent_shape, generator=g).to(device)  # (B, c, h, w), scaled
    with torch.no_grad():
        right = inner.decode_latents(z)  # (B, C, H, W)
        got, problem = call_student(DECODE, student_fn, model, z.clone(), returns="the images")
        if problem is not None:
            return problem
        if not isinstance(got, torch.Tensor):
            return failed(DECODE, f"return a torch.Tensor of images, got a {type(got).__name__}.")
        if tuple(got.shape) != tuple(right.shape):
            return failed(
                DECODE,
                f"expected images of shape {tuple(right.shape)} (B, C, H, W), got "
                f"{tuple(got.shape)}. The decoder turns (B, c, h, w) latents into pixels.",
            )
        got = got.detach().float()
        s = inner.scale_factor
        slips = [
            (
                "you decoded the scaled latents as they are: the decoder was trained on E(x), "
                f"the sampler's latents are E(x) * scale_factor ({s:.3g}). Divide by "
                "scale_factor first.",
                inner.autoencoder.decode(z),
            ),
            (
                "you multiplied by scale_factor again: the latents are already scaled. Undo it: "
                "divide by scale_factor, then decode.",
                inner.autoencoder.decode(z * s),
            ),
        ]
    if close(got, right, rtol=1e-4, atol=1e-4):
        return passed(
            DECODE,
            f"D(z / scale_factor), as decode_latents does: the images a sampler's latents "
            f"decode to (scale factor {s:.3g}).",
        )
    hint = next((h for h, wrong in slips if close(got, wrong, rtol=1e-4, atol=1e-4)), None)
    if hint is not None:
        return failed(DECODE, hint)
    return failed(
        DECODE,
        f"your images differ from decode_latents' by up to {(got - right).abs().max().item():.3g} "
        "(pixels are in [-1, 1]). Divide z by model.scale_factor, then "
        "model.autoencoder.decode(...).",
    )


# ----------------------------------------------------------------------------- prediction
def verify_flops_ratio_prediction(
    answer: float | None, measured: float, values_ratio: float
) -> CheckResult:
    """Predict-then-check: how many times fewer FLOPs one call of the latent denoiser costs than
    one call of the pixel U-Net (``measured``, counted by the lesson); ``values_ratio`` is how
    many times fewer numbers it sees (784 / 196 = 4). Within 10% passes."""
    wrong = {}
    if abs(values_ratio - measured) > 0.1 * measured:
        wrong[
            f"{values_ratio:g} is how many times fewer numbers the latent model sees: the "
            "compute also depends on each network's width and depth, and the two are not the "
            "same network."
        ] = values_ratio
    if abs(values_ratio**2 - measured) > 0.1 * measured:
        wrong[
            f"{values_ratio**2:g} would hold if the cost grew with the square of the number of "
            "positions (self-attention at every resolution); these U-Nets are convolutions, "
            "whose cost grows with the positions and the channels."
        ] = values_ratio**2
    return _check_prediction(
        FLOPS,
        answer,
        measured,
        rel=0.1,
        wrong_answers=wrong,
        why=f"Counted with PyTorch's FLOP counter: {measured:.3g}x. Fewer positions make a "
        "convolution cheaper in proportion, but each network chooses its own channel widths.",
    )
