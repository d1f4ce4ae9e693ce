"""Lesson 10 exercises: cutting images into tokens by hand, and what tokens cost.

1. ``my_patchify(x, p) -> tokens``: images ``(B, C, H, W)`` to ``(B, N, C * p * p)``, one row
   per p x p patch, in the library's order (:func:`diffusion_edu.models.dit.patchify`: patches row
   by row, each flattened channel first, then its rows, then its columns).
2. ``my_attention_cost(image_size, patch_size, hidden_size, depth) -> (tokens, flops)``: the
   number of tokens N a DiT reads and the FLOPs of its attention products (q k^T and
   weights @ v, both N x N x D, a multiply-add counting 2, in every block), as
   :func:`diffusion_edu.viz.dit_viz.dit_costs` counts them (Peebles & Xie 2023, Sec. 5,
   "Scaling the patch size").

The checkers compare with the library and name the usual slips by computing what each slip
would give. :func:`verify_patch_halving_prediction` checks a prediction written down before the
lesson measures what halving the patch size does to the attention's FLOPs.
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
from diffusion_edu.models.dit import patchify

__all__ = [
    "solution_my_patchify",
    "solution_my_attention_cost",
    "check_my_patchify",
    "check_my_attention_cost",
    "verify_patch_halving_prediction",
]

PATCHIFY = "my_patchify"
COST = "my_attention_cost"
HALVING = "attention FLOPs when p halves"


# ----------------------------------------------------------------------------- solutions
def solution_my_patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Reference solution: split H and W into (H / p, p) and (W / p, p), bring the two grid
    axes to the front, and flatten each patch (channel, row, column)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)


def solution_my_attention_cost(
    image_size: int, patch_size: int, hidden_size: int, depth: int
) -> tuple[int, int]:
    """Reference solution: N = (image_size / p)^2 tokens; per block two N x N x D matrix
    products (q k^T, then the weights times v), 2 FLOPs per multiply-add."""
    tokens = (image_size // patch_size) ** 2
    return tokens, depth * 2 * (2 * tokens * tokens * hidden_size)


# ----------------------------------------------------------------------------- exercise 1
#: (shape, p) pairs the patchify checker tries: a digit, several channels, a rectangle.
_PATCHIFY_CASES = (((2, 1, 28, 28), 4), ((2, 3, 8, 8), 2), ((1, 4, 7, 7), 1), ((1, 2, 6, 4), 2))


def _patchify_slips(x: torch.Tensor, p: int) -> dict[str, torch.Tensor]:
    """What each usual slip gives for images ``x`` and patch size ``p``: hint -> result."""
    B, C, H, W = x.shape
    grid = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, h, p, w, p)
    N, P = (H // p) * (W // p), C * p * p
    return {
        "each patch holds the right numbers, but channel last (row, column, channel): the "
        "library flattens channel first, as a Conv2d(C, D, p, stride=p) weight (D, C, p, p) "
        "does, so that the patch embedding is exactly that convolution.": grid.permute(
            0, 2, 4, 3, 5, 1
        ).reshape(B, N, P),
        "the patches are numbered column by column: number them row by row (token "
        "n = row * (W / p) + col), the reading order.": grid.permute(0, 4, 2, 1, 3, 5).reshape(
            B, N, P
        ),
        "inside each patch the rows and columns are swapped: flatten each patch row by row, "
        "(channel, row, column).": grid.permute(0, 2, 4, 1, 5, 3).reshape(B, N, P),
        "that is a plain reshape of the image: consecutive numbers of one image row are not "
        "one patch. Split H and W into (H / p, p) and (W / p, p) first, then move the grid "
        "axes to the front with permute.": x.reshape(B, N, P),
    }


def check_my_patchify(student_fn: Callable[[torch.Tensor, int], object]) -> CheckResult:
    """Check ``student_fn(x, p) -> (B, N, C*p*p)`` against the library's
    :func:`~diffusion_edu.models.dit.patchify` on a few shapes (one and several channels, p = 1,
    2, 4, a non-square image)."""
    g = torch.Generator().manual_seed(10)
    for shape, p in _PATCHIFY_CASES:
        x = torch.randn(shape, generator=g)
        got, problem = call_student(PATCHIFY, student_fn, x.clone(), p, returns="the tokens")
        if problem is not None:
            return problem
        right = patchify(x, p)
        where = f"for x of shape {shape} and p = {p}"
        if not isinstance(got, torch.Tensor):
            return failed(PATCHIFY, f"return a tensor, got {type(got).__name__} ({where}).")
        if tuple(got.shape) != tuple(right.shape):
            B, C, H, W = shape
            return failed(
                PATCHIFY,
                f"{where} the tokens have shape {tuple(right.shape)}: (B, N, C*p*p) with "
                f"N = ({H}/{p}) * ({W}/{p}) = {right.shape[1]} patches of {C}*{p}*{p} = "
                f"{right.shape[2]} numbers; yours has {tuple(got.shape)}.",
            )
        if close(got, right):
            continue
        hint = first_matching_hint(got, _patchify_slips(x, p))
        if hint is not None:
            return failed(PATCHIFY, f"{where}: {hint}")
        return failed(
            PATCHIFY,
            f"{where} the shape is right but the numbers are not where patchify puts them: "
            "token n is the patch at row n // (W / p), column n % (W / p), flattened "
            "(channel, row, column).",
        )
    return passed(
        PATCHIFY,
        "same tokens as the library's patchify for every shape tried. A DiT's patch embedding "
        "is one Linear(C*p*p, D) applied to each of these rows.",
    )


# ----------------------------------------------------------------------------- exercise 2
#: (image_size, patch_size, hidden_size, depth) cases the cost checker tries.
_COST_CASES = ((28, 4, 64, 6), (28, 2, 64, 6), (7, 1, 48, 4), (32, 2, 1152, 28))


def _cost_slips(image_size: int, p: int, d: int, depth: int) -> dict[str, tuple[int, int]]:
    n = (image_size // p) ** 2
    right = depth * 4 * n * n * d
    return {
        "the tokens are right; the FLOPs count a multiply-add as 1. The course (and Peebles & "
        "Xie's GFLOPs) count it as 2: an N x M by M x K product costs 2 N M K.": (n, right // 2),
        "the tokens are right; the FLOPs count one of the two N x N products: there are two "
        "per block (q k^T, and the attention weights times v).": (n, right // 2),
        "the tokens are right; the FLOPs are those of one block: multiply by the depth.": (
            n,
            right // depth,
        ),
        "the tokens are right; the FLOPs grow with N, not N^2: every token attends to every "
        "token, N x N pairs, each a dot product of length D.": (n, depth * 4 * n * d),
        "the number of tokens is the patches along ONE side: the grid is (image_size / p) x "
        "(image_size / p), so N = (image_size / p)^2.": (
            image_size // p,
            depth * 4 * (image_size // p) ** 2 * d,
        ),
    }


def check_my_attention_cost(
    student_fn: Callable[[int, int, int, int], object],
) -> CheckResult:
    """Check ``student_fn(image_size, patch_size, hidden_size, depth) -> (tokens, flops)``
    against :func:`solution_my_attention_cost` (the count that
    :func:`~diffusion_edu.viz.dit_viz.dit_costs` uses and tests against PyTorch's FLOP
    counter) on our digit DiT, its p = 2 version, a latent DiT and DiT-XL/2 on the 32 x 32
    latents of a 256 x 256 image."""
    for case in _COST_CASES:
        got, problem = call_student(COST, student_fn, *case, returns="the pair (tokens, flops)")
        if problem is not None:
            return problem
        right = solution_my_attention_cost(*case)
        where = "image_size {}, p = {}, D = {}, depth {}".format(*case)
        if not (isinstance(got, tuple | list) and len(got) == 2):
            return failed(COST, f"return two numbers, (tokens, flops); got {got!r:.80} ({where}).")
        if close(got, right, rtol=1e-9, atol=0.5):
            continue
        hint = first_matching_hint(got, _cost_slips(*case), rtol=1e-9, atol=0.5)
        if hint is not None:
            return failed(COST, f"{where}: {hint}")
        return failed(
            COST,
            f"{where}: expected {right[0]:,} tokens and {right[1]:,} FLOPs, got {got!r:.80}.",
        )
    n, flops = solution_my_attention_cost(*_COST_CASES[-1])
    return passed(
        COST,
        f"right for all four. The paper's largest model, DiT-XL/2, reads the 32 x 32 x 4 latents "
        f"of a 256 x 256 image with p = 2: {n:,} tokens, and its attention products cost "
        f"{flops / 1e9:.1f} GFLOPs per image (28 blocks, D = 1152; Peebles & Xie 2023, Table 1).",
    )


# ----------------------------------------------------------------------------- predict-then-check
def verify_patch_halving_prediction(answer: float | None, measured: float) -> CheckResult:
    """Predict-then-check: by how many times do the attention's FLOPs grow when the patch size
    halves (same image, same width and depth)? ``measured`` is the lesson's ratio from
    :func:`~diffusion_edu.viz.dit_viz.dit_costs`. Within 10% passes."""
    return _check_prediction(
        HALVING,
        answer,
        measured,
        rel=0.1,
        wrong_answers={
            "2x is the change in the patch's side. The tokens come from the whole grid: half "
            "the side gives 4x the patches, and attention pairs every token with every "
            "token.": 2.0,
            "4x is the change in the number of tokens N; attention compares every token with "
            "every token, so its FLOPs grow as N^2.": 4.0,
        },
        why=f"Counted: {measured:.3g}x. Half the side, 4x the tokens N, and the two attention "
        "products cost 2 N^2 D FLOPs each, so 16x. The rest of a block (the linear layers) "
        "costs per token, so it grows 4x, and the parameters hardly change (Peebles & Xie "
        "2023, Sec. 5, 'Scaling the patch size').",
    )
