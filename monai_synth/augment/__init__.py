"""monai_synth.augment: adaptive discriminator augmentation that moves image and mask together.

``PairedAugmentPipe`` (geometric ops on image + mask, intensity ops on the image only, probability ``p`` as a buffer).
"""

from __future__ import annotations

from .ada import PairedAugmentPipe

__all__ = ["PairedAugmentPipe"]
