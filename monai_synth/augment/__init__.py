"""monai_synth.augment: adaptive discriminator augmentation (paired-aware)."""

from __future__ import annotations

from .ada import PairedAugmentPipe

__all__ = ["PairedAugmentPipe"]
