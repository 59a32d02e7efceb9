"""Post-processing of generated label maps (largest component per class, hole filling).

Thresholding GAN mask channels is done by ``DecodePaired(..., threshold=...)`` (paired tensors) or MONAI's
``AsDiscrete(threshold=..., dtype=torch.int64)`` (a lone mask channel); see :mod:`.array`. Near-duplicate
detection of generated sets lives in :mod:`monai_synth.data.deduplication`.
"""

from __future__ import annotations

from .array import PostprocessMask, mask_change_fraction
from .dictionary import PostprocessMaskD, PostprocessMaskd, PostprocessMaskDict

__all__ = ["PostprocessMask", "mask_change_fraction", "PostprocessMaskd", "PostprocessMaskD", "PostprocessMaskDict"]
