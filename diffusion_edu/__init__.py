"""diffusion_edu: a small, readable library for learning how diffusion models work.

The public API, name by name (paper convention: x_0 is data, x_T is noise, t runs 1..T):
"""

from diffusion_edu.checkpoints import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from diffusion_edu.data import (
    DownloadError,
    MNISTData,
    augment,
    data_dir,
    download_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
)
from diffusion_edu.device import autocast_dtype, describe_device, pick_device, quick_mode
from diffusion_edu.forward import (
    predict_eps_from_x0,
    predict_x0_from_eps,
    q_posterior,
    q_sample,
    q_step,
)
from diffusion_edu.metrics import (
    MemorisationReport,
    QualityReport,
    class_agreement,
    evaluate_samples,
    frechet_distance,
    frechet_floor,
    load_classifier,
    memorisation_report,
)
from diffusion_edu.models import UNet, UNetConfig, count_parameters, sinusoidal_embedding
from diffusion_edu.pretrained import load_pretrained, pretrained_info
from diffusion_edu.recipes import RECIPES, Recipe, digits_recipe
from diffusion_edu.samplers import (
    SampleStep,
    Trajectory,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    sample,
    sample_steps,
)
from diffusion_edu.schedules import NoiseSchedule, make_schedule, summarize_schedule
from diffusion_edu.training import (
    EMA,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    TrainStep,
    diffusion_loss,
    drop_labels,
    learning_rate_at,
    min_snr_weight,
    train,
)

__version__ = "0.1.0"

__all__ = [
    # schedules and the forward process
    "NoiseSchedule",
    "make_schedule",
    "summarize_schedule",
    "q_step",
    "q_sample",
    "q_posterior",
    "predict_x0_from_eps",
    "predict_eps_from_x0",
    # the reverse process
    "ddpm_step",
    "ddim_step",
    "ddim_timesteps",
    "sample",
    "sample_steps",
    "SampleStep",
    "Trajectory",
    # models
    "UNet",
    "UNetConfig",
    "count_parameters",
    "load_pretrained",
    "pretrained_info",
    "sinusoidal_embedding",
    # training and checkpoints
    "train",
    "Trainer",
    "TrainConfig",
    "TrainStep",
    "TrainingDivergedError",
    "diffusion_loss",
    "min_snr_weight",
    "Recipe",
    "RECIPES",
    "digits_recipe",
    "drop_labels",
    "learning_rate_at",
    "EMA",
    "save_checkpoint",
    "load_checkpoint",
    "Checkpoint",
    "CheckpointError",
    # data
    "load_mnist",
    "MNISTData",
    "augment",
    "data_dir",
    "read_idx",
    "load_idx_folder",
    "download_mnist",
    "DownloadError",
    # quality metrics
    "evaluate_samples",
    "QualityReport",
    "class_agreement",
    "frechet_distance",
    "frechet_floor",
    "memorisation_report",
    "MemorisationReport",
    "load_classifier",
    # where code runs
    "pick_device",
    "autocast_dtype",
    "describe_device",
    "quick_mode",
]
