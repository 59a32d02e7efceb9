"""monai_synth.apps.generation: the labelled-data factory every generator shares (NIfTI pairs, datalist, manifest).

Also the one decode -> post-process chain of generated pairs and the generator-side inference parts.
"""

from __future__ import annotations

from .factory import PairedDatasetFactory, sample_seed
from .postprocessing import GenerationParts, generator_inference, pair_postprocessing, resolve_num_components

__all__ = [
    "GenerationParts",
    "PairedDatasetFactory",
    "generator_inference",
    "pair_postprocessing",
    "resolve_num_components",
    "sample_seed",
]
