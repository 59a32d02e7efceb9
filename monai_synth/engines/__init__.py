"""Ignite/MONAI trainers for the GAN families (paired DCGAN, StyleGAN2, semi-supervised SemanticGAN).

``GANTrainerBase`` holds what they share (latent RNG, finite-loss check, resumable data order, state);
``distributed`` runs them (and the study's segmenters) in several processes under ``torchrun``.
"""

from __future__ import annotations

from . import distributed  # noqa: F401  (the module, for `monai_synth.engines.distributed` in configs)
from .gan_trainer import GANTrainerBase, NonFiniteLossError, check_finite_loss, resumable_loader
from .paired_gan_trainer import PairedGANTrainer
from .semanticgan_trainer import SemanticGANTrainer
from .stylegan2_trainer import StyleGAN2Trainer, lazy_regularization_optimizer_kwargs

__all__ = [
    "GANTrainerBase",
    "NonFiniteLossError",
    "PairedGANTrainer",
    "SemanticGANTrainer",
    "StyleGAN2Trainer",
    "check_finite_loss",
    "lazy_regularization_optimizer_kwargs",
    "resumable_loader",
]
