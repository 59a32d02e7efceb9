"""monai_synth.data: datasets and datalists: the built-in phantom, real data discovery, 3D->2D slicing.

Also case-level splits, the resumable sampler of the GAN trainers, perceptual-hash de-duplication and the
orientation contract between internal arrays and files (``orientation``).
"""

from __future__ import annotations

from .datalist import SkipReport, discover_pairs, load_datalist, resolve_dataset
from .deduplication import DuplicateFilter, duplicate_rate, find_near_duplicates, perceptual_hash
from .phantom import (
    PHANTOM_BINARY_LABELS,
    PHANTOM_LABELS,
    PhantomDataset,
    generate_phantom,
    phantom_preview,
    write_phantom_dataset,
)
from .pipeline import PairedSliceDataset
from .slicing import extract_slices
from .splits import check_no_leakage, kfold_datalist, split_datalist, write_datalist

__all__ = [
    "PHANTOM_BINARY_LABELS",
    "PHANTOM_LABELS",
    "DuplicateFilter",
    "PairedSliceDataset",
    "PhantomDataset",
    "SkipReport",
    "check_no_leakage",
    "discover_pairs",
    "duplicate_rate",
    "extract_slices",
    "find_near_duplicates",
    "generate_phantom",
    "kfold_datalist",
    "load_datalist",
    "perceptual_hash",
    "phantom_preview",
    "resolve_dataset",
    "split_datalist",
    "write_datalist",
    "write_phantom_dataset",
]
