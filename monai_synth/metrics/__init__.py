"""monai_synth.metrics: generative metrics (FID / KID on offline TF-Inception weights) and label agreement.

``score_labels``: mean foreground Dice / mIoU of label maps (MONAI metrics); ``score_cases`` /
``summarise_cases``: per-image Dice and HD95 and their means; cheap diversity figures
(duplicate rate, per-pixel spread, mask sanity), the collapsed-generator check and the mask fidelity of
mask-conditioned generation.
"""

from __future__ import annotations

from .diversity import (
    GeneratorCollapseError,
    check_generator_diversity,
    class_area_range,
    diversity_ratio,
    generated_duplicate_rate,
    mask_sanity,
)
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
from .mask_fidelity import MaskFidelity, fidelity_scorer, fidelity_summary, mask_dice, train_fidelity_segmenter
from .segmentation import score_cases, score_labels, summarise_cases

__all__ = [
    "MaskFidelity",
    "fidelity_scorer",
    "fidelity_summary",
    "mask_dice",
    "train_fidelity_segmenter",
    "INCEPTION_FEATURE_DIM",
    "INCEPTION_IMAGE_SIZE",
    "RESIZE_MODES",
    "FeatureStatistics",
    "GeneratorCollapseError",
    "check_generator_diversity",
    "class_area_range",
    "diversity_ratio",
    "generated_duplicate_rate",
    "mask_sanity",
    "InceptionFeatureExtractor",
    "compute_fid",
    "compute_kid",
    "compute_set_features",
    "default_inception_weights_path",
    "fid_kid",
    "score_cases",
    "score_labels",
    "summarise_cases",
]
