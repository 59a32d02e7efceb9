"""Ignite/MONAI trainers for the GAN families."""

from __future__ import annotations

from .paired_gan_trainer import NonFiniteLossError, PairedGANTrainer
from .stylegan2_trainer import StyleGAN2Trainer, lazy_regularization_optimizer_kwargs

__all__ = ["NonFiniteLossError", "PairedGANTrainer", "StyleGAN2Trainer", "lazy_regularization_optimizer_kwargs"]
