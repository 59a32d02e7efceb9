"""Adversarial losses on discriminator logits (shared by the DCGAN and StyleGAN2 families)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["d_logistic_loss", "g_nonsaturating_loss"]


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator cross-entropy ``-log D(x) - log(1 - D(G(z)))`` written with logits.

    ``softplus(-l) = -log(sigmoid(l))`` is the numerically stable form of Goodfellow et al. eq. (1)
    (Neff et al. eq. (1)); the StyleGAN2 "logistic" loss is the same expression.

    Args:
        real_logits: ``(B, 1)`` discriminator logits on real pairs.
        fake_logits: ``(B', 1)`` logits on generated pairs.

    Returns:
        scalar loss, mean over the batch of each term summed.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss ``-log D(G(z))``.

    Neff et al. write the saturating ``log(1 - D(G(z)))`` (their eq. (2)); like the DCGAN code they
    adapted, we minimise ``-log D(G(z))``, which has the same fixed point and strong gradients early on.

    Args:
        fake_logits: ``(B, 1)`` discriminator logits on generated pairs.
    """
    return F.softplus(-fake_logits).mean()
