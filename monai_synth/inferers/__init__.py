"""Inferers (MONAI ``Inferer`` subclasses) and the paired-generation factory."""

from __future__ import annotations

from .paired_generation import (
    PairedDatasetFactory,
    PairedGenerationInferer,
    SeedLatents,
    latent_spec,
    load_generator,
    sample_seed,
)

__all__ = [
    "PairedDatasetFactory",
    "PairedGenerationInferer",
    "SeedLatents",
    "latent_spec",
    "load_generator",
    "sample_seed",
]
