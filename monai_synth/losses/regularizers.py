"""GAN regularisers of StyleGAN2: R1 gradient penalty and path-length regularisation (Karras et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["r1_penalty", "PathLengthPenalty"]


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float = 10.0) -> torch.Tensor:
    """R1 penalty ``gamma / 2 * E[||grad_x D(x)||^2]`` on real data (Mescheder et al. 2018).

    ``real_inputs`` must have ``requires_grad`` set before the discriminator ran on them. The graph
    is kept (``create_graph=True``) so the penalty can be backpropagated into the discriminator.
    The papers' lazy form multiplies this by the regularisation interval (done by the trainer).

    Args:
        real_logits: ``(B, 1)`` discriminator logits on ``real_inputs``.
        real_inputs: ``(B, C, H, W)`` the tensor the gradient is taken with respect to.
        gamma: weight (the DatasetGAN-StyleGAN2 paper used 1; StyleGAN2-ADA's heuristic is
            ``0.0002 * resolution ** 2 / batch``).

    Returns:
        scalar penalty.
    """
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty: real_inputs must require grad before the discriminator runs on them.")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean() * (gamma / 2)


class PathLengthPenalty(nn.Module):
    """Path-length regulariser ``E[(||J_w^T y||_2 - a)^2]`` with ``a`` a running mean (StyleGAN2 eq. 4).

    ``y`` is N(0, 1) noise scaled by ``1 / sqrt(H * W)`` (so the length does not depend on the
    resolution), ``J_w`` the Jacobian of the generated image with respect to the per-layer latents
    ``ws`` (``||J^T y||`` is averaged over layers as in the reference implementation), and ``a`` the
    exponential moving average of the lengths (decay ``decay``), kept as a buffer so it is saved in
    checkpoints.

    Args:
        weight: regularisation weight (2 in StyleGAN2).
        decay: EMA decay of ``a`` (0.01).
    """

    def __init__(self, weight: float = 2.0, decay: float = 0.01) -> None:
        super().__init__()
        self.weight = float(weight)
        self.decay = float(decay)
        self.register_buffer("mean", torch.zeros([]))

    def lengths(self, images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """``(B,)`` path lengths ``||J_w^T y||`` for ``images`` generated from ``ws`` (graph kept)."""
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        return grad.square().sum(dim=2).mean(dim=1).sqrt()

    def forward(self, images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Penalty ``weight * mean((lengths - a)^2)``; updates ``a`` (no gradient through it)."""
        lengths = self.lengths(images, ws)
        with torch.no_grad():
            self.mean.copy_(self.mean.lerp(lengths.detach().float().mean(), self.decay))
        return (lengths - self.mean).square().mean() * self.weight
