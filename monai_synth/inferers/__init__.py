"""Inferers (MONAI ``Inferer`` subclasses), the paired-generation factory and the style interpreter."""

from __future__ import annotations

from .annotation import export_for_annotation, load_annotations, train_interpreter_from_annotations
from .paired_generation import (
    PairedDatasetFactory,
    PairedGenerationInferer,
    SeedLatents,
    latent_spec,
    load_generator,
    sample_seed,
)
from .style_interpreter import StyleInterpreterInferer, image_uncertainty_score, train_style_interpreter

__all__ = [
    "PairedDatasetFactory",
    "PairedGenerationInferer",
    "SeedLatents",
    "latent_spec",
    "load_generator",
    "sample_seed",
    "StyleInterpreterInferer",
    "image_uncertainty_score",
    "train_style_interpreter",
    "export_for_annotation",
    "load_annotations",
    "train_interpreter_from_annotations",
]
