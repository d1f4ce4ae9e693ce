"""Lesson 10's self-checking exercises (diffusion_edu.exercises.lesson10): the checkers pass the
solutions and the library's own functions, name each usual slip, and turn a stub, a crash or a
wrong shape into a friendly verdict. (Its pictures and widgets: tests/test_viz_dit_viz.py.)"""

from __future__ import annotations

import pytest
import torch

from diffusion_edu.exercises.lesson10 import (
    check_my_attention_cost,
    check_my_patchify,
    solution_my_attention_cost,
    solution_my_patchify,
    verify_patch_halving_prediction,
)
from diffusion_edu.models import DiT, DiTConfig
from diffusion_edu.models.dit import patchify, unpatchify
from diffusion_edu.viz.dit_viz import dit_costs


# ============================================================================= exercise 1
def test_patchify_solution_matches_the_library_and_round_trips() -> None:
    x = torch.randn(3, 2, 12, 8)
    torch.testing.assert_close(solution_my_patchify(x, 4), patchify(x, 4))
    square = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(unpatchify(solution_my_patchify(square, 2), 2, 3), square)
    assert check_my_patchify(solution_my_patchify).ok
    assert check_my_patchify(patchify).ok


def test_patchify_is_the_dits_patch_embedding_conv() -> None:
    """The exercise's claim: the DiT's Conv2d(C, D, p, stride=p) is Linear(C*p*p, D) on the
    patchify rows (so the order of the numbers inside a patch matters)."""
    model = DiT(DiTConfig(image_size=8, in_channels=3, patch_size=2, hidden_size=16, depth=1,
                          num_heads=2))  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    conv = model.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
    weight = model.patch_embed.weight.flatten(1)  # (D, C*p*p)
    linear = solution_my_patchify(x, 2) @ weight.T + model.patch_embed.bias
    torch.testing.assert_close(linear, conv, rtol=1e-5, atol=1e-5)


def _channel_last(x: torch.Tensor, p: int) -> torch.Tensor:
    B, C, H, W = x.shape
    grid = x.reshape(B, C, H // p, p, W // p, p)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(B, -1, C * p * p)


def _column_order(x: torch.Tensor, p: int) -> torch.Tensor:
    B, C, H, W = x.shape
    grid = x.reshape(B, C, H // p, p, W // p, p)
    return grid.permute(0, 4, 2, 1, 3, 5).reshape(B, -1, C * p * p)


def _plain_reshape(x: torch.Tensor, p: int) -> torch.Tensor:
    B, C, H, W = x.shape
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def _unfold(x: torch.Tensor, p: int) -> torch.Tensor:
    """A correct alternative: F.unfold lists each patch channel first, then rows, columns."""
    return torch.nn.functional.unfold(x, kernel_size=p, stride=p).transpose(1, 2)


@pytest.mark.parametrize(
    ("slip", "hint"),
    [
        (_channel_last, "channel last"),
        (_column_order, "column by column"),
        (_plain_reshape, "plain reshape"),
        (lambda x, p: patchify(x, p)[:, :-1], "tokens have shape"),
        (lambda x, p: patchify(x, p).numpy(), "return a tensor"),
        (lambda x, p: patchify(x, p) * 1.01, "numbers are not where patchify puts them"),
    ],
)
def test_patchify_checker_names_each_slip(slip, hint: str) -> None:
    verdict = check_my_patchify(slip)
    assert not verdict.ok
    assert hint in verdict.message


def test_patchify_checker_accepts_another_correct_way() -> None:
    assert check_my_patchify(_unfold).ok


def test_patchify_checker_turns_a_stub_or_crash_into_a_verdict() -> None:
    def stub(x, p):
        raise NotImplementedError

    assert "not written yet" in check_my_patchify(stub).message
    assert "raised ZeroDivisionError" in check_my_patchify(lambda x, p: 1 / 0).message
    assert "returned None" in check_my_patchify(lambda x, p: None).message


# ============================================================================= exercise 2
def test_attention_cost_solution_matches_dit_costs() -> None:
    for p, d, depth in ((4, 32, 2), (2, 16, 1), (7, 48, 3)):
        costs = dit_costs(p, d, depth, num_heads=4 if d % 4 == 0 else 1)
        assert solution_my_attention_cost(28, p, d, depth) == (costs.tokens,
                                                                costs.attention_flops)  # fmt: skip
    assert check_my_attention_cost(solution_my_attention_cost).ok


def test_attention_cost_counts_what_pytorchs_counter_counts() -> None:
    """Independent of dit_costs: count the two N x N products of one attention layer with
    PyTorch's FLOP counter on q, k, v of the DiT's shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    n, d, heads = (28 // 4) ** 2, 64, 4
    q, k, v = (torch.randn(1, heads, n, d // heads) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        weights = (q @ k.transpose(-1, -2)).softmax(-1)
        weights @ v
    assert counter.get_total_flops() == solution_my_attention_cost(28, 4, d, 1)[1]


@pytest.mark.parametrize(
    ("slip", "hint"),
    [
        (lambda s, p, d, depth: ((s // p) ** 2, depth * 2 * (s // p) ** 4 * d), "multiply-add"),
        (lambda s, p, d, depth: ((s // p) ** 2, 4 * (s // p) ** 4 * d), "one block"),
        (lambda s, p, d, depth: ((s // p) ** 2, depth * 4 * (s // p) ** 2 * d), "not N^2"),
        (lambda s, p, d, depth: (s // p, depth * 4 * (s // p) ** 2 * d), "ONE side"),
        (lambda s, p, d, depth: ((s // p) ** 2, 1), "expected"),
        (lambda s, p, d, depth: (s // p) ** 2, "two numbers"),
    ],
)
def test_attention_cost_checker_names_each_slip(slip, hint: str) -> None:
    verdict = check_my_attention_cost(slip)
    assert not verdict.ok
    assert hint in verdict.message


# ============================================================================= prediction
def test_patch_halving_prediction_is_checked_against_the_measured_ratio() -> None:
    measured = dit_costs(2, 64, 6).attention_flops / dit_costs(4, 64, 6).attention_flops
    assert measured == pytest.approx(16.0)
    assert verify_patch_halving_prediction(16, measured).ok
    assert "N^2" in verify_patch_halving_prediction(4, measured).message
    assert "4x the patches" in verify_patch_halving_prediction(2, measured).message
    assert "write your prediction" in verify_patch_halving_prediction(..., measured).message
    assert not verify_patch_halving_prediction(100, measured).ok
