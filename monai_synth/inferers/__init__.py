"""Inferers (MONAI ``Inferer`` subclasses), the paired-generation factory and the style interpreter."""

from __future__ import annotations

from .annotation import export_for_annotation, load_annotations, train_interpreter_from_annotations
from .interpreter_generation import (
    InterpreterDatasetFactory,
    dataset_factory,
    load_interpreter,
    resolve_label_source,
)
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
    "InterpreterDatasetFactory",
    "dataset_factory",
    "load_interpreter",
    "resolve_label_source",
    "load_annotations",
    "train_interpreter_from_annotations",
]
