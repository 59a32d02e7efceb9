"""monai_synth.metrics: generative metrics (FID / KID on offline TF-Inception weights)."""

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
]
