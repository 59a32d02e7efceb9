"""monai_synth.handlers: ignite handlers attached in the bundle configs.

Checkpoints with resume and generator export, sample grids, progress and run summary, generator EMA, ADA p, pair writer.
"""

from __future__ import annotations

from .checkpoint import GANCheckpointHandler, config_differences, load_checkpoint
from .pair_writer import GeneratedPairWriter
from .progress import LossProgressBar, TrainingSummaryWriter
from .sample_grid import PairedSampleGridSaver
from .stylegan import AdaptiveAugmentHandler, GeneratorEMAHandler, make_ema_copy

__all__ = [
    "AdaptiveAugmentHandler",
    "GeneratorEMAHandler",
    "make_ema_copy",
    "GANCheckpointHandler",
    "GeneratedPairWriter",
    "LossProgressBar",
    "PairedSampleGridSaver",
    "TrainingSummaryWriter",
    "config_differences",
    "load_checkpoint",
]
