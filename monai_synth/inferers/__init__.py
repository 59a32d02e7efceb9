"""monai_synth.inferers: MONAI ``Inferer`` subclasses only (paired generation, style interpreter, projection segmentation).

Plus the batch preparation they need: seeds -> latents (``SeedLatents``, ``latent_spec``) and generator features.
"""

from __future__ import annotations

from .paired_generation import PairedGenerationInferer, SeedLatents, latent_spec
from .projection_segmentation import ProjectionSegmentationInferer
from .style_interpreter import StyleInterpreterInferer, generator_features, image_uncertainty_score

__all__ = [
    "PairedGenerationInferer",
    "ProjectionSegmentationInferer",
    "SeedLatents",
    "StyleInterpreterInferer",
    "generator_features",
    "image_uncertainty_score",
    "latent_spec",
]
