"""Where code runs (diffusion_edu.device): the device choice, the precision, the quick switch,
the sentence said aloud, and the thread policy (tiny models run on one CPU thread, and the
caller's thread count is always restored)."""

from __future__ import annotations

import platform

import pytest
import torch
from torch import nn

from diffusion_edu.device import (
    TINY_MODEL_PARAMETERS,
    autocast_dtype,
    cpu_has_native_bf16,
    cpu_threads,
    describe_device,
    pick_device,
    quick_mode,
    threads_for,
)


@pytest.fixture
def restore_threads():
    """Put back the thread count this test found, whatever the test does."""
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def _model_with(n_parameters: int) -> nn.Module:
    return nn.Linear(n_parameters - 1, 1)  # weights n - 1, bias 1


# ----------------------------------------------------------------------------- device, precision
def test_pick_device_follows_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIFFUSION_EDU_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    monkeypatch.setenv("DIFFUSION_EDU_DEVICE", "meta")
    assert pick_device("cpu") == torch.device("cpu")  # the argument wins over the variable
    assert pick_device() == torch.device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFUSION_EDU_DEVICE", raising=False)
    with pytest.raises(RuntimeError, match="no CUDA GPU.*'cpu'"):
        pick_device("cuda")


def test_autocast_is_bf16_only_where_the_cpu_computes_it_natively() -> None:
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype("cpu") == expected
    assert autocast_dtype(torch.device("cpu")) == expected
    assert autocast_dtype("meta") is None  # neither a GPU nor a CPU: fp32


@pytest.mark.parametrize(
    ("value", "quick"),
    [("1", True), ("true", True), (" Yes ", True), ("on", True), ("0", False), ("", False)],
)
def test_quick_mode_reads_diffusion_edu_quick(
    monkeypatch: pytest.MonkeyPatch, value: str, quick: bool
) -> None:
    monkeypatch.setenv("DIFFUSION_EDU_QUICK", value)
    assert quick_mode() is quick


def test_quick_mode_is_off_when_the_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFUSION_EDU_QUICK", raising=False)
    assert quick_mode() is False


def test_describe_device_names_the_cpu_threads_and_precision(restore_threads: int) -> None:
    precision = "bfloat16 mixed precision" if cpu_has_native_bf16() else "float32"
    torch.set_num_threads(1)
    assert describe_device("cpu") == f"Using CPU with 1 thread, {precision}."
    torch.set_num_threads(2)
    assert describe_device(torch.device("cpu")) == f"Using CPU with 2 threads, {precision}."


# ----------------------------------------------------------------------------- thread policy
def test_threads_for_gives_one_thread_to_a_tiny_model_on_the_cpu_only() -> None:
    tiny = _model_with(TINY_MODEL_PARAMETERS - 1)
    big = _model_with(TINY_MODEL_PARAMETERS)
    assert sum(p.numel() for p in tiny.parameters()) == TINY_MODEL_PARAMETERS - 1
    assert threads_for(tiny) == 1
    assert threads_for(tiny, "cpu") == threads_for(tiny, torch.device("cpu")) == 1
    assert threads_for(big, "cpu") is None  # PyTorch's own setting
    assert threads_for(tiny, "cuda") is None
    assert threads_for(tiny, torch.device("mps")) is None


def test_cpu_threads_sets_the_count_inside_and_restores_it_after(restore_threads: int) -> None:
    torch.set_num_threads(2)
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_cpu_threads_restores_the_count_when_the_block_raises(restore_threads: int) -> None:
    torch.set_num_threads(2)
    with pytest.raises(KeyError, match="boom"), cpu_threads(1):
        assert torch.get_num_threads() == 1
        raise KeyError("boom")
    assert torch.get_num_threads() == 2


def test_cpu_threads_none_changes_nothing(restore_threads: int) -> None:
    torch.set_num_threads(2)
    with cpu_threads(None):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_cpu_model_name_reads_the_model_name_line() -> None:
    from diffusion_edu.device import cpu_model_name

    info = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n"
    )
    assert cpu_model_name(info) == "AMD EPYC 7B13"
    assert cpu_model_name("processor\t: 0\n") == (platform.processor() or "unknown CPU")
    assert cpu_model_name()  # this machine: some non-empty name
