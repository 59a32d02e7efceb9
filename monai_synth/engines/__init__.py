"""Ignite/MONAI trainers for the GAN families."""

from __future__ import annotations

from .paired_gan_trainer import NonFiniteLossError, PairedGANTrainer

__all__ = ["NonFiniteLossError", "PairedGANTrainer"]
