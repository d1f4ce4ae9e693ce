"""Is this machine ready for the course? A short report for the welcome notebook."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass

import torch

from diffusion_edu.device import describe_device, pick_device

__all__ = ["CheckItem", "environment_report", "print_environment_report"]


def required_pins() -> dict[str, str]:
    """The runtime pins from the installed package's metadata (i.e. from pyproject.toml)."""
    pins = {}
    try:
        requirements = importlib.metadata.requires("diffusion_edu") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for req in requirements:
        if "extra ==" in req or "==" not in req:
            continue
        name, version = req.split(";")[0].split("==")
        pins[name.strip()] = version.strip()
    return pins


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str


def _version_of(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None


def environment_report() -> list[CheckItem]:
    """Python version, required packages (and whether they match the tested pins), device, data."""
    items = []
    py_ok = sys.version_info >= (3, 10)
    items.append(CheckItem("python", py_ok, f"{platform.python_version()} (need 3.10 or newer)"))
    pins = required_pins() or {
        m: "?" for m in ("torch", "numpy", "matplotlib", "ipywidgets", "tqdm")
    }
    for module, tested in pins.items():
        found = _version_of(module)
        if found is None:
            items.append(CheckItem(module, False, f"missing: run `make lab` (installs {tested})"))
        else:
            same = tested == "?" or found.split("+")[0] == tested
            note = "" if same else f" (the course is tested with {tested}; it will probably work)"
            items.append(CheckItem(module, True, found + note))
    device = pick_device()
    items.append(CheckItem("device", True, describe_device(device)))
    try:
        from diffusion_edu.data import load_bundled_mnist

        images, _ = load_bundled_mnist("train")
        items.append(CheckItem("data", True, f"{len(images):,} bundled MNIST training digits"))
    except Exception as err:  # any failure here is worth showing, not crashing on
        items.append(CheckItem("data", False, f"bundled digits not readable: {err}"))
    items.append(CheckItem("threads", True, f"PyTorch uses {torch.get_num_threads()} CPU threads"))
    return items


def print_environment_report() -> bool:
    """Print the report, one line per item, and return True if everything needed is there."""
    items = environment_report()
    for item in items:
        mark = "ok  " if item.ok else "WARN"
        print(f"[{mark}] {item.name:<11} {item.detail}")
    all_ok = all(item.ok for item in items)
    print("\nAll set: open lesson 01." if all_ok else "\nSomething is missing: see WARN above.")
    return all_ok
