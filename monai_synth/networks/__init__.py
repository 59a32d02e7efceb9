"""monai_synth.networks: whole networks (``nets``), their building blocks (``blocks``) and the latent sampler.

``latents`` is the one place latent vectors are drawn (by seed or from a seeded stream).
"""

from __future__ import annotations

from .latents import LATENT_DISTRIBUTIONS, latents_from_seeds, sample_latents
from .nets import *  # noqa: F401,F403
from .nets import __all__ as _nets_all

__all__ = ["LATENT_DISTRIBUTIONS", "latents_from_seeds", "sample_latents", *_nets_all]
