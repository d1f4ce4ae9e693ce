"""The one training loop: every model in the course learns here.

A model, a loss and a source of batches go in::

    trainer = Trainer(model, loss, TensorBatches(images, labels), TrainConfig(steps=1500))
    for record in trainer.run():          # one TrainStep per optimiser step
        print(record.step, record.loss)

``loss(model, batch, generator)`` returns the number to make smaller: DDPM's Algorithm 1 for a
noise predictor (:class:`diffusion_edu.training.DiffusionLoss`), the cross-entropy for the
classifier behind the metrics (``scripts/train_classifier.py``). Around it, each piece of the
recipe every modern model is trained with is written once, here:

* **AdamW** (Loshchilov & Hutter 2019) with a linear **learning-rate warm-up**, then **cosine
  decay** (SGDR, Loshchilov & Hutter 2017): big steps too early knock a freshly initialised
  network off course.
* **Gradient clipping** at a global norm (DDPM's code clips at 1.0).
* An **exponential moving average (EMA)** of the weights: smoother than the last step's, and
  the copy a diffusion model samples from.
* **bfloat16 autocast** where the hardware does it natively (:func:`~diffusion_edu.autocast_dtype`).
* A **stop on NaN or explosion** with a message that says what to change; on the CPU the bad
  step is caught before it touches the weights.
* A **progress bar** and a typed record (:class:`TrainStep`) per step.
* **Checkpoints** (:meth:`Trainer.save`) holding everything needed to resume bit for bit.
* **DistributedDataParallel** under ``torchrun`` (:mod:`diffusion_edu.distributed`).
* A **wall-clock budget** (``TrainConfig(minutes=...)``): after a few steps the loop measures
  its own speed and fits the number of steps, and the learning-rate schedule, to the time.

Batches are drawn with replacement from data held on the device (:class:`TensorBatches`), by a
seeded ``torch.Generator``: no DataLoader, and the same seed gives the same losses.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, Literal, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from diffusion_edu import distributed
from diffusion_edu.checkpoints import Checkpoint, save_checkpoint
from diffusion_edu.device import (
    autocast_dtype,
    cpu_threads,
    describe_device,
    pick_device,
    threads_for,
)

__all__ = [
    "TrainConfig",
    "TrainStep",
    "BudgetPlan",
    "TensorBatches",
    "Loss",
    "Trainer",
    "TrainingDivergedError",
    "EMA",
    "learning_rate_at",
]

Precision = Literal["auto", "fp32", "bf16"]
PROBE_STEPS = 20  # timed steps before a wall-clock budget fixes the number of steps
BUDGET_RESERVE = 0.05  # share of a budget's remaining time kept back for slower steps


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the optimiser, its schedule and the loop's settings (any model).

    Attributes:
        steps: optimiser steps in total (a resumed run continues up to this number); with
            ``minutes``, the most steps to take.
        batch_size: examples per optimiser step, summed over all processes under DDP.
        lr: peak learning rate of AdamW.
        warmup_steps: the learning rate rises linearly from ~0 to ``lr`` over these steps...
        min_lr: ...then follows a cosine down to ``min_lr`` at the last step.
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: clip the global gradient norm to this value (0 disables clipping).
        ema_decay: decay of the exponential moving average of the weights; None keeps no EMA.
        seed: seeds the batches and every random number the loss draws.
        precision: ``"auto"`` (bf16 autocast where it is fast, see
            :func:`~diffusion_edu.autocast_dtype`), ``"fp32"`` or ``"bf16"``.
        max_loss: stop if the loss exceeds this (``math.inf``: only NaN/inf stop). A diffusion
            loss starts near 1, so the default 100 means it blew up.
        sync_every: read the loss and gradient norm back from the device every this many steps.
            Reading a number off a GPU makes the CPU wait for all queued work, so it cannot
            queue the next steps meanwhile; on the CPU reading is free. None: 1 on the CPU (a
            NaN is caught *before* its step is applied), 25 on a GPU (caught up to 24 steps
            late; the last checkpoint is still untouched).
        compile: run the model through ``torch.compile`` (slow start, faster steps; weights,
            checkpoints and the EMA model stay plain modules).
        minutes: a wall-clock budget for the training steps. After :data:`PROBE_STEPS` timed
            steps the loop fixes how many steps fit (at most ``steps``, keeping
            :data:`BUDGET_RESERVE` of the time in reserve) and decays the learning rate to
            ``min_lr`` at that step; :class:`BudgetPlan` says what it chose.
    """

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float | None = 0.995
    seed: int = 0
    precision: Precision = "auto"
    max_loss: float = 100.0
    sync_every: int | None = None
    compile: bool = False
    minutes: float | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive number, got {self.lr!r}")
        if not (0 <= self.min_lr <= self.lr):
            problems.append(f"min_lr must lie in 0..lr={self.lr}, got {self.min_lr!r}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip < 0:
            problems.append(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip!r}")
        if self.ema_decay is not None and not (0.0 <= self.ema_decay < 1.0):
            problems.append(f"ema_decay must lie in [0, 1) or be None, got {self.ema_decay!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if not self.max_loss > 0:
            problems.append(f"max_loss must be > 0, got {self.max_loss!r}")
        sync = self.sync_every
        if sync is not None and (isinstance(sync, bool) or not isinstance(sync, int) or sync < 1):
            problems.append(f"sync_every must be an integer >= 1 or None, got {sync!r}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            problems.append(f"minutes must be a positive number or None, got {self.minutes!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and logs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (older/newer files)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class TrainStep:
    """What the loop reports after every optimiser step (``trainer.history`` keeps them all)."""

    step: int  # optimiser steps taken so far (1 after the first)
    loss: float  # the batch's loss (averaged over processes)
    lr: float  # learning rate used for this step
    grad_norm: float  # global gradient norm before clipping
    step_seconds: float  # time this step took (the mean over a read-back burst)
    seconds: float  # training time so far, summed over steps (time between steps not counted)
    examples_per_s: float  # throughput of this step, all processes together
    epoch: float  # passes over the (per-process) training set so far


@dataclass(frozen=True)
class BudgetPlan:
    """What a wall-clock budget (``TrainConfig.minutes``) decided, after timing a few steps."""

    minutes: float  # the budget
    seconds_per_step: float  # measured (mean of the timed steps)
    steps: int  # the number of steps in total that fit (at most TrainConfig.steps)
    asked: int  # TrainConfig.steps

    def __str__(self) -> str:
        fits = (
            f"all {self.asked:,} steps fit" if self.steps >= self.asked
            else f"{self.steps:,} steps fit (all {self.asked:,} would take "
            f"{self.asked * self.seconds_per_step / 60:.0f} minutes)"
        )  # fmt: skip
        return (
            f"Time budget {self.minutes:g} minutes: one step takes {self.seconds_per_step:.2f} s "
            f"here, so {fits}; the learning rate now decays to its end at step {self.steps:,}."
        )


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf or exploded; the message says which step and what to change."""

    def __init__(self, message: str, step: int, loss: float) -> None:
        super().__init__(message)
        self.step = step
        self.loss = loss


class Loss(Protocol):
    """What the loop trains on: ``loss(model, batch, generator) -> scalar tensor``.

    Optional extras the loop uses when present: ``check(model, data)`` (validate once, before
    training), ``to_dict()`` (plain settings saved in checkpoints) and ``schedule`` (a diffusion
    loss's noise schedule, saved with the model: sampling needs the same one).
    """

    def __call__(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> torch.Tensor: ...


# ----------------------------------------------------------------------------- pieces
def learning_rate_at(step: int, config: TrainConfig, total_steps: int | None = None) -> float:
    """Learning rate for optimiser step ``step`` (1-based): linear warm-up, then cosine decay.

    ``lr * step / warmup_steps`` while ``step <= warmup_steps``; afterwards
    ``min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2`` with progress going 0 -> 1
    from the end of the warm-up to ``total_steps`` (default ``config.steps``; SGDR, Loshchilov
    & Hutter 2017, Eq. 5).
    """
    total = config.steps if total_steps is None else total_steps
    if config.warmup_steps > 0 and step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    decay_steps = max(1, total - config.warmup_steps)
    progress = min(1.0, max(0.0, (step - config.warmup_steps) / decay_steps))
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's weights: ``ema <- d * ema + (1 - d) * weights``.

    The averaged weights are smoother than the last step's and give visibly cleaner samples.
    The decay ``d`` ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as in
    TensorFlow's ``ExponentialMovingAverage(num_updates=...)``), so a short run's EMA is not
    stuck near the random initial weights. ``ema.model`` is a full copy, ready to sample.
    """

    def __init__(self, model: nn.Module, decay: float = 0.995) -> None:
        if not (0.0 <= decay < 1.0):
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay!r}.")
        self.decay = decay
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_params, params = list(self.model.parameters()), list(model.parameters())
        if len(ema_params) != len(params):
            raise ValueError("EMA.update: the model does not match the EMA copy's parameters.")
        # ema + (1 - d) * (p - ema) for every tensor at once (one "foreach" kernel, not ~100)
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.num_updates += 1


class TensorBatches:
    """Random batches from tensors held in memory: the loop's source of data.

    ``TensorBatches(images, labels)`` draws ``(images[i], labels[i])`` for ``i`` uniform with
    replacement. ``augment(x, generator)`` (e.g. :func:`diffusion_edu.data.augment`), when
    given, transforms the first tensor of every batch.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        if not tensors or not all(isinstance(x, torch.Tensor) and x.ndim >= 1 for x in tensors):
            raise ValueError("TensorBatches needs one or more tensors with a first (batch) axis.")
        sizes = {x.shape[0] for x in tensors}
        if len(sizes) != 1:
            raise ValueError(f"the tensors must have the same length, got {sorted(sizes)}.")
        if tensors[0].shape[0] == 0:
            raise ValueError("no training examples (after sharding over processes).")
        for x in tensors:
            if x.is_floating_point() and not torch.isfinite(x).all():
                raise ValueError("the data contain NaN or inf values; fix the data first.")
        self.tensors, self.augment = tensors, augment

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def shard(self, rank: int, world_size: int) -> TensorBatches:
        """This process's share under DDP: every ``world_size``-th example from ``rank``."""
        if world_size == 1:
            return self
        return TensorBatches(*(x[rank::world_size] for x in self.tensors), augment=self.augment)

    def to(self, device: torch.device) -> TensorBatches:
        """A copy on ``device`` (floats as float32), moved once so batches need no copying."""
        moved = (
            x.to(device, torch.float32 if x.is_floating_point() else x.dtype).contiguous()
            for x in self.tensors
        )
        return TensorBatches(*moved, augment=self.augment)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``n`` random examples of each tensor (the first one augmented, if asked)."""
        idx = torch.randint(0, len(self), (n,), generator=generator, device=generator.device)
        batch = [x[idx.to(x.device)] for x in self.tensors]
        if self.augment is not None:
            batch[0] = self.augment(batch[0], generator)
        return tuple(batch)

    def describe(self) -> str:
        """e.g. "4,500 examples; values -1.00..1.00" (the first tensor's range)."""
        first = self.tensors[0]
        values = f"; values {float(first.min()):.2f}..{float(first.max()):.2f}"
        return f"{len(self):,} examples" + (values if first.is_floating_point() else "")


# ----------------------------------------------------------------------------- the loop
class Trainer:
    """Trains ``model`` on ``loss`` with batches from ``data``; :meth:`run` yields every step.

    Args:
        model: any ``nn.Module``; the loss decides how it is called.
        loss: ``loss(model, batch, generator) -> scalar`` (see :class:`Loss`).
        data: a :class:`TensorBatches`; moved to the device once.
        config: :class:`TrainConfig`.
        device: where to train; default :func:`~diffusion_edu.pick_device`.
        verbose: print the device, precision and data at the start, and a budget's plan.
        progress: show a ``tqdm`` progress bar with the loss and examples/s.
        expect: ``expect(steps) -> str``: what that many steps are expected to give, printed
            with a budget's plan (a recipe's measured table, e.g.).
        desc: the progress bar's label: what is being trained (e.g. ``"U-Net with skips"``).

    Under ``torch.distributed`` (e.g. ``torchrun``) the model is wrapped in
    DistributedDataParallel, each process trains on its own shard of ``data`` with its own
    seed, and the EMA follows the unwrapped model. Only rank 0 prints and writes checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Loss,
        data: TensorBatches,
        config: TrainConfig | None = None,
        device: torch.device | str | None = None,
        *,
        verbose: bool = True,
        progress: bool = True,
        expect: Callable[[int], str] | None = None,
        desc: str = "training",
    ) -> None:
        self.config = config = config or TrainConfig()
        self.device = device = pick_device(device)
        self.rank, self.world_size = distributed.rank_and_world()
        if config.batch_size % self.world_size:
            raise ValueError(
                f"batch_size={config.batch_size} must be divisible by the number of processes "
                f"({self.world_size}): each process takes batch_size / world_size examples."
            )
        self.local_batch = config.batch_size // self.world_size
        self.sync_every = config.sync_every or (1 if device.type == "cpu" else 25)
        self.loss, self.expect, self.desc = loss, expect, desc
        self.model = model.to(device)
        check = getattr(loss, "check", None)
        if check is not None:
            check(self.model, data)  # e.g. "pixels must be in [-1, 1]", before any work
        self.data = data.shard(self.rank, self.world_size).to(device)
        self.net = distributed.wrap(self.model, device)  # what the loss calls
        if config.compile:  # fuses small operations; 30-90 s to compile on a 2-core CPU
            self.net = torch.compile(self.net)
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay is not None else None
        # fused: one kernel updates every tensor (CPU and CUDA); measured 5% faster on 2 cores.
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
            fused=device.type in ("cpu", "cuda"),
        )  # fmt: skip
        if config.precision == "auto":
            self.amp_dtype = autocast_dtype(device)
        else:
            self.amp_dtype = torch.bfloat16 if config.precision == "bf16" else None
        # float16 (older GPUs) needs loss scaling; bfloat16 has float32's range and does not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed + self.rank * distributed.RANK_SEED_STRIDE)
        self.threads = threads_for(self.model, device)  # the thread policy (device.py)
        self.step = 0
        self.history: list[TrainStep] = []
        self.plan: BudgetPlan | None = None
        self.verbose, self.progress = verbose and self.rank == 0, progress and self.rank == 0
        if self.verbose:
            print(self.describe())

    @property
    def total_steps(self) -> int:
        """Where training ends: ``config.steps``, or what a time budget's plan chose."""
        return self.plan.steps if self.plan is not None else self.config.steps

    @property
    def ema_model(self) -> nn.Module:
        """The EMA copy of the model (the model itself without an EMA): sample from this one."""
        return self.ema.model if self.ema is not None else self.model

    def describe(self) -> str:
        """Which device and precision were chosen, and the data: printed at start."""
        if self.config.precision == "auto":
            where = describe_device(self.device)
        else:
            precision = "bfloat16 mixed precision" if self.amp_dtype else "float32"
            where = f"Using {self.device}, {precision} (precision={self.config.precision!r})."
        procs = f" on {self.world_size} processes" if self.world_size > 1 else ""
        shard = " (each process its own share)" if self.world_size > 1 else ""
        budget = f", at most {self.config.minutes:g} minutes" if self.config.minutes else ""
        return (
            f"{where} Training{procs} on {self.data.describe()}{shard}, batch "
            f"{self.config.batch_size}, {self.config.steps:,} steps{budget}."
        )

    # ------------------------------------------------------------------ one step
    def take_step(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimiser step; returns (loss, gradient norm, learning rate), the first two on
        the device. With ``sync_every == 1`` a bad loss or gradient stops training before the
        step is applied."""
        lr = learning_rate_at(self.step + 1, self.config, self.total_steps)  # warm-up, cosine
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        batch = self.data.draw(self.local_batch, self.generator)  # 1. a random batch
        with torch.autocast(
            self.device.type, self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            loss = self.loss(self.net, batch, self.generator)  # 2. how wrong the model is
        loss_mean = distributed.mean_over_processes(loss.detach())
        if self.sync_every == 1:  # NaN or exploded: stop before the weights change
            self._check(float(loss_mean), "loss", lr, self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # 3. gradients (averaged over processes by DDP)
        self.scaler.unscale_(self.optimizer)
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)  # 4. clip
        if self.sync_every == 1:
            self._check(float(grad_norm), "gradient norm", lr, self.step + 1)
        self.scaler.step(self.optimizer)  # 5. AdamW moves the weights
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)  # 6. the moving average follows
        self.step += 1
        return loss_mean, grad_norm.detach(), lr

    def _check(self, value: float, what: str, lr: float, step: int) -> None:
        """Raise :class:`TrainingDivergedError` if ``value`` is NaN/inf (or the loss too big)."""
        if what == "loss":
            bad = not math.isfinite(value) or value > self.config.max_loss
        else:  # with float16 loss scaling inf gradients are normal: the scaler skips the step
            bad = not math.isfinite(value) and self.amp_dtype != torch.float16
        if not bad:
            return
        if math.isnan(value):
            state = "is NaN (not a number)"
        elif math.isinf(value):
            state = "is infinite"
        else:
            state = f"exploded to {value:.3g} (limit max_loss={self.config.max_loss:g})"
        if step > self.step:
            applied = "This step was not applied"
        else:  # found when the values were read back, sync_every steps at a time
            applied = (
                f"The weights in memory already include steps {step}..{self.step} (values are "
                f"read back every {self.sync_every} steps), but"
            )
        raise TrainingDivergedError(
            f"Training stopped at step {step}: the {what} {state}. {applied} and no checkpoint "
            "was written for it (the last good checkpoint is untouched). "
            f"Likely causes: the learning rate is too high (it was {lr:.3g} at this step; try "
            f"{lr / 10:.3g} or a longer warm-up); or bad data ({self.data.describe()}).",
            step,
            value,
        )

    def _burst(self, target: int) -> list[TrainStep]:
        """Steps up to the next read-back (``sync_every`` steps, or to ``target``), as records.

        The losses and gradient norms of the burst come back from the device in one copy.
        """
        start = perf_counter()
        pending = []
        with cpu_threads(self.threads):  # restored before the records go back to the caller
            while not pending or (self.step % self.sync_every and self.step < target):
                pending.append(self.take_step())
            values = torch.stack([torch.stack([l.float(), g.float()]) for l, g, _ in pending])
            values = values.tolist()  # the one device -> host copy: (steps, 2)
        step_seconds = (perf_counter() - start) / len(pending)
        first = self.step - len(pending) + 1
        done = self.history[-1].seconds if self.history else 0.0
        records = []
        for i, ((loss, grad_norm), (_, _, lr)) in enumerate(zip(values, pending, strict=True)):
            self._check(loss, "loss", lr, first + i)
            self._check(grad_norm, "gradient norm", lr, first + i)
            records.append(
                TrainStep(
                    step=first + i,
                    loss=loss,
                    lr=lr,
                    grad_norm=grad_norm,
                    step_seconds=step_seconds,
                    seconds=done + (i + 1) * step_seconds,
                    examples_per_s=self.config.batch_size / step_seconds,
                    epoch=(first + i) * self.local_batch / len(self.data),
                )
            )
        self.history.extend(records)
        return records

    def _make_plan(self, timed: list[TrainStep]) -> None:
        """Fix the number of steps that fit in ``config.minutes`` from the timed steps.

        Their mean time (slow steps count: a median would promise too many), and a reserve of
        :data:`BUDGET_RESERVE` of the time left for steps that turn out slower.
        """
        assert self.config.minutes is not None
        per_step = statistics.fmean(r.step_seconds for r in timed)
        left = (self.config.minutes * 60 - self.history[-1].seconds) * (1 - BUDGET_RESERVE)
        fits = self.step + max(0, math.floor(left / per_step))
        steps = min(self.config.steps, fits)
        self.plan = BudgetPlan(self.config.minutes, per_step, steps, self.config.steps)
        if self.verbose:
            expect = f" {self.expect(steps)}" if self.expect is not None else ""
            tqdm.write(f"{self.plan}{expect}")

    def run(self, steps: int | None = None) -> Iterator[TrainStep]:
        """Train to the end (or ``steps`` more), yielding a :class:`TrainStep` per step.

        Stop early by breaking out of the loop; call :meth:`run` again to go on. With
        ``sync_every > 1`` the records come in bursts of ``sync_every`` (read back together),
        and ``trainer.step`` is the burst's last step while they are yielded.
        """
        stop_at = math.inf if steps is None else self.step + steps
        bar = tqdm(
            total=self.total_steps, initial=self.step, desc=self.desc, unit="step",
            disable=not self.progress, dynamic_ncols=True,
        )  # fmt: skip
        first_burst_end = None  # its time includes one-off warm-up work: not used for a plan
        try:
            while self.step < min(self.total_steps, stop_at):
                records = self._burst(int(min(self.total_steps, stop_at)))
                first_burst_end = first_burst_end or records[-1].step
                for record in records:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record.loss:.4f}", ex_s=f"{record.examples_per_s:.0f}",
                                    refresh=False)  # fmt: skip
                    yield record
                timed = [r for r in self.history if r.step > first_burst_end]
                if self.config.minutes and self.plan is None and len(timed) >= PROBE_STEPS:
                    self._make_plan(timed)
                    bar.total = self.total_steps
        finally:
            bar.close()

    # ------------------------------------------------------------------ checkpoints
    def rng_state(self) -> dict[str, Any]:
        """Every process's generator state (gathered under DDP), for an exact resume."""
        return {
            "generators": distributed.gather(self.generator.get_state()),
            "world_size": self.world_size,
            "torch": torch.get_rng_state(),
            "ema_num_updates": self.ema.num_updates if self.ema is not None else 0,
        }

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint with everything needed to resume (rank 0 writes; all must call).

        ``extra``: plain data of the caller's (the command line keeps its data options here).
        """
        rng = self.rng_state()  # collective under DDP: every rank takes part
        path = Path(path)
        if self.rank == 0:
            to_dict = getattr(self.loss, "to_dict", None)
            save_checkpoint(
                path,
                self.model,
                getattr(self.loss, "schedule", None),
                step=self.step,
                ema_model=self.ema.model if self.ema is not None else None,
                optimizer=self.optimizer,
                rng_state=rng,
                train_config=self.config.to_dict(),
                history=[dataclasses.asdict(r) for r in self.history],
                loss=to_dict() if to_dict is not None else None,
                plan=dataclasses.asdict(self.plan) if self.plan is not None else None,
                extra=extra,
            )
        distributed.barrier()
        return path

    def load_state(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint made by :meth:`save`: weights, EMA, optimiser, step, RNG.

        The result is the same as if training had never stopped (same losses, same weights),
        provided the number of processes is the same. That includes torch's global random
        state, which dropout layers draw from: resuming restores it, as it was when saved.
        """
        self.model.load_state_dict(checkpoint.model_state)
        if self.ema is not None and checkpoint.ema_state is not None:
            self.ema.model.load_state_dict(checkpoint.ema_state)
        if checkpoint.optimizer_state is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        self.step = checkpoint.step
        columns = checkpoint.history or {}
        names = [f.name for f in dataclasses.fields(TrainStep)]
        self.history = [
            TrainStep(**{k: (int if k == "step" else float)(columns[k][i]) if k in columns
                         else math.nan for k in names})
            for i in range(len(columns.get("step", [])))
        ]  # fmt: skip
        self.plan = BudgetPlan(**checkpoint.plan) if checkpoint.plan else None
        rng = checkpoint.rng_state or {}
        if self.ema is not None:
            self.ema.num_updates = int(rng.get("ema_num_updates", checkpoint.step))
        states = rng.get("generators")
        if states is not None and rng.get("world_size") == self.world_size:
            self.generator.set_state(states[self.rank].cpu())
            if "torch" in rng:
                torch.set_rng_state(rng["torch"].cpu())
            return
        if self.rank == 0:
            warnings.warn(
                "the checkpoint's random state is for a different number of processes; "
                "training continues with fresh seeds (not bit-identical to an "
                "uninterrupted run).",
                stacklevel=2,
            )
        self.generator.manual_seed(
            self.config.seed + self.rank * distributed.RANK_SEED_STRIDE + 7919 * self.step
        )
