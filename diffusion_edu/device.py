"""Where code runs: the ONE place that picks a device and a precision, and the quick switch.

* :func:`pick_device`: CUDA if present, else Apple MPS, else CPU.
* :func:`autocast_dtype`: bf16 on CUDA, and on CPUs with native bf16 (AVX512-BF16 or AMX);
  fp32 elsewhere (bf16 emulated in software is slower than fp32).
* :func:`quick_mode`: the notebooks' quick switch, ``DIFFUSION_EDU_QUICK=1`` (the test run sets it).
* :func:`describe_device`: one human sentence saying what was chosen, to print aloud.
* :func:`threads_for` and :func:`cpu_threads`: the thread policy (below).

The thread policy
-----------------
PyTorch splits each CPU operation over all cores. For the course's tiny models (under
:data:`TINY_MODEL_PARAMETERS` parameters: the 2-D toy's 41k-parameter MLP, the 124k-parameter
U-Net of lesson 06's skip experiment, the 32k-parameter "tiny" U-Net of the tests) the pieces
are so small that splitting them costs more than it saves, and far more when another program
keeps one core busy, as on a student's laptop. Measured on 2 cores (AMD EPYC): a toy training
step takes 2.6-3.6 ms on one thread, 3.9-4.5 ms on two; lesson 06's skip experiment took 17 s
on one thread and 201 s on two while a background job used the other core. So the library's
own loops (training in :mod:`diffusion_edu.loop`, :func:`diffusion_edu.sample`) run a tiny
model's work inside ``with cpu_threads(1):``, and every other model on PyTorch's setting.
The setting is restored before control returns to the caller (between training steps too),
so no library call changes ``torch.get_num_threads()`` behind your back;
``torch.set_num_threads`` in your own code applies to everything else.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch
from torch import nn

__all__ = [
    "pick_device",
    "autocast_dtype",
    "quick_mode",
    "describe_device",
    "cpu_has_native_bf16",
    "cpu_model_name",
    "TINY_MODEL_PARAMETERS",
    "threads_for",
    "cpu_threads",
]

#: Models with fewer parameters than this run on one CPU thread (see the thread policy).
TINY_MODEL_PARAMETERS = 150_000

QUICK_ENV = "DIFFUSION_EDU_QUICK"
DEVICE_ENV = "DIFFUSION_EDU_DEVICE"


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA if present, else Apple MPS, else CPU.

    ``prefer`` (or the environment variable ``DIFFUSION_EDU_DEVICE``) forces a choice, e.g.
    ``"cpu"``; asking for a device that is not there raises a clear error.
    """
    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV) or None
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {choice!r} was asked for, but PyTorch sees no CUDA GPU here. "
                "Use 'cpu' (or unset DIFFUSION_EDU_DEVICE to choose automatically)."
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(
                f"device {choice!r} was asked for, but Apple MPS is not available here. "
                "Use 'cpu' (or unset DIFFUSION_EDU_DEVICE to choose automatically)."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX)."""
    if platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False  # macOS / Windows: stay on fp32 unless told otherwise


def cpu_model_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name, for measurement records ("AMD EPYC", ...): the ``model name`` line of
    ``/proc/cpuinfo`` (what ``lscpu`` shows), or the platform's processor string elsewhere.
    ``cpuinfo``: that file's text (for tests)."""
    if cpuinfo is None and platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = None
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown CPU"


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast precision for training on ``device``: bf16 where fast, else None (fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def quick_mode() -> bool:
    """True when ``DIFFUSION_EDU_QUICK`` is set to 1/true/yes (the test run's quick switch)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def describe_device(device: torch.device | str | None = None) -> str:
    """A sentence for students: which device and precision, and what that means for speed."""
    device = torch.device(device) if device is not None else pick_device()
    dtype = autocast_dtype(device)
    precision = (
        "bfloat16 mixed precision"
        if dtype == torch.bfloat16
        else ("float16 mixed precision" if dtype == torch.float16 else "float32")
    )
    if device.type == "cuda":
        where = f"CUDA GPU ({torch.cuda.get_device_name(device)})"
    elif device.type == "mps":
        where = "Apple GPU (MPS)"
    else:
        n = torch.get_num_threads()
        where = f"CPU with {n} thread{'s' if n != 1 else ''}"
    return f"Using {where}, {precision}."


def threads_for(model: object, device: torch.device | str = "cpu") -> int | None:
    """The thread policy: 1 for a tiny model on the CPU, None (PyTorch's setting) otherwise."""
    if torch.device(device).type != "cpu" or not isinstance(model, nn.Module):
        return None
    size = sum(p.numel() for p in model.parameters())
    return 1 if size < TINY_MODEL_PARAMETERS else None


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with PyTorch on ``n`` CPU threads, then restore the caller's setting.

    ``n=None`` changes nothing.
    """
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
