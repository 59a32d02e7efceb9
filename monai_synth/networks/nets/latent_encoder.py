"""Image -> w encoder that starts a GAN projection near its answer."""

from __future__ import annotations

import math

import torch
from monai.networks.nets import Regressor
from torch import nn

__all__ = ["LatentEncoder"]


class LatentEncoder(nn.Module):
    """Image ``(B, C, S, S)`` -> w ``(B, w_dim)`` (one w, broadcast to every layer): a MONAI ``Regressor``.

    Trained by :func:`~monai_synth.apps.datasetgan.train_latent_encoder` on generated (image, w) pairs, which
    cost nothing, to initialise :class:`~monai_synth.apps.datasetgan.GANProjector`.

    Args:
        image_channels: ``C``.
        image_size: ``S`` (a power of two); stride-2 stages go down to 4 x 4.
        w_dim: size of w.
        base_channels: channels of the first stage, doubled per stage up to 256.
    """

    def __init__(self, image_channels: int, image_size: int, w_dim: int, base_channels: int = 32) -> None:
        super().__init__()
        depth = max(1, int(math.log2(image_size)) - 2)  # stride-2 stages down to 4 x 4
        channels = [min(base_channels * 2**i, 256) for i in range(depth)]
        self.config = {"image_channels": image_channels, "image_size": image_size, "w_dim": w_dim,
                       "base_channels": base_channels}  # fmt: skip
        self.net = Regressor((image_channels, image_size, image_size), (w_dim,), channels, [2] * depth)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)
