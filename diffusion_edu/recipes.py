"""Measured training recipes for the bundled digits: which model, which settings, how long.

All are class-conditional U-Nets on the 4,500 bundled training digits with the cosine
schedule, AdamW with warm-up and cosine decay, EMA 0.995, label dropout 0.1 and the Min-SNR
loss weighting (:class:`~diffusion_edu.training.DiffusionLoss`):

* ``"two_minutes"``: the U-Net on 2 x 2 patches (``MODEL_SIZES["fast"]``, 0.2M parameters),
  batch 32, up to 2,000 steps **within a budget of** :data:`TWO_MINUTE_BUDGET` **minutes**, sampled
  with DDIM-50 at eta = 1 and guidance 2 (``recipe.sampling``). Measured from a cold start on a
  2-core CPU without native bfloat16: the whole command under 3 minutes, >= 95% class agreement
  (``data/results/two_minutes.json``, ``scripts/measure_two_minutes.py``). The one lessons
  run on a CPU.
* ``"five_minutes"``: the small U-Net (0.2M parameters), up to 1,500 steps **within a budget
  of** :data:`FIVE_MINUTE_BUDGET` **minutes** of training. On a 2-core CPU with native
  bfloat16 all 1,500 steps fit (~99% class agreement); on a slower CPU the loop fits fewer
  steps into the same minutes and says what quality to expect (:data:`STEPS_VS_QUALITY`).
* ``"pretrained"``: the same model trained for 3,000 steps: the recipe of the model that ships
  in ``data/pretrained/`` (:func:`~diffusion_edu.load_pretrained`).

:func:`digits_recipe` picks the one a lesson should run on this machine, and says why.
Each recipe can print the equivalent ``python -m diffusion_edu train`` command, so the
command line and the notebooks train exactly the same thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from diffusion_edu.device import autocast_dtype, pick_device, quick_mode
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.models.dit import DiTConfig
from diffusion_edu.models.unet import UNet, UNetConfig
from diffusion_edu.pretrained import pretrained_info, sampling_flags
from diffusion_edu.schedules import make_schedule
from diffusion_edu.text import PROMPT_LENGTH, VOCABULARY, caption_dataset
from diffusion_edu.training import DiffusionLoss

__all__ = [
    "Recipe",
    "RECIPES",
    "MODEL_SIZES",
    "DIT_SIZES",
    "LATENT_DIT_SIZES",
    "LATENT_UNET",
    "digits_recipe",
    "TEXT_UNET",
    "text_trainer",
    "QUICK_STEPS",
    "FIVE_MINUTE_BUDGET",
    "TWO_MINUTE_BUDGET",
    "FAST_UNET",
    "STEPS_VS_QUALITY",
    "expected_quality",
    "expectation_for",
    "recipe_for",
]

QUICK_STEPS = 12  # quick mode (the test run): same code path, a few steps only
FIVE_MINUTE_BUDGET = 5.0  # minutes of training steps; start-up and snapshots come on top
TWO_MINUTE_BUDGET = 2.9  # the two-minute recipe's: the whole command stays under 3 minutes
TWO_MINUTE_STEPS = 2000  # at most; on a 2-core CPU without bf16 about this many fit

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
    # ~0.2M parameters on 2 x 2 patches (no full-resolution level, no attention): 2.5-3x
    # faster steps than "small" on a CPU; the two-minute recipe's model.
    "fast": UNetConfig(
        base_channels=32, channel_mults=(1, 1), num_res_blocks=1, attention=False, patch_size=2
    ),
    # ~1.75M parameters on 2 x 2 patches: 48 and 96 channels at 14x14 and 7x7, two residual
    # blocks per level, attention at 7x7. On a 2-core CPU a pass costs about 2x the small
    # U-Net's (8.7x the parameters); tried for issue 12 (docs/performance.md).
    "patched": UNetConfig(
        base_channels=48, channel_mults=(1, 2), num_res_blocks=2, attention=True, patch_size=2
    ),
}

#: Diffusion Transformer presets for ``--model dit --model-size ...`` (Peebles & Xie 2023, on
#: 28 x 28 pixels with 4 x 4 patches: 49 tokens). Parameter counts with 10 classes.
DIT_SIZES: dict[str, DiTConfig] = {
    # ~12k parameters: for tests and smoke runs only.
    "tiny": DiTConfig(hidden_size=16, depth=2, num_heads=2),
    # ~0.22M parameters: about the small U-Net's size (0.20M).
    "small": DiTConfig(hidden_size=48, depth=5, num_heads=4),
    # ~0.47M parameters.
    "default": DiTConfig(),
    # ~2.4M parameters: for a GPU.
    "large": DiTConfig(hidden_size=128, depth=8, num_heads=4),
}

#: Denoisers on the shipped autoencoder's 7 x 7 x 4 latents (lessons 10 and 11): a DiT with
#: patch size 1 reads each latent pixel as one token (49 tokens), as the paper's DiTs read
#: Stable Diffusion's latents (Peebles & Xie 2023, Sec. 3.1). ``"default"`` is the shipped
#: ``mnist-dit``'s denoiser; the three sizes are lesson 10's scaling record
#: (scripts/measure_dit_scaling.py). Parameter counts with 10 classes.
LATENT_DIT_SIZES: dict[str, DiTConfig] = {
    # 61,604 parameters.
    "tiny": DiTConfig(
        image_size=7,
        in_channels=4,
        patch_size=1,
        hidden_size=32,
        depth=3,
        num_heads=2,
        num_classes=10,
    ),  # fmt: skip
    # 179,140 parameters.
    "small": DiTConfig(
        image_size=7,
        in_channels=4,
        patch_size=1,
        hidden_size=48,
        depth=4,
        num_heads=4,
        num_classes=10,
    ),  # fmt: skip
    # 466,052 parameters: mnist-dit.
    "default": DiTConfig(image_size=7, in_channels=4, patch_size=1, num_classes=10),
}
#: The shipped ``mnist-latent``'s denoiser: 7 x 7 -> 4 x 4, no attention (496,228 parameters).
LATENT_UNET = UNetConfig(
    image_size=7, in_channels=4, base_channels=32, channel_mults=(1, 2), num_res_blocks=1,
    attention=False, num_classes=10,
)  # fmt: skip

SMALL_UNET = dataclasses.replace(MODEL_SIZES["small"], num_classes=10)  # 200,433 parameters
FAST_UNET = dataclasses.replace(MODEL_SIZES["fast"], num_classes=10)  # 202,276 parameters
#: Lesson 09's text-conditioned model: the small U-Net reading a prompt through a one-layer
#: text encoder and cross-attention instead of a label (266,737 parameters).
TEXT_UNET = dataclasses.replace(
    MODEL_SIZES["small"], text_vocab_size=len(VOCABULARY), text_length=PROMPT_LENGTH,
    text_dim=64, text_layers=1,
)  # fmt: skip

#: The recipe search's measurements of the five-minute recipe trained for exactly this many
#: steps (the learning rate decaying to 0 at the last one): steps -> (class agreement,
#: Frechet distance), 500 samples, DDIM-50, guidance 2, seed 0 (docs/performance.md; 300-600
#: steps measured in float32 on a 2-core AMD EPYC without bf16, 1,000-3,000 in bf16).
STEPS_VS_QUALITY: dict[int, tuple[float, float]] = {
    300: (0.666, 5.78),
    450: (0.840, 2.28),
    600: (0.892, 1.32),
    1000: (0.966, 0.60),
    1500: (0.990, 0.62),
    3000: (0.998, 0.69),
}


def expected_quality(steps: int) -> str:
    """What the five-minute recipe's measured table says ``steps`` steps give, in words."""
    lower = max((s for s in STEPS_VS_QUALITY if s <= steps), default=None)
    upper = min((s for s in STEPS_VS_QUALITY if s >= steps), default=None)
    rows = sorted({s for s in (lower, upper) if s is not None})
    found = " and ".join(f"{STEPS_VS_QUALITY[s][0]:.1%} after {s:,} steps" for s in rows)
    below = "less than " if lower is None else ""
    return (
        "Quality to expect (share of digits read as the digit asked for, guidance 2, "
        f"measured with this recipe): {below}{found}."
    )


def recipe_for(model_config: UNetConfig, loss: DiffusionLoss, config: TrainConfig) -> Recipe | None:
    """The recipe with this model, loss and optimiser settings (any length, budget or seed),
    or None: what a run from the command line was, so it can be told what to expect."""
    settings = ("batch_size", "lr", "warmup_steps", "min_lr", "weight_decay", "grad_clip",
                "ema_decay")  # fmt: skip
    for recipe in RECIPES.values():
        if (
            model_config == recipe.model_config
            and loss == recipe.loss()
            and all(getattr(config, k) == getattr(recipe.train_config, k) for k in settings)
        ):
            return recipe
    return None


def expectation_for(
    model_config: UNetConfig, loss: DiffusionLoss, config: TrainConfig
) -> Callable[[int], str] | None:
    """:func:`expected_quality` if these are the five-minute recipe's model, loss and optimiser
    settings (any length, budget or seed), else None: the table says nothing about other runs."""
    recipe = recipe_for(model_config, loss, config)
    same = recipe is not None and recipe.name in ("five_minutes", "pretrained")
    return expected_quality if same else None


@dataclass(frozen=True)
class Recipe:
    """A model, a schedule, the loop's :class:`~diffusion_edu.TrainConfig` and the loss's
    settings, with what to expect."""

    name: str
    model_config: UNetConfig
    schedule: Literal["linear", "cosine", "sigmoid"]
    train_config: TrainConfig
    min_snr_gamma: float
    cond_dropout: float
    expect: str  # measured result, in words
    #: ``sample()`` keyword arguments the recipe's quality was measured with (None: the
    #: shipped model's recommended setting, ``pretrained_info("mnist").recommended``).
    sampling: Mapping[str, Any] | None = None

    def loss(self) -> DiffusionLoss:
        """The recipe's :class:`~diffusion_edu.DiffusionLoss` (on its schedule)."""
        return DiffusionLoss(make_schedule(self.schedule), self.min_snr_gamma, self.cond_dropout)

    def sampling_settings(self) -> dict[str, Any]:
        """``sample()`` keyword arguments for a model this recipe trained: the ones its quality
        was measured with, else the shipped model's recommended setting."""
        if self.sampling is not None:
            return dict(self.sampling)
        return pretrained_info("mnist").recommended

    def sample_command(self, out: str = "runs/mnist") -> str:
        """The ``python -m diffusion_edu sample`` command for the checkpoint that
        :meth:`cli_command` writes into ``out``, with :meth:`sampling_settings` as flags."""
        flags = sampling_flags(self.sampling_settings())
        return (
            f"python -m diffusion_edu sample --checkpoint {out}/checkpoint.pt {flags} "
            f"--out {out}/samples.png"
        )

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
        minutes = f" --minutes {c.minutes:g}" if c.minutes else ""
        return (
            f"python -m diffusion_edu train --out {out} --model-size {size} --steps {c.steps}"
            f"{minutes} --schedule {self.schedule} --batch-size {c.batch_size} --lr {c.lr:g} "
            f"--warmup-steps {c.warmup_steps} --ema-decay {c.ema_decay:g} "
            f"--label-dropout {self.cond_dropout:g} --min-snr-gamma {self.min_snr_gamma:g} "
            f"--seed {c.seed}"
        )


_COMMON = TrainConfig(batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.995, seed=0)

RECIPES: dict[str, Recipe] = {
    "five_minutes": Recipe(
        name="five_minutes",
        model_config=SMALL_UNET,
        schedule="cosine",
        train_config=dataclasses.replace(_COMMON, steps=1500, minutes=FIVE_MINUTE_BUDGET),
        min_snr_gamma=5.0,
        cond_dropout=0.1,
        expect=(
            f"at most {FIVE_MINUTE_BUDGET:g} minutes of training; all 1,500 steps fit when a "
            "step takes under 0.19 s, as on a 2-core CPU with native bfloat16 (~99% class "
            "agreement at guidance 2), fewer on slower CPUs"
        ),
    ),
    "pretrained": Recipe(
        name="pretrained",
        model_config=SMALL_UNET,
        schedule="cosine",
        train_config=dataclasses.replace(_COMMON, steps=3000),
        min_snr_gamma=5.0,
        cond_dropout=0.1,
        expect="about 8 minutes on a 2-core CPU with native bfloat16, seconds on a GPU: the "
        "shipped model",
    ),
    "two_minutes": Recipe(
        name="two_minutes",
        model_config=FAST_UNET,
        schedule="cosine",
        train_config=dataclasses.replace(
            _COMMON,
            steps=TWO_MINUTE_STEPS,
            batch_size=32,
            lr=3e-3,
            warmup_steps=50,
            minutes=TWO_MINUTE_BUDGET,
        ),  # fmt: skip
        min_snr_gamma=5.0,
        cond_dropout=0.1,
        expect=(
            f"at most {TWO_MINUTE_BUDGET:g} minutes of training; measured on a 2-core CPU "
            "without bfloat16: 2.3-2.5 minutes in all, 96.6-97.2% class agreement"
        ),
        # DDPM's stochastic step on 50 timesteps: a short-trained model's errors get
        # corrected by the fresh noise (the deterministic DDIM-50: Frechet 0.59 vs 0.44)
        sampling={"sampler": "ddim", "steps": 50, "eta": 1.0, "guidance": 2.0},
    ),
    "text": Recipe(
        name="text",
        model_config=TEXT_UNET,
        schedule="cosine",
        train_config=dataclasses.replace(_COMMON, steps=3000),
        min_snr_gamma=5.0,
        cond_dropout=0.1,  # caption dropout: the empty prompt, for guidance
        expect="the shipped text model (load_pretrained('mnist-text')): about 45 minutes on "
        "a 2-core CPU without bfloat16, trained by scripts/make_pretrained_text.py",
    ),
}


def text_trainer(
    recipe: Recipe | None = None,
    copies: int = 4,
    device: torch.device | str | None = None,
    verbose: bool = True,
    progress: bool = True,
) -> Trainer:
    """The one loop, set up to train lesson 09's text model from scratch (call ``.run()``).

    Data: the bundled 4,500 training digits, each captioned ``copies`` times from its measured
    attributes (:func:`diffusion_edu.text.caption_dataset`; the held-out combinations
    removed). Model, schedule and settings: ``recipe`` (default ``RECIPES["text"]``, the
    shipped model's).
    """
    from diffusion_edu.data import load_mnist  # data imports nothing from here; kept local

    recipe = recipe or RECIPES["text"]
    data = load_mnist("train", verbose=verbose)
    images, tokens, _ = caption_dataset(data.images, data.labels, copies=copies)
    torch.manual_seed(recipe.train_config.seed)  # the model's initial weights
    model = UNet(recipe.model_config)
    return Trainer(
        model, recipe.loss(), TensorBatches(images, tokens), recipe.train_config, device,
        verbose=verbose, progress=progress,
    )  # fmt: skip


def digits_recipe(
    device: torch.device | str | None = None, quick: bool | None = None
) -> tuple[Recipe, str]:
    """The recipe to run here and a sentence saying what was chosen and why.

    On a GPU the longer ``"pretrained"`` recipe (it takes seconds there); on a CPU or Apple
    GPU the ``"two_minutes"`` one; in quick mode (``DIFFUSION_EDU_QUICK=1``, the test run)
    the two-minute recipe cut to :data:`QUICK_STEPS` steps.
    """
    device = pick_device(device)
    quick = quick_mode() if quick is None else quick
    if quick:
        recipe = RECIPES["two_minutes"]
        short = dataclasses.replace(
            recipe.train_config, steps=QUICK_STEPS, warmup_steps=4, minutes=None
        )
        recipe = dataclasses.replace(recipe, train_config=short, expect="blobs, not digits yet")
        return recipe, (
            f"Quick mode: the two-minute recipe cut to {QUICK_STEPS} steps (the code path "
            "is the same; the digits will not be)."
        )
    if device.type == "cuda":
        recipe = RECIPES["pretrained"]
        why = "A CUDA GPU is here, so the longer recipe of the shipped model"
    else:
        recipe = RECIPES["two_minutes"]
        where = "an Apple GPU" if device.type == "mps" else "the CPU"
        why = f"Training on {where}, so the two-minute recipe"
    c = recipe.train_config
    note = ""
    if device.type == "cpu" and autocast_dtype(device) is None:
        note = (
            " This CPU has no native bfloat16, so it trains in float32, as the recipe was "
            "measured; on a CPU slower than the one measured the time budget will fit fewer "
            "steps (set USE_PRETRAINED = True to skip training)."
        )
    return (
        recipe,
        f"{why}: up to {c.steps:,} steps of batch {c.batch_size} ({recipe.expect}).{note}",
    )
