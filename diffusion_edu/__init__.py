"""diffusion_edu: a small, readable library for learning how diffusion models work.

The names here are the course path: what the lessons and the README's tour use (paper
convention: x_0 is data, x_T is noise, t runs 1..T). Everything else is imported from its
module, e.g. ``from diffusion_edu.checkpoints import load_checkpoint``; the README's library
map says which module holds what.
"""

from diffusion_edu.data import load_mnist
from diffusion_edu.device import describe_device, pick_device, quick_mode
from diffusion_edu.forward import q_sample, q_step
from diffusion_edu.loop import TensorBatches, TrainConfig, Trainer
from diffusion_edu.metrics import evaluate_samples
from diffusion_edu.models import UNet, UNetConfig, count_parameters
from diffusion_edu.pretrained import load_pretrained, pretrained_info
from diffusion_edu.recipes import digits_recipe
from diffusion_edu.samplers import sample
from diffusion_edu.schedules import NoiseSchedule, make_schedule
from diffusion_edu.training import DiffusionLoss

__version__ = "0.1.0"

__all__ = [
    # the noise schedule and the forward process (lessons 03-04)
    "NoiseSchedule",
    "make_schedule",
    "q_step",
    "q_sample",
    # the reverse process (lessons 05, 07)
    "sample",
    # models (lessons 06-07)
    "UNet",
    "UNetConfig",
    "count_parameters",
    "load_pretrained",
    "pretrained_info",
    # training (lessons 05, 07)
    "Trainer",
    "TrainConfig",
    "TensorBatches",
    "DiffusionLoss",
    "digits_recipe",
    # data and quality (lessons 00, 02, 07)
    "load_mnist",
    "evaluate_samples",
    # where code runs (every lesson)
    "pick_device",
    "describe_device",
    "quick_mode",
]
