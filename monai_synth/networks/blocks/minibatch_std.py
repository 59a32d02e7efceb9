"""Minibatch standard deviation (Karras et al., ProGAN 2018 / StyleGAN2 2020)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MinibatchStdDev"]


class MinibatchStdDev(nn.Module):
    """Append the across-batch standard deviation of the features as extra channels.

    The batch is split into groups of ``group_size`` items; within a group the standard deviation of
    every feature (over the group) is averaged over the features of each of ``num_channels`` channel
    groups and spatial positions, giving ``num_channels`` scalars per group that are appended as constant
    maps to each of its items. A discriminator that sees them can tell a collapsed (too uniform) batch of
    generated samples from a batch of real ones, which pushes the generator towards diversity.

    Args:
        group_size: items per group; a batch it does not divide uses the largest group size below it that
            divides the batch.
        num_channels: number of statistics channels appended (1 in the papers).

    Example::

        x = torch.randn(8, 64, 4, 4)
        MinibatchStdDev(group_size=4)(x).shape   # (8, 65, 4, 4)
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ValueError(
                f"MinibatchStdDev: group_size and num_channels must be >= 1, got {group_size}, {num_channels}."
            )
        self.group_size = int(group_size)
        self.num_channels = int(num_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # the largest group size <= group_size that divides the batch, so a short last batch still works
        g = next(n for n in range(min(self.group_size, b), 0, -1) if b % n == 0)
        if c % self.num_channels:
            raise ValueError(f"MinibatchStdDev: {c} feature channels cannot be split into {self.num_channels} groups.")
        y = x.float().reshape(g, b // g, self.num_channels, c // self.num_channels, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (B/g, n, c/n, H, W)
        y = y.mean(dim=(2, 3, 4))  # (B/g, n)
        y = y.reshape(b // g, self.num_channels, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)
