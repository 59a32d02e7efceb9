"""monai_synth.handlers: ignite handlers attached in the bundle configs.

Checkpoints with resume and generator export, model-zoo publishing, sample grids, progress and run summary, generator EMA,
ADA p, pair writer, and the quality tracker of generator training (duplicates, diversity, mask sanity, KID/FID, collapse stop, best snapshot).
"""

from __future__ import annotations

from .checkpoint import GANCheckpointHandler, config_differences, load_checkpoint
from .model_zoo import ModelZooPublisher
from .pair_writer import GeneratedPairWriter
from .progress import LossProgressBar, TrainingSummaryWriter
from .quality import GeneratorQualityHandler, real_pairs_sample
from .sample_grid import PairedSampleGridSaver
from .stylegan import AdaptiveAugmentHandler, GeneratorEMAHandler, make_ema_copy

__all__ = [
    "AdaptiveAugmentHandler",
    "GeneratorEMAHandler",
    "make_ema_copy",
    "GANCheckpointHandler",
    "GeneratedPairWriter",
    "GeneratorQualityHandler",
    "ModelZooPublisher",
    "real_pairs_sample",
    "LossProgressBar",
    "PairedSampleGridSaver",
    "TrainingSummaryWriter",
    "config_differences",
    "load_checkpoint",
]
