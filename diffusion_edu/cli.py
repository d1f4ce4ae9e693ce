"""The command line: ``python -m diffusion_edu train ...`` and ``... sample ...``.

Train a class-conditional digit generator on the bundled digits, then draw a grid of samples::

    python -m diffusion_edu train --out runs/mnist --steps 3000 --schedule cosine
    python -m diffusion_edu sample --checkpoint runs/mnist/checkpoint.pt --sampler ddim \\
        --steps 50 --eta 1 --guidance 1.5 --guidance-interval 600 900 --out runs/mnist/samples.png

(the shipped model's recommended settings, spelled out: DDIM-50 with eta 1, guidance 1.5 at the
steps with 600 < t <= 900; docs/performance.md, "Issue 12").

Or skip training and sample the model that ships with the course (the quick switch). A shipped
model samples with its recommended settings (sampler, steps, guidance, guidance interval: its
record's "recommended" key, measured by the script that made it); each flag you give
overrides one of them::

    python -m diffusion_edu sample --pretrained mnist --out samples.png
    python -m diffusion_edu sample --pretrained mnist --guidance 1 --out plain.png

A text-conditioned model takes prompts, one grid row each::

    python -m diffusion_edu sample --checkpoint runs/text/checkpoint.pt \\
        --prompt "a bold seven" --prompt "a thin 3 leaning left" --out prompts.png

``train`` also runs on several processes/GPUs with DistributedDataParallel::

    torchrun --standalone --nproc_per_node=2 -m diffusion_edu train --out runs/ddp --steps 1000

Mistakes in the arguments, missing or damaged files and unwritable folders end with exit
code 2 and one line saying what is wrong and how to fix it (no traceback).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from diffusion_edu import distributed
from diffusion_edu.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from diffusion_edu.data import augment, load_mnist
from diffusion_edu.device import pick_device
from diffusion_edu.files import atomic_write
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer, TrainingDivergedError
from diffusion_edu.models.common import model_for_config
from diffusion_edu.models.dit import DiTConfig
from diffusion_edu.models.unet import UNetConfig, count_parameters
from diffusion_edu.pretrained import (
    PRETRAINED_IMAGE_MODELS,
    PRETRAINED_MODELS,
    load_pretrained,
    pretrained_info,
    sampling_flags,
)
from diffusion_edu.recipes import DIT_SIZES, MODEL_SIZES, expectation_for, recipe_for
from diffusion_edu.samplers import SAMPLERS, plan_sampling, sample
from diffusion_edu.schedules import make_schedule
from diffusion_edu.targets import TARGETS, prediction_of
from diffusion_edu.training import DiffusionLoss

__all__ = ["main", "MODEL_SIZES", "build_parser"]


CHECKPOINT_NAME = "checkpoint.pt"
LOSS_LOG_NAME = "losses.csv"
RUN_INFO_NAME = "run.json"


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (what is wrong, and where to look) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}. See: {self.prog} --help\n")


# ----------------------------------------------------------------------------- arguments
def _number(
    parse: Callable[[str], float], allowed: Callable[[float], bool], expected: str
) -> Callable[[str], float]:
    """An argparse ``type=``: parse the text, then check it, with one-line errors."""

    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            kind = "a whole number" if parse is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not (math.isfinite(value) and allowed(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "a number >= 1")
_nonneg_int = _number(int, lambda v: v >= 0, "a number >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_fraction = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_nonneg_float = _number(float, lambda v: v >= 0, "a number >= 0")
_finite_float = _number(float, lambda v: True, "a finite number")


def _label_list(text: str) -> list[int]:
    try:
        labels = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated class ids like 0,1,2, got {text!r}"
        ) from None
    if not labels:
        raise argparse.ArgumentTypeError("expected at least one class id, e.g. 3 or 0,1,2")
    return labels


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m diffusion_edu`` parser with its ``train`` and ``sample`` commands."""
    parser = _Parser(
        prog="python -m diffusion_edu",
        description="Train a diffusion model on digits, or sample images from a checkpoint.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{train,sample}", parser_class=_Parser)
    commands.required = True

    _add_train_command(commands)
    _add_sample_command(commands)
    return parser


def _add_train_command(commands: Any) -> None:
    """``train``'s options: data, length, hyper-parameters, model, run."""
    train = commands.add_parser(
        "train",
        help="train a noise-prediction U-Net or DiT (DDPM Algorithm 1); works under torchrun",
        description="Train a noise predictor (a U-Net, or a DiT with --model dit) with DDPM's "
        "loss (Algorithm 1), AdamW, warm-up + cosine learning rate, gradient clipping, EMA and "
        "label dropout. Writes "
        "OUT/checkpoint.pt (every --checkpoint-every steps and at the end, atomically), "
        "OUT/losses.csv and OUT/run.json. Under torchrun --nproc_per_node=N it trains with "
        "DistributedDataParallel (NCCL on GPUs, gloo on CPUs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = train.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=("bundled", "mnist", "fashion"),
        default="bundled",
        help="bundled: the 4,500 training digits shipped with the course (offline); mnist: the "
        "full MNIST IDX files in --data-dir; fashion: Fashion-MNIST IDX files in --data-dir "
        "(or Debian's dataset-fashion-mnist package)",
    )
    data.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the IDX files for --dataset mnist/fashion (default: data/mnist or "
        "data/fashion-mnist in the repository)",
    )
    data.add_argument(
        "--augment", action="store_true", help="random 2-pixel shifts and 10-degree rotations"
    )
    length = train.add_argument_group("length (give --steps or --epochs; default 2000 steps)")
    exclusive = length.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--steps", type=_positive_int, default=None, help="optimiser steps in total"
    )
    exclusive.add_argument(
        "--epochs", type=_positive_float, default=None, help="passes over the training set"
    )
    length.add_argument(
        "--minutes", type=_positive_float, default=None,
        help="wall-clock budget for training: after a few timed steps, take as many steps as "
        "fit (at most --steps) and fit the learning-rate decay to them",
    )  # fmt: skip
    hyper = train.add_argument_group(
        "hyper-parameters (ignored with --resume: the checkpoint's are used)"
    )
    defaults, loss_defaults = TrainConfig(), DiffusionLoss(make_schedule())
    hyper.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size,
                       help="images per optimiser step (over all processes)")  # fmt: skip
    hyper.add_argument("--lr", type=_positive_float, default=defaults.lr,
                       help="peak learning rate of AdamW")  # fmt: skip
    hyper.add_argument("--min-lr", type=_nonneg_float, default=defaults.min_lr,
                       help="learning rate at the end of the cosine decay")  # fmt: skip
    hyper.add_argument("--warmup-steps", type=_nonneg_int, default=defaults.warmup_steps,
                       help="linear learning-rate warm-up steps")  # fmt: skip
    hyper.add_argument("--weight-decay", type=_nonneg_float, default=defaults.weight_decay,
                       help="AdamW weight decay")  # fmt: skip
    hyper.add_argument("--grad-clip", type=_nonneg_float, default=defaults.grad_clip,
                       help="clip the gradient norm to this (0 = off)")  # fmt: skip
    hyper.add_argument("--ema-decay", type=_fraction, default=defaults.ema_decay,
                       help="decay of the EMA of the weights (the EMA model samples)")  # fmt: skip
    hyper.add_argument("--label-dropout", type=_fraction, default=loss_defaults.cond_dropout,
                       help="fraction of labels replaced by 'no label' (classifier-free "
                       "guidance)")  # fmt: skip
    hyper.add_argument("--min-snr-gamma", type=_nonneg_float, default=loss_defaults.min_snr_gamma,
                       help="Min-SNR loss weighting min(SNR, gamma)/SNR (Hang et al. 2023); "
                       "0 = plain DDPM loss")  # fmt: skip
    hyper.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=defaults.precision,
        help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32",
    )
    model = train.add_argument_group("model and noise schedule")
    model.add_argument(
        "--model", choices=("unet", "dit"), default="unet",
        help="the noise predictor: unet (the course's U-Net) or dit (a Diffusion Transformer, "
        "Peebles & Xie 2023, on 4x4 pixel patches)",
    )  # fmt: skip
    model.add_argument(
        "--model-size",
        choices=tuple(MODEL_SIZES),
        default="default",
        help="preset: U-Net tiny ~32k parameters (tests), small ~0.2M, default ~1.27M, large ~5M, "
        "fast ~0.2M on 2x2 patches (the two-minute recipe; U-Net only), patched ~1.75M on 2x2 "
        "patches (U-Net only); "
        "DiT tiny ~12k, small ~0.22M, default ~0.47M, large ~2.4M",
    )
    model.add_argument(
        "--unconditional", action="store_true", help="ignore the labels (no class conditioning)"
    )
    model.add_argument(
        "--prediction", choices=TARGETS, default="eps",
        help="what the network predicts: eps (the noise, DDPM), x0 (the clean image), v "
        "(Salimans & Ho 2022) or flow (a flow-matching velocity; sample it with --sampler euler)",
    )  # fmt: skip
    model.add_argument(
        "--schedule",
        choices=("linear", "cosine", "sigmoid"),
        default="linear",
        help="noise schedule: linear (DDPM), cosine (Nichol & Dhariwal), sigmoid (Chen)",
    )
    model.add_argument(
        "--timesteps", type=_positive_int, default=1000, help="T, the number of noise levels"
    )
    run = train.add_argument_group("run")
    run.add_argument(
        "--out", type=Path, default=Path("runs/mnist"), help="output folder (created if needed)"
    )
    run.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint (default: OUT/checkpoint.pt) up to --steps/--epochs",
    )
    run.add_argument("--checkpoint-every", type=_positive_int, default=500,
                     help="write OUT/checkpoint.pt every this many steps")  # fmt: skip
    run.add_argument("--seed", type=int, default=0,
                     help="seeds the initial weights, batches, timesteps and noise")  # fmt: skip
    run.add_argument("--device", default=None,
                     help="cpu, cuda, cuda:1, mps (default: CUDA, then MPS, then CPU)")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the model: slow start, may pay on a GPU "
                     "(1.13x on a 2-core CPU after a 30-90 s compile)")  # fmt: skip
    # For the DDP test: every process writes the SHA-256 of its final weights to
    # OUT/weights_rank<R>.sha256 (they must all be equal) and of its data shard to
    # OUT/data_rank<R>.sha256 (they must differ). Not in --help.
    run.add_argument("--weights-hash", action="store_true", help=argparse.SUPPRESS)


def _add_sample_command(commands: Any) -> None:
    """``sample``'s options: the checkpoint, what to draw, the sampler."""
    samp = commands.add_parser(
        "sample",
        help="draw images from a trained checkpoint and save them as a PNG grid",
        description="Draw images from a checkpoint written by 'train' (with its EMA weights) "
        "and save them as one PNG grid. For a class-conditional model the default grid has "
        "one row per class, for a text-conditioned one a row per --prompt. A shipped model "
        "(--pretrained) samples with its recommended settings (its record's 'recommended' "
        "key) wherever a flag does not say otherwise.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = samp.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="checkpoint file written by train (OUT/checkpoint.pt)")  # fmt: skip
    source.add_argument("--pretrained", choices=PRETRAINED_IMAGE_MODELS,
                        help="a model shipped with the course (no training needed): "
                        "--pretrained mnist")  # fmt: skip
    samp.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG file to write")
    what = samp.add_argument_group("what to draw")
    which = what.add_mutually_exclusive_group()
    which.add_argument("--labels", type=_label_list, default=None,
                       help="comma-separated class ids, one image each, e.g. 0,1,2,3")  # fmt: skip
    which.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                       help="a text prompt for a text-conditioned model, e.g. --prompt "
                       "'a bold seven leaning right'; repeat the flag for more prompts. Each "
                       "prompt gets one grid row of --per-class images (with --n: n images "
                       "that cycle through the prompts)")  # fmt: skip
    what.add_argument("--n", type=_positive_int, default=None,
                      help="number of images (a conditional model cycles through the "
                      "classes or prompts); default: --per-class images of every class or "
                      "prompt, or 64")  # fmt: skip
    what.add_argument("--per-class", type=_positive_int, default=10,
                      help="images per class (or per --prompt) when neither --labels nor --n "
                      "is given")  # fmt: skip
    what.add_argument("--zoom", type=_positive_int, default=1,
                      help="enlarge the PNG by this whole factor (nearest neighbour)")  # fmt: skip
    what.add_argument("--nrow", type=_positive_int, default=None,
                      help="images per grid row (default: --per-class, or square)")  # fmt: skip
    how = samp.add_argument_group(
        "sampler (None: a shipped model's recommended setting, else the default named)"
    )
    how.add_argument("--sampler", choices=SAMPLERS, default=None,
                     help="ddpm: all T steps (Algorithm 2); ddim: --steps steps; "
                     "dpm-solver++: --steps DPM-Solver++(2M) steps (15 match DDIM-50's quality); "
                     "euler: --steps steps of a flow model (default: ddim, or euler for a "
                     "flow model)")  # fmt: skip
    how.add_argument("--steps", type=_positive_int, default=None,
                     help="DDIM, DPM-Solver++ or Euler steps (default 50; DDPM always takes "
                     "T)")  # fmt: skip
    how.add_argument("--eta", type=_nonneg_float, default=None,
                     help="DDIM noise: 0 deterministic, 1 DDPM-like (default 0)")  # fmt: skip
    how.add_argument("--guidance", type=_finite_float, default=None,
                     help="classifier-free guidance scale w (1 = plain conditional; default "
                     "1)")  # fmt: skip
    how.add_argument("--guidance-interval", nargs=2, type=_nonneg_int, default=None,
                     metavar=("LO", "HI"),
                     help="guide (scale --guidance) only the steps whose timestep t has "
                     "LO < t <= HI, and sample the others plainly conditional: guidance in a "
                     "limited interval (Kynkaanniemi et al. 2024). 0 T guides every step "
                     "(default: every step)")  # fmt: skip
    how.add_argument("--autoguidance", type=_finite_float, default=None, metavar="W",
                     help="autoguidance (Karras et al. 2024): every prediction becomes guide + "
                     "W (model - guide), with --guide-model a weaker version of the model "
                     "(1 = off; default 1)")  # fmt: skip
    how.add_argument("--guide-model", default=None, metavar="MODEL",
                     help="the guide for --autoguidance: a shipped model's name (e.g. "
                     "mnist-guide) or a checkpoint written by train")  # fmt: skip
    how.add_argument("--seed", type=int, default=0, help="same seed, same images")
    how.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    how.add_argument("--no-ema", action="store_true",
                     help="use the raw last-step weights instead of the EMA weights")  # fmt: skip
    how.add_argument("--no-progress", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- helpers
def _check_writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` and prove a file can be written there, or raise CliError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CliError(
            f"cannot write to the {what} {folder} ({reason}); choose another folder with --out"
        ) from None


def _device(text: str | None) -> torch.device:
    try:
        return pick_device(text)
    except (RuntimeError, ValueError) as error:
        raise CliError(f"--device {text}: {error}") from None


def _load_training_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images in [-1, 1], labels, one-line description) for --dataset/--data-dir."""
    bundled = args.dataset == "bundled"
    if bundled and args.data_dir is not None:
        raise CliError("--data-dir is for --dataset mnist or fashion; bundled needs none")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise CliError(f"--data-dir {args.data_dir} is not a folder; give the folder of IDX files")
    dataset = "fashion" if args.dataset == "fashion" else "mnist"
    try:  # "local": the IDX files or a clear error, never a silent fallback to other data
        data = load_mnist("train", dataset=dataset, root=args.data_dir, verbose=False,
                          source="bundled" if bundled else "local")  # fmt: skip
    except FileNotFoundError as error:
        if bundled:
            raise CliError(str(error)) from None
        name = "MNIST" if dataset == "mnist" else "Fashion-MNIST"
        looked = str(error).partition(" IDX files in ")[2].partition(". ")[0] or "the data folder"
        raise CliError(
            f"no {name} training IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-"
            f"ubyte[.gz]) in {looked}; copy them there, pass --data-dir, or use --dataset "
            "bundled"
        ) from None
    except ValueError as error:
        raise CliError(str(error).splitlines()[0]) from None
    if bundled:
        return data.images, data.labels, f"bundled MNIST: {len(data.labels):,} training digits"
    return data.images, data.labels, data.description


def _weights_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode()))


def _write_loss_log(path: Path, history: Sequence[Any]) -> None:
    """One row per step: step, loss, lr, grad_norm, step_seconds, seconds, examples_per_s."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    keys = ["step", "loss", "lr", "grad_norm", "step_seconds", "seconds", "examples_per_s"]
    writer.writerow(keys)
    for record in history:
        writer.writerow([record.step] + [f"{getattr(record, k):.6g}" for k in keys[1:]])
    _write_text(path, buffer.getvalue())


def _say(rank: int, *parts: Any) -> None:
    if rank == 0:
        print(*parts, flush=True)


# ----------------------------------------------------------------------------- train
@dataclasses.dataclass(frozen=True)
class _Run:
    """What ``train`` will do: a fresh run from the arguments, or the resumed checkpoint's."""

    model_config: UNetConfig | DiTConfig
    config: TrainConfig
    loss: DiffusionLoss
    augment: bool
    checkpoint: Checkpoint | None


def _plan_run(args: argparse.Namespace, labels: torch.Tensor, n_images: int) -> _Run:
    """The model, loop and loss settings: from the arguments, or from --resume's checkpoint."""
    checkpoint = None
    try:
        if args.resume is not None:
            path = Path(args.resume) if args.resume else args.out / CHECKPOINT_NAME
            checkpoint = _load_resumable(path)
            config = TrainConfig.from_dict(checkpoint.train_config or {})
            loss = DiffusionLoss(checkpoint.schedule, **(checkpoint.loss or {}))  # type: ignore[arg-type]
            model_config = checkpoint.model_config
            augment_images = bool((checkpoint.extra or {}).get("augment", False))
        else:
            num_classes = None if args.unconditional else int(labels.max()) + 1
            sizes = DIT_SIZES if args.model == "dit" else MODEL_SIZES
            if args.model_size not in sizes:
                raise CliError(
                    f"--model-size {args.model_size} is a U-Net preset; a DiT takes "
                    f"{', '.join(DIT_SIZES)}."
                )
            model_config = dataclasses.replace(
                sizes[args.model_size], num_classes=num_classes, prediction=args.prediction
            )
            config = TrainConfig(
                batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                grad_clip=args.grad_clip, ema_decay=args.ema_decay, seed=args.seed,
                precision=args.precision, compile=args.compile,
            )  # fmt: skip
            schedule = make_schedule(args.schedule, T=args.timesteps)
            loss = DiffusionLoss(schedule, args.min_snr_gamma, args.label_dropout)
            augment_images = args.augment
    except ValueError as error:
        raise CliError(str(error)) from None
    if args.epochs is not None:
        steps = math.ceil(args.epochs * n_images / config.batch_size)
    else:
        steps = args.steps or (config.steps if checkpoint is not None else TrainConfig().steps)
    # Read losses back at every checkpoint step, so each checkpoint is the step it names.
    device_sync = 1 if _device(args.device).type == "cpu" else 25
    config = dataclasses.replace(
        config, steps=steps, minutes=args.minutes,
        sync_every=math.gcd(config.sync_every or device_sync, args.checkpoint_every),
    )  # fmt: skip
    return _Run(model_config, config, loss, augment_images, checkpoint)


def _load_resumable(path: Path) -> Checkpoint:
    if not path.is_file():
        raise CliError(
            f"--resume: no checkpoint at {path}; give its path, or drop --resume to start afresh"
        )
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise CliError(str(error)) from None
    if checkpoint.train_config is None or checkpoint.schedule is None:
        raise CliError(f"{path} has no training state (it is a model-only export)")
    return checkpoint


def _train(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; give a folder for the checkpoint and logs")
    _check_writable_folder(out, "output folder")
    images, labels, data_description = _load_training_data(args)
    run = _plan_run(args, labels, images.shape[0])
    config, schedule = run.config, run.loss.schedule
    if run.model_config.num_classes is None:
        labels = None
    elif int(labels.max()) >= run.model_config.num_classes:
        raise CliError(
            f"the data has labels up to {int(labels.max())} but the checkpoint's model knows "
            f"{run.model_config.num_classes} classes; resume with the same --dataset"
        )
    device, rank, world_size = distributed.start(_device(args.device))
    try:
        if run.checkpoint is not None:
            _say(rank, f"Resuming from {run.checkpoint.path} at step {run.checkpoint.step:,} "
                       "(model, schedule and settings come from the checkpoint).")  # fmt: skip
        torch.manual_seed(config.seed)  # the same initial weights on every process
        model = model_for_config(run.model_config)
        data = TensorBatches(
            images, *([] if labels is None else [labels]),
            augment=augment if run.augment else None,
        )  # fmt: skip
        try:
            trainer = Trainer(
                model, run.loss, data, config, device,
                progress=not args.no_progress,
                expect=expectation_for(run.model_config, run.loss, run.config),
            )  # fmt: skip
        except ValueError as error:
            raise CliError(str(error)) from None
        if run.checkpoint is not None:
            trainer.load_state(run.checkpoint)
        _say(rank, f"Data: {data_description}. Model: {count_parameters(model):,} parameters, "
                   f"predicts {run.model_config.prediction}; {schedule!r}. "
                   f"Output: {out}/")  # fmt: skip
        if trainer.step >= config.steps:
            _say(rank, f"Already at step {trainer.step:,} >= --steps {config.steps:,}: "
                       "nothing to do (raise --steps to train longer).")  # fmt: skip
        run_info = {
            "data": data_description,
            "model_config": dataclasses.asdict(run.model_config),
            "parameters": count_parameters(model),
            "schedule": schedule.name,
            "T": schedule.T,
            "train_config": config.to_dict(),
            "loss": run.loss.to_dict(),
            "device": str(device),
            "precision": str(trainer.amp_dtype or torch.float32).replace("torch.", ""),
            "world_size": world_size,
        }

        def save() -> None:
            trainer.save(out / CHECKPOINT_NAME, extra={"augment": run.augment})  # collective
            if rank == 0:
                _write_loss_log(out / LOSS_LOG_NAME, trainer.history)
                info = {**run_info, "step": trainer.step}
                if trainer.history:
                    info["seconds"] = round(trainer.history[-1].seconds, 1)
                    info["last_loss"] = trainer.history[-1].loss
                if trainer.plan is not None:
                    info["plan"] = dataclasses.asdict(trainer.plan)
                _write_text(out / RUN_INFO_NAME, json.dumps(info, indent=2) + "\n")

        start = time.perf_counter()
        try:
            for record in trainer.run():
                if record.step % args.checkpoint_every == 0 and record.step < trainer.total_steps:
                    save()
        except TrainingDivergedError as error:
            print(f"python -m diffusion_edu train: {error}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - start
        save()
        if args.weights_hash:
            _write_text(out / f"weights_rank{rank}.sha256", _weights_sha256(trainer.model) + "\n")
            shard = hashlib.sha256(trainer.data.tensors[0].cpu().numpy().tobytes()).hexdigest()
            _write_text(out / f"data_rank{rank}.sha256", shard + "\n")
        # a recipe's measured sampling setting, else the shipped model of the same kind's
        recipe = recipe_for(run.model_config, run.loss, run.config)
        if recipe is not None and recipe.sampling is not None:
            hint_flags = " " + sampling_flags(dict(recipe.sampling))
        else:
            hint_flags = _recommended_flags("mnist-flow" if args.prediction == "flow" else "mnist")
        _say(rank, f"Done: {trainer.step:,} steps in {seconds / 60:.1f} min. Checkpoint: "
                   f"{out / CHECKPOINT_NAME}, loss log: {out / LOSS_LOG_NAME}.")  # fmt: skip
        _say(rank, f"Draw samples: python -m diffusion_edu sample --checkpoint "
                   f"{out / CHECKPOINT_NAME}{hint_flags} "
                   f"--out {out / 'samples.png'}")  # fmt: skip
        return 0
    finally:
        distributed.stop()


# ----------------------------------------------------------------------------- sample
def _grid_prompts(args: argparse.Namespace, model_config: Any) -> tuple[list[str], int] | None:
    """The prompt of each image to draw and the grid's images per row (None: no --prompt)."""
    text_model = getattr(model_config, "text_vocab_size", None) is not None
    if args.labels is not None and text_model:
        raise CliError("--labels: this model is text-conditioned; give --prompt TEXT instead")
    if args.prompt is None:
        return None
    if not text_model:
        kind = (
            "class-conditional: use --labels"
            if getattr(model_config, "num_classes", None) is not None
            else "unconditional: use --n"
        )
        raise CliError(f"--prompt: this model is not text-conditioned (it is {kind})")
    from diffusion_edu.text import tokenize  # the tokenizer, only for this command's check

    try:  # an unknown word fails here, before the model samples anything
        tokenize(args.prompt)
    except ValueError as error:
        raise CliError(f"--prompt: {error}".rstrip(".")) from None
    if args.n is not None:
        prompts = [args.prompt[i % len(args.prompt)] for i in range(args.n)]
        return prompts, args.nrow or math.ceil(math.sqrt(args.n))
    prompts = [prompt for prompt in args.prompt for _ in range(args.per_class)]
    return prompts, args.nrow or args.per_class


def _sampling_settings(
    args: argparse.Namespace, model: torch.nn.Module, conditional: bool
) -> tuple[dict[str, Any], list[str]]:
    """``sample()``'s sampler, steps, eta, guidance and guidance_interval: each from its flag,
    else from a shipped model's recommended settings, else the default. Also returns which
    came from the recommendation."""
    try:
        info = pretrained_info(args.pretrained) if args.pretrained else None
        recommended = info.recommended_names if info is not None else {}  # a guide by name
    except (FileNotFoundError, CheckpointError) as error:
        raise CliError(str(error)) from None
    default_sampler = "euler" if prediction_of(model) == "flow" else "ddim"
    flags = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta,
             "guidance": args.guidance,
             "guidance_interval": None if args.guidance_interval is None
             else tuple(args.guidance_interval),
             "autoguidance": args.autoguidance, "guide_model": args.guide_model}  # fmt: skip
    sampler = args.sampler or recommended.get("sampler") or default_sampler
    # steps and eta belong to a sampler: recommended only with the recommended sampler;
    # guidance only where there is a condition to guide towards.
    usable = {"sampler", "autoguidance", "guide_model"}
    if sampler == recommended.get("sampler", default_sampler):
        usable |= {"steps", "eta"}
    if conditional:
        usable |= {"guidance", "guidance_interval"}
    settings: dict[str, Any] = {"sampler": sampler, "steps": None, "eta": 0.0, "guidance": 1.0,
                                "guidance_interval": None, "autoguidance": 1.0,
                                "guide_model": None}  # fmt: skip
    from_record = []
    for name, value in flags.items():
        if value is not None:
            settings[name] = value
        elif name in recommended and name in usable:
            settings[name] = recommended[name]
            from_record.append(name)
    return settings, from_record


def _recommended_flags(name: str = "mnist") -> str:
    """The shipped model's recommended settings as ``sample`` flags (" --sampler ddim ..."),
    or " --guidance 2" if its record cannot be read."""
    try:
        flags = pretrained_info(name).recommended_flags
    except (FileNotFoundError, CheckpointError, KeyError):
        return " --guidance 2"
    return f" {flags}" if flags else ""


def _describe(settings: dict[str, Any], timesteps: list[int]) -> str:
    """``"DDIM-50, guidance 3 at 200 < t <= 800, seed 0"``-like text for the settings."""
    text = f"{settings['sampler'].upper()}-{len(timesteps) - 1}"
    if settings["sampler"] == "ddim" and settings["eta"]:
        text += f" (eta {settings['eta']:g})"
    text += f", guidance {settings['guidance']:g}"
    if settings["guidance_interval"] is not None and settings["guidance"] != 1.0:
        lo, hi = settings["guidance_interval"]
        text += f" at {lo} < t <= {hi}"
    if settings.get("autoguidance", 1.0) != 1.0:
        text += f", autoguidance {settings['autoguidance']:g} by {settings['guide_model']}"
    return text


def _load_guide(spec: str | None, device: torch.device) -> torch.nn.Module | None:
    """``--guide-model``: a shipped model by name, or a train checkpoint's EMA weights."""
    if spec is None:
        return None
    try:
        if spec in PRETRAINED_MODELS:
            return load_pretrained(spec, device=device)[0]
        return load_checkpoint(Path(spec)).build_model(ema=True, device=device)
    except (FileNotFoundError, CheckpointError) as error:
        raise CliError(
            f"--guide-model {spec}: {error} (give a shipped model's name: "
            f"{', '.join(PRETRAINED_MODELS)}, or a checkpoint written by train)"
        ) from None


def _num_classes(model_config: object) -> int | None:
    """The classes a model is conditioned on (a latent model's: its denoiser's), or None."""
    inner = getattr(model_config, "denoiser", model_config)
    return getattr(inner, "num_classes", None)


def _grid_labels(args: argparse.Namespace, num_classes: int | None) -> tuple[list[int] | None, int]:
    """The class of each image to draw (None: unconditional) and the grid's images per row."""
    if args.labels is not None:
        if num_classes is None:
            raise CliError("--labels: this checkpoint's model is unconditional; use --n instead")
        bad = [label for label in args.labels if not 0 <= label < num_classes]
        if bad:
            raise CliError(f"--labels: class ids must lie in 0..{num_classes - 1}, got {bad}")
        if args.n is not None and args.n != len(args.labels):
            raise CliError("give either --labels or --n, not both")
        labels = args.labels
    elif num_classes is not None and args.n is not None:
        labels = [i % num_classes for i in range(args.n)]
    elif num_classes is not None:
        labels = [c for c in range(num_classes) for _ in range(args.per_class)]
        return labels, args.nrow or args.per_class
    else:
        labels = None
    n = len(labels) if labels is not None else (args.n or 64)
    return labels, args.nrow or math.ceil(math.sqrt(n))


def _sample(args: argparse.Namespace) -> int:
    device = _device(args.device)
    out: Path = args.out
    if out.suffix.lower() != ".png":
        raise CliError(f"--out {out} must end in .png (the grid is written as a PNG image)")
    if out.is_dir():
        raise CliError(f"--out {out} is a folder; give a file name such as {out / 'samples.png'}")
    try:
        path = args.checkpoint or pretrained_info(args.pretrained).weights
        checkpoint = load_checkpoint(path)
    except (FileNotFoundError, CheckpointError) as error:
        raise CliError(str(error)) from None
    if checkpoint.schedule is None:
        raise CliError(f"{path} holds no noise schedule: it is not a diffusion model")
    _check_writable_folder(out.parent if str(out.parent) else Path("."), "folder of --out")
    prompted = _grid_prompts(args, checkpoint.model_config)
    if prompted is not None:
        labels, (prompts, nrow) = None, prompted
        n = len(prompts)
    else:
        prompts = None
        labels, nrow = _grid_labels(args, _num_classes(checkpoint.model_config))
        n = len(labels) if labels is not None else (args.n or 64)
    model = checkpoint.build_model(ema=not args.no_ema, device=device)
    settings, from_record = _sampling_settings(
        args, model, conditional=labels is not None or prompts is not None
    )
    try:  # the sampler checks its own arguments
        _, timesteps = plan_sampling(
            model, checkpoint.schedule.T, settings["sampler"], settings["steps"]
        )
    except ValueError as error:
        raise CliError(str(error).rstrip(".")) from None
    # A shipped model stores its EMA weights as the model's own.
    ema = args.pretrained is not None or (not args.no_ema and checkpoint.ema_state is not None)
    print(f"Sampling {n} images from {path} (step {checkpoint.step:,}, "
          f"{'EMA' if ema else 'raw'} weights) on {device}: {_describe(settings, timesteps)}, "
          f"seed {args.seed}.", flush=True)  # fmt: skip
    if from_record:
        names = ", ".join(name.replace("_", " ") for name in from_record)
        record = pretrained_info(args.pretrained).weights.with_suffix(".json").name
        print(f"Recommended settings of the shipped model {args.pretrained!r} (its record, "
              f"data/pretrained/{record}): {names}. A flag overrides each.",
              flush=True)  # fmt: skip
    guide = _load_guide(settings["guide_model"], device) if settings["autoguidance"] != 1 else None
    start = time.perf_counter()
    try:  # the sampler checks its own arguments (guidance without labels, say)
        images = sample(
            model, checkpoint.schedule, n=None if labels is not None or prompts else n,
            labels=labels, prompts=prompts, seed=args.seed, device=device,
            progress=not args.no_progress, **{**settings, "guide_model": guide},
        )  # fmt: skip
    except ValueError as error:
        raise CliError(str(error).rstrip(".")) from None
    seconds = time.perf_counter() - start
    _write_grid(out, images, nrow, args.zoom)
    print(f"Wrote {out} ({n} images, {seconds:.1f} s, {seconds / n:.3f} s per image).")
    return 0


def _write_grid(out: Path, images: torch.Tensor, nrow: int, zoom: int) -> None:
    """Save ``images`` as one PNG grid, each pixel enlarged to ``zoom`` x ``zoom``."""
    # Plotting lives on top of the core: imported here, only by the command that draws.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_edu.viz.plots import make_grid

    grid = make_grid(images, nrow=nrow)  # (H, W) in [0, 1]
    grid = grid.repeat(zoom, axis=0).repeat(zoom, axis=1)
    try:
        atomic_write(out, lambda file: plt.imsave(file, grid, cmap="gray", vmin=0, vmax=1,
                                                  format="png"))  # fmt: skip
    except OSError as error:
        raise CliError(f"cannot write {out} ({error.strerror}); choose another --out") from None


# ----------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 training diverged, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        return _sample(args)
    except CliError as error:
        print(f"python -m diffusion_edu {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint written is intact.", file=sys.stderr)
        return 130
