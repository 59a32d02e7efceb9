"""monai_synth.inferers: MONAI ``Inferer`` subclasses only (paired generation, style interpreter, projection and
SemanticGAN segmentation).

Plus the batch preparation they need: seeds -> latents (``SeedLatents``, ``latent_spec``) and generator features.
"""

from __future__ import annotations

from .paired_generation import PairedGenerationInferer, SeedLatents, latent_spec
from .projection_segmentation import ProjectionSegmentationInferer
from .semantic_segmentation import SemanticGANInferer
from .style_interpreter import StyleInterpreterInferer, generator_features, image_uncertainty_score

__all__ = [
    "PairedGenerationInferer",
    "ProjectionSegmentationInferer",
    "SeedLatents",
    "SemanticGANInferer",
    "StyleInterpreterInferer",
    "generator_features",
    "image_uncertainty_score",
    "latent_spec",
]
