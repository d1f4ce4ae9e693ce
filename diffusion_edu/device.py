"""Where code runs: the ONE place that picks a device and a precision, and the quick switch.

* :func:`pick_device`: CUDA if present, else Apple MPS, else CPU.
* :func:`autocast_dtype`: bf16 on CUDA, and on CPUs with native bf16 (AVX512-BF16 or AMX);
  fp32 elsewhere (bf16 emulated in software is slower than fp32).
* :func:`quick_mode`: the notebooks' quick switch, ``DIFFUSION_EDU_QUICK=1`` (the test run sets it).
* :func:`describe_device`: one human sentence saying what was chosen, to print aloud.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

import torch

__all__ = ["pick_device", "autocast_dtype", "quick_mode", "describe_device", "cpu_has_native_bf16"]

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
