"""Measured training recipes for the bundled digits: which model, which settings, how long.

Two recipes, both a class-conditional U-Net on the 4,500 bundled training digits with the
cosine schedule, AdamW with warm-up and cosine decay, EMA 0.995, label dropout 0.1 and the
Min-SNR loss weighting (:func:`~diffusion_edu.training.diffusion_loss`):

* ``"five_minutes"``: the small U-Net (0.2M parameters), 1,500 steps. Four to five minutes on
  a 2-core CPU; its digits score ~99% class agreement (docs/performance.md).
* ``"pretrained"``: the same model trained longer: the recipe of the model that ships in
  ``data/pretrained/`` (:func:`~diffusion_edu.load_pretrained`).

:func:`digits_recipe` picks the one a lesson should run on this machine, and says why.
Each recipe can print the equivalent ``python -m diffusion_edu train`` command, so the
command line and the notebooks train exactly the same thing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from diffusion_edu.device import autocast_dtype, pick_device, quick_mode
from diffusion_edu.models.unet import UNetConfig
from diffusion_edu.training import TrainConfig

__all__ = ["Recipe", "RECIPES", "MODEL_SIZES", "digits_recipe", "QUICK_STEPS"]

RecipeName = Literal["five_minutes", "pretrained"]
QUICK_STEPS = 30  # quick mode (the test run): same code path, a few steps only

#: Model presets for ``--model-size`` (the number of classes is added for the data set).
MODEL_SIZES: dict[str, UNetConfig] = {
    # ~32k parameters: for tests and smoke runs only (it learns blobs, not digits).
    "tiny": UNetConfig(
        base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False, groups=4
    ),
    # ~0.2M parameters: rough digits in a few CPU minutes.
    "small": UNetConfig(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1),
    # ~1.27M parameters: the course's default U-Net.
    "default": UNetConfig(),
    # ~5M parameters: for a GPU.
    "large": UNetConfig(base_channels=64),
}

SMALL_UNET = dataclasses.replace(MODEL_SIZES["small"], num_classes=10)  # 200,433 parameters


@dataclass(frozen=True)
class Recipe:
    """A model, a schedule and a :class:`~diffusion_edu.TrainConfig`, with what to expect."""

    name: str
    model_config: UNetConfig
    schedule: Literal["linear", "cosine", "sigmoid"]
    train_config: TrainConfig
    expect: str  # measured result, in words

    def cli_command(self, out: str = "runs/mnist") -> str:
        """The ``python -m diffusion_edu train`` command that trains exactly this."""
        c = self.train_config
        size = next(
            (k for k, v in MODEL_SIZES.items()
             if dataclasses.replace(v, num_classes=self.model_config.num_classes)
             == self.model_config),
            None,
        )  # fmt: skip
        if size is None:
            raise ValueError("cli_command: this model has no --model-size preset.")
        return (
            f"python -m diffusion_edu train --out {out} --model-size {size} --steps {c.steps} "
            f"--schedule {self.schedule} --batch-size {c.batch_size} --lr {c.lr:g} "
            f"--warmup-steps {c.warmup_steps} --ema-decay {c.ema_decay:g} "
            f"--label-dropout {c.label_dropout:g} --min-snr-gamma {c.min_snr_gamma:g} "
            f"--seed {c.seed}"
        )


_COMMON = TrainConfig(
    batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.995, label_dropout=0.1,
    min_snr_gamma=5.0, seed=0,
)  # fmt: skip

RECIPES: dict[str, Recipe] = {
    "five_minutes": Recipe(
        name="five_minutes",
        model_config=SMALL_UNET,
        schedule="cosine",
        train_config=dataclasses.replace(_COMMON, steps=1500),
        expect="4-5 minutes on a 2-core CPU (bf16); ~99% class agreement at guidance 2",
    ),
    "pretrained": Recipe(
        name="pretrained",
        model_config=SMALL_UNET,
        schedule="cosine",
        train_config=dataclasses.replace(_COMMON, steps=3000),
        expect="about 8 minutes on a 2-core CPU, seconds on a GPU: the shipped model",
    ),
}


def digits_recipe(
    device: torch.device | str | None = None, quick: bool | None = None
) -> tuple[Recipe, str]:
    """The recipe to run here and a sentence saying what was chosen and why.

    On a GPU the longer ``"pretrained"`` recipe (it takes seconds there); on a CPU or Apple
    GPU the ``"five_minutes"`` one; in quick mode (``DIFFUSION_EDU_QUICK=1``, the test run)
    the five-minute recipe cut to :data:`QUICK_STEPS` steps.
    """
    device = pick_device(device)
    quick = quick_mode() if quick is None else quick
    if quick:
        recipe = RECIPES["five_minutes"]
        short = dataclasses.replace(recipe.train_config, steps=QUICK_STEPS, warmup_steps=10)
        recipe = dataclasses.replace(recipe, train_config=short, expect="blobs, not digits yet")
        return recipe, (
            f"Quick mode: the five-minute recipe cut to {QUICK_STEPS} steps (the code path "
            "is the same; the digits will not be)."
        )
    if device.type == "cuda":
        recipe = RECIPES["pretrained"]
        why = "A CUDA GPU is here, so the longer recipe of the shipped model"
    else:
        recipe = RECIPES["five_minutes"]
        where = "an Apple GPU" if device.type == "mps" else "the CPU"
        why = f"Training on {where}, so the five-minute recipe"
    c = recipe.train_config
    note = ""
    if device.type == "cpu" and autocast_dtype(device) is None:
        note = (
            " This CPU has no native bfloat16, so it trains in float32: expect about 1.6x "
            "longer (set USE_PRETRAINED = True to skip training)."
        )
    return recipe, f"{why}: {c.steps:,} steps of batch {c.batch_size} ({recipe.expect}).{note}"
