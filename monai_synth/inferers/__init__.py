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
from .projection import (
    GANProjector,
    LatentEncoder,
    ProjectionResult,
    discriminator_features,
    load_discriminator,
    noise_regularization,
    train_latent_encoder,
)
from .real_annotations import (
    project_images,
    segment_real_images,
    train_interpreter,
    train_interpreter_from_projection,
)
from .style_interpreter import StyleInterpreterInferer, image_uncertainty_score, score_labels, train_style_interpreter

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
    "GANProjector",
    "LatentEncoder",
    "ProjectionResult",
    "discriminator_features",
    "load_discriminator",
    "noise_regularization",
    "train_latent_encoder",
    "project_images",
    "score_labels",
    "segment_real_images",
    "train_interpreter",
    "train_interpreter_from_projection",
    "InterpreterDatasetFactory",
    "dataset_factory",
    "load_interpreter",
    "resolve_label_source",
    "load_annotations",
    "train_interpreter_from_annotations",
]
