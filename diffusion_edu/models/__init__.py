"""Noise predictors: any module ``model(x_t, t, cond) -> prediction`` (see ``common``)."""

from diffusion_edu.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    LatentDiffusion,
    LatentDiffusionConfig,
    latent_scale_factor,
)
from diffusion_edu.models.common import (
    MODEL_CLASSES,
    build_model,
    config_from_dict,
    config_to_dict,
    decodes_latents,
    forward_flops,
    model_for_config,
    model_kind,
    null_condition,
    unwrap,
)
from diffusion_edu.models.dit import DiT, DiTConfig
from diffusion_edu.models.embeddings import sinusoidal_embedding
from diffusion_edu.models.toy_mlp import ToyMLPConfig, ToyNoisePredictor
from diffusion_edu.models.unet import UNet, UNetConfig, count_parameters
from diffusion_edu.models.unet2015 import Stage, conv_output_size, unet2015_stages

__all__ = [
    "UNet",
    "UNetConfig",
    "DiT",
    "DiTConfig",
    "Autoencoder",
    "AutoencoderConfig",
    "LatentDiffusion",
    "LatentDiffusionConfig",
    "latent_scale_factor",
    "ToyMLPConfig",
    "ToyNoisePredictor",
    "count_parameters",
    "sinusoidal_embedding",
    "MODEL_CLASSES",
    "build_model",
    "config_to_dict",
    "config_from_dict",
    "model_kind",
    "model_for_config",
    "null_condition",
    "forward_flops",
    "decodes_latents",
    "unwrap",
    "Stage",
    "conv_output_size",
    "unet2015_stages",
]
