"""monai_synth.networks.nets: whole networks: paired DCGAN, StyleGAN2 generator / discriminator, the SemanticGAN
generator (image + mask branch), the style interpreter's pixel-classifier ensemble and the latent encoder."""

from __future__ import annotations

from .dcgan import (
    MIN_FEATURE_SIZE,
    PairedDCGANDiscriminator,
    PairedDCGANGenerator,
    init_dcgan_weights,
)
from .latent_encoder import LatentEncoder
from .pixel_classifier import PixelClassifierEnsemble, jensen_shannon_disagreement, majority_vote
from .semantic_stylegan2 import SemanticStyleGAN2Generator, encode_mask_logits
from .stylegan2 import (
    CONDITION_RESAMPLING,
    STYLEGAN2_MODES,
    MappingNetwork,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    StyleGAN2Output,
    encode_condition,
    mode_channel_range,
    mode_channels,
    resize_condition,
    stylegan2_channels,
)

__all__ = [
    "LatentEncoder",
    "PixelClassifierEnsemble",
    "jensen_shannon_disagreement",
    "majority_vote",
    "STYLEGAN2_MODES",
    "SemanticStyleGAN2Generator",
    "encode_mask_logits",
    "CONDITION_RESAMPLING",
    "encode_condition",
    "resize_condition",
    "MappingNetwork",
    "StyleGAN2Generator",
    "StyleGAN2Discriminator",
    "StyleGAN2Output",
    "mode_channels",
    "mode_channel_range",
    "stylegan2_channels",
    "MIN_FEATURE_SIZE",
    "PairedDCGANGenerator",
    "PairedDCGANDiscriminator",
    "init_dcgan_weights",
]
