"""monai_synth.networks.nets: whole generator / discriminator networks."""

from __future__ import annotations

from .dcgan import (
    MIN_FEATURE_SIZE,
    PairedDCGANDiscriminator,
    PairedDCGANGenerator,
    init_dcgan_weights,
    latents_from_seeds,
    sample_latents,
)

__all__ = [
    "MIN_FEATURE_SIZE",
    "PairedDCGANGenerator",
    "PairedDCGANDiscriminator",
    "init_dcgan_weights",
    "sample_latents",
    "latents_from_seeds",
]
