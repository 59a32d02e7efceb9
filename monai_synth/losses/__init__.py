"""Adversarial losses and regularisers."""

from __future__ import annotations

from .adversarial import d_logistic_loss, g_nonsaturating_loss
from .regularizers import PathLengthPenalty, r1_penalty

__all__ = ["d_logistic_loss", "g_nonsaturating_loss", "r1_penalty", "PathLengthPenalty"]
