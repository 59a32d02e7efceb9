"""Equalised-learning-rate layers (Karras et al., ProGAN 2018; StyleGAN2 2020).

Weights are stored as N(0, 1) samples (divided by ``lr_multiplier``) and scaled at run time by
``lr_multiplier / sqrt(fan_in)``, so every layer learns at the same speed under Adam whatever its
fan-in. The leaky-ReLU activation is followed by a gain of ``sqrt(2)`` to keep unit variance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fir import FIRBlur2d, fir_filter

__all__ = ["EqualizedLinear", "EqualizedConv2d", "ScaledLeakyReLU", "LRELU_GAIN"]

LRELU_GAIN = math.sqrt(2.0)


class ScaledLeakyReLU(nn.Module):
    """``leaky_relu(x, 0.2) * gain`` (``gain = sqrt(2)`` keeps the variance of N(0, 1) inputs)."""

    def __init__(self, negative_slope: float = 0.2, gain: float = LRELU_GAIN) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * self.gain


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalised learning rate and optional scaled leaky ReLU.

    Args:
        in_features: input size.
        out_features: output size.
        bias: learn a bias.
        bias_init: initial bias value (1 for the style affines, so styles start at 1).
        lr_multiplier: learning-rate multiplier (0.01 in the mapping network).
        activation: apply the scaled leaky ReLU after the bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.act = ScaledLeakyReLU() if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, b)
        return self.act(x) if self.act is not None else x


class EqualizedConv2d(nn.Module):
    """Convolution with equalised learning rate, optional FIR-antialiased stride-2 downsampling.

    With ``down=True`` the input is low-pass filtered with the ``[1, 3, 3, 1]`` filter and then
    convolved with stride 2 (as the StyleGAN2 discriminator does); a 1 x 1 kernel downsamples by
    filtering and decimating first.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        bias: learn a bias.
        activation: scaled leaky ReLU after the bias.
        down: halve the resolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.kernel_size = kernel_size
        self.down = down
        self.act = ScaledLeakyReLU() if activation else None
        if down:
            k = fir_filter().shape[0]
            pad = kernel_size // 2
            p0, p1 = pad + (k - 2 + 1) // 2, pad + (k - 2) // 2
            self.blur = FIRBlur2d((p0, p1, p0, p1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down:
            x = F.conv2d(self.blur(x), w, self.bias, stride=2)
        else:
            x = F.conv2d(x, w, self.bias, padding=self.kernel_size // 2)
        return self.act(x) if self.act is not None else x
