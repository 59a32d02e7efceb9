"""Building blocks shared by the GAN networks."""

from __future__ import annotations

from .minibatch_std import MinibatchStdDev

__all__ = ["MinibatchStdDev"]
