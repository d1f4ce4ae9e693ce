"""Noise predictors: any module ``(x_t, t, labels) -> eps_hat``."""

from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import Stage, conv_output_size, unet2015_stages

__all__ = [
    "UNet",
    "UNetConfig",
    "count_parameters",
    "sinusoidal_embedding",
    "Stage",
    "conv_output_size",
    "unet2015_stages",
]
