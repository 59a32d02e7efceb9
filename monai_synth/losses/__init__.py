"""monai_synth.losses: adversarial losses and regularisers of the GAN trainers.

Non-saturating logistic losses, R1 penalty, path-length regularisation.
"""

from __future__ import annotations

from .adversarial import d_logistic_loss, g_nonsaturating_loss
from .regularizers import PathLengthPenalty, r1_penalty

__all__ = ["d_logistic_loss", "g_nonsaturating_loss", "r1_penalty", "PathLengthPenalty"]
