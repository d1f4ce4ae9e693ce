"""Pictures for lesson 07 (training on MNIST): a live training monitor, the Min-SNR weights,
samples beside their nearest training digits."""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure

from diffusion_edu.loop import Trainer, TrainStep
from diffusion_edu.metrics import nearest_neighbour_distances
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule
from diffusion_edu.training import min_snr_weight
from diffusion_edu.viz.plots import LessonFigure, make_grid
from diffusion_edu.viz.widgets import FigureImage, WidgetView

__all__ = ["TrainingMonitor", "plot_min_snr_weights", "plot_nearest_training_digits"]


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what there is so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class TrainingMonitor(WidgetView):
    """Watch a run: the loss curve, and digits 0-9 drawn from the EMA model every few steps.

    Pass it as the ``callback`` of :func:`~diffusion_edu.train` (or call it with each record
    of ``trainer.run()``). Every ``every`` steps (and at the last step) it samples one image
    per digit with DDIM (``sample_steps`` steps, guidance ``guidance``, always the same seed,
    so the rows show the *same* noise turning into better digits) and redraws. ``every=None``
    takes six snapshots over the run, however many steps a time budget lets it take.

    Attributes:
        snapshots: ``(step, images)`` pairs, images ``(10, 1, 28, 28)`` in [-1, 1].
        widget: the picture (display the monitor, or ``monitor.widget``).
    """

    def __init__(
        self,
        trainer: Trainer,
        every: int | None = None,
        sample_steps: int = 20,
        guidance: float = 2.0,
        seed: int = 0,
    ) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1 (or None), got {every!r}.")
        self.trainer, self.every = trainer, every
        self.sample_steps, self.guidance, self.seed = sample_steps, guidance, seed
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.image = FigureImage()
        self.widget = self.image.widget

    def snapshot(self) -> torch.Tensor:
        """Digits 0-9 from the current EMA weights (the model goes back to training after)."""
        images = sample(
            self.trainer.ema_model, self.trainer.loss.schedule, labels=list(range(10)),
            sampler="ddim", steps=self.sample_steps, guidance=self.guidance, seed=self.seed,
            progress=False,
        ).cpu()  # fmt: skip
        self.snapshots.append((self.trainer.step, images))
        return images

    def __call__(self, record: TrainStep) -> None:
        last = record.step >= self.trainer.total_steps
        every = self.every or max(5, math.ceil(self.trainer.total_steps / 6))
        if record.step % every == 0 or last:
            self.snapshot()
            self.redraw()

    def figure(self) -> Figure:
        """Loss (per step and smoothed) on the left, one row of digits per snapshot on the right."""
        history = self.trainer.history
        fig = LessonFigure(figsize=(9.4, 3.6))
        ax_loss, ax_img = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
        if history:
            step, loss = [r.step for r in history], [r.loss for r in history]
            window = max(1, len(loss) // 30)
            ax_loss.plot(step, loss, color="0.75", lw=0.6, label="per step")
            steps = f"{window} step{'s' if window > 1 else ''}"
            ax_loss.plot(step, _smooth(loss, window), color="C0",
                         label=f"moving average ({steps})")  # fmt: skip
            ax_loss.set_yscale("log")
            ax_loss.legend(loc="upper right", fontsize=8)
        ax_loss.set(xlabel="optimiser step", ylabel="loss (MSE of the noise, log scale)",
                    title="Training loss")  # fmt: skip
        ax_img.axis("off")
        if self.snapshots:
            rows = torch.cat([images for _, images in self.snapshots])  # (10 * S, 1, 28, 28)
            ax_img.imshow(make_grid(rows, nrow=10), cmap="gray", vmin=0, vmax=1)
            n = len(self.snapshots)
            for i, (step, _) in enumerate(self.snapshots):
                y = (i + 0.5) / n
                ax_img.text(-0.02, 1 - y, f"step {step}", transform=ax_img.transAxes,
                            ha="right", va="center", fontsize=8)  # fmt: skip
            ax_img.set_title(f"Digits 0-9 from the EMA model (DDIM-{self.sample_steps}, "
                             f"guidance {self.guidance:g})", fontsize=10)  # fmt: skip
            ax_img.text(0.5, -0.04, "the same starting noise in every row",
                        transform=ax_img.transAxes, ha="center", va="top", fontsize=8)  # fmt: skip
        fig.tight_layout()
        return fig

    def redraw(self) -> None:
        self.image.show(self.figure())


def plot_min_snr_weights(schedule: NoiseSchedule, gamma: float = 5.0) -> Figure:
    """SNR(t) and the Min-SNR weight min(SNR, gamma) / SNR against t, on log axes."""
    t = torch.arange(1, schedule.T + 1)
    snr = schedule.snr[1:]
    weight = min_snr_weight(snr, gamma)
    fig = LessonFigure(figsize=(9.4, 3.4))  # JupyterLab's width: shown at its own size
    ax1, ax2 = fig.subplots(1, 2)
    ax1.semilogy(t, snr, color="C0")
    ax1.axhline(gamma, color="C3", ls="--", lw=1, label=f"gamma = {gamma:g}")
    ax1.set(xlabel="timestep t", ylabel="SNR(t) = alpha_bar / (1 - alpha_bar)",
            title=f"Signal-to-noise ratio ({schedule.name} schedule)")  # fmt: skip
    ax1.legend()
    ax2.semilogy(t, weight, color="C3")
    cross = int((snr > gamma).sum())  # timesteps 1..cross have SNR above gamma
    ax2.axvspan(1, max(cross, 1), color="C3", alpha=0.08)
    ax2.text(cross / 2, 0.5 * (weight.min() * 1.0) ** 0.5, f"t <= {cross}:\ndown-weighted",
             ha="center", fontsize=9)  # fmt: skip
    ax2.set(xlabel="timestep t", ylabel="weight of that image's error",
            title="Min-SNR weight min(SNR, gamma) / SNR")  # fmt: skip
    fig.tight_layout()
    return fig


def plot_nearest_training_digits(
    samples: torch.Tensor, train_images: torch.Tensor, n: int = 10
) -> Figure:
    """Top row: samples; bottom row: the closest training digit to each (pixel distance)."""
    samples = samples[:n].cpu()
    dist, idx = nearest_neighbour_distances(samples, train_images)  # (n, 1) each
    dist, idx = dist[:, 0], idx[:, 0]
    pairs = torch.cat([samples, train_images[idx].cpu()])  # (2n, 1, 28, 28)
    # At most JupyterLab's ~9.5 inches (wider is shrunk, text too); "constrained" lets the
    # digits fill that width instead of the default margins.
    fig = LessonFigure(figsize=(min(1.1 * len(samples), 9.4), 2.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(make_grid(pairs, nrow=len(samples)), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([15, 45], ["sample", "nearest\ntraining\ndigit"])
    ax.set_xticks([30 * i + 16 for i in range(len(samples))],
                  [f"{d:.1f}" for d in dist.tolist()], fontsize=8)  # fmt: skip
    ax.set_xlabel("pixel distance between the two (a copy would be ~0)")
    ax.set_title("Are the samples new digits, or copies of training digits?")
    for side in ax.spines.values():
        side.set_visible(False)
    return fig
