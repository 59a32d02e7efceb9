"""monai_synth.augment: discriminator augmentation (ADA, DiffAugment) that moves image and mask together.

``PairedAugmentPipe`` (ADA, probability ``p`` as a buffer) and ``PairedDiffAugment`` (fixed DiffAugment policy).
"""

from __future__ import annotations

from .ada import PairedAugmentPipe
from .diffaugment import DIFFAUGMENT_POLICIES, PairedDiffAugment, select_discriminator_augment

__all__ = ["DIFFAUGMENT_POLICIES", "PairedAugmentPipe", "PairedDiffAugment", "select_discriminator_augment"]
