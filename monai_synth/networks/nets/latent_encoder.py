"""Image -> w encoder that starts a GAN projection near its answer."""

from __future__ import annotations

import math

import torch
from monai.networks.nets import Regressor
from torch import nn

__all__ = ["LatentEncoder"]


class LatentEncoder(nn.Module):
    """Image ``(B, C, S, S)`` -> w ``(B, w_dim)`` (one w, broadcast to every layer) or w+ ``(B, num_ws, w_dim)``.

    A MONAI ``Regressor`` whose output is added to the buffer ``w_mean`` (zeros until the trainer sets it,
    e.g. to the generator's mean w, so the network learns offsets from it). Trained by
    :func:`~monai_synth.apps.datasetgan.train_latent_encoder` on generated (image, w) pairs (one w) or by
    :func:`~monai_synth.apps.semanticgan.train_semantic_encoder` on real images (w+, SemanticGAN), to
    initialise :class:`~monai_synth.apps.datasetgan.GANProjector`.

    Args:
        image_channels: ``C``.
        image_size: ``S`` (a power of two); stride-2 stages go down to 4 x 4.
        w_dim: size of w.
        base_channels: channels of the first stage, doubled per stage up to 256.
        num_ws: ``None``: one w; an integer: that many per-layer w (w+).
    """

    def __init__(
        self, image_channels: int, image_size: int, w_dim: int, base_channels: int = 32, num_ws: int | None = None
    ) -> None:
        super().__init__()
        depth = max(1, int(math.log2(image_size)) - 2)  # stride-2 stages down to 4 x 4
        channels = [min(base_channels * 2**i, 256) for i in range(depth)]
        self.config = {"image_channels": image_channels, "image_size": image_size, "w_dim": w_dim,
                       "base_channels": base_channels, "num_ws": num_ws}  # fmt: skip
        out_shape = (w_dim,) if num_ws is None else (int(num_ws), w_dim)
        self.net = Regressor((image_channels, image_size, image_size), out_shape, channels, [2] * depth)
        self.register_buffer("w_mean", torch.zeros(w_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images) + self.w_mean
