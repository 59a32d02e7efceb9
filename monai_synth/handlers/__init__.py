"""Ignite handlers: checkpoints with resume, sample grids."""

from __future__ import annotations

from .checkpoint import GANCheckpointHandler, config_differences, load_checkpoint
from .pair_writer import GeneratedPairWriter
from .progress import LossProgressBar, TrainingSummaryWriter
from .sample_grid import PairedSampleGridSaver

__all__ = [
    "GANCheckpointHandler",
    "GeneratedPairWriter",
    "LossProgressBar",
    "PairedSampleGridSaver",
    "TrainingSummaryWriter",
    "config_differences",
    "load_checkpoint",
]
