"""monai_synth.apps.datasetgan: the DatasetGAN workflows the ``datasetgan`` bundle calls.

Annotation round trip, style-interpreter training, GAN projection of real images, the interpreter-labelled factory.
"""

from __future__ import annotations

from .annotation import export_for_annotation, load_annotations, train_interpreter_from_annotations
from .factory import InterpreterDatasetFactory, dataset_factory, inference_parts, resolve_label_source
from .interpreter_training import train_interpreter, train_style_interpreter
from .projection import (
    GANProjector,
    ProjectionResult,
    discriminator_features,
    noise_regularization,
    project_images,
    segment_real_images,
    train_interpreter_from_projection,
    train_latent_encoder,
)

__all__ = [
    "GANProjector",
    "InterpreterDatasetFactory",
    "ProjectionResult",
    "dataset_factory",
    "discriminator_features",
    "export_for_annotation",
    "inference_parts",
    "load_annotations",
    "noise_regularization",
    "project_images",
    "resolve_label_source",
    "segment_real_images",
    "train_interpreter",
    "train_interpreter_from_annotations",
    "train_interpreter_from_projection",
    "train_latent_encoder",
    "train_style_interpreter",
]
