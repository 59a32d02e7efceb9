"""monai_synth.metrics: generative metrics (FID / KID on offline TF-Inception weights) and label agreement.

``score_labels``: mean foreground Dice / mIoU of label maps (MONAI metrics).
"""

from __future__ import annotations

from .fid import (
    INCEPTION_FEATURE_DIM,
    INCEPTION_IMAGE_SIZE,
    RESIZE_MODES,
    FeatureStatistics,
    InceptionFeatureExtractor,
    compute_fid,
    compute_kid,
    compute_set_features,
    default_inception_weights_path,
    fid_kid,
)
from .segmentation import score_labels

__all__ = [
    "INCEPTION_FEATURE_DIM",
    "INCEPTION_IMAGE_SIZE",
    "RESIZE_MODES",
    "FeatureStatistics",
    "InceptionFeatureExtractor",
    "compute_fid",
    "compute_kid",
    "compute_set_features",
    "default_inception_weights_path",
    "fid_kid",
    "score_labels",
]
