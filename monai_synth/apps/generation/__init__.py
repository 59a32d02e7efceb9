"""monai_synth.apps.generation: the labelled-data factory every generator shares (NIfTI pairs, datalist, manifest).

Also the one decode -> post-process chain of generated pairs, the generator-side inference parts and the
MC-SG factory (masks from an M-SG or the user, images from a conditional StyleGAN2).
"""

from __future__ import annotations

from .conditional import ConditionalDatasetFactory, load_condition_masks, mask_files
from .factory import PairedDatasetFactory, sample_seed
from .postprocessing import GenerationParts, generator_inference, pair_postprocessing, resolve_num_components

__all__ = [
    "ConditionalDatasetFactory",
    "load_condition_masks",
    "mask_files",
    "GenerationParts",
    "PairedDatasetFactory",
    "generator_inference",
    "pair_postprocessing",
    "resolve_num_components",
    "sample_seed",
]
