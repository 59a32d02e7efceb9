"""Style-modulated convolution, noise injection and image output layers of StyleGAN2 (Karras et al. 2020)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .equalized import LRELU_GAIN, EqualizedConv2d, EqualizedLinear
from .fir import FIRUpsample2d

__all__ = ["modulated_conv2d", "ModulatedConv2d", "NoiseInjection", "StyleLayer", "ToImage", "FromImage"]

NOISE_MODES = ("random", "const", "none")


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Convolve each sample with its own style-scaled (and demodulated) copy of ``weight``.

    ``w'_{b,o,i,k} = s_{b,i} * w_{o,i,k}``; with demodulation ``w''_{b,o,i,k} = w' / sqrt(sum_{i,k} w'^2 + eps)``
    (StyleGAN2 eq. 1-3), so unit-variance inputs give unit-variance outputs. All samples run as one
    grouped convolution (groups = batch size) rather than a loop. Under ``torch.jit.trace`` the same
    result is computed batch-independently instead (inputs scaled by the styles, one shared convolution,
    outputs scaled by the demodulation coefficients, as StyleGAN2's non-fused path does), because a
    traced grouped convolution would keep the batch size it was traced with.

    Args:
        x: ``(B, I, H, W)`` input.
        weight: ``(O, I, k, k)`` weight, already scaled for equalised learning rate.
        styles: ``(B, I)`` per-sample input-channel scales.
        demodulate: normalise each output channel's weights per sample.
        eps: demodulation epsilon.

    Returns:
        ``(B, O, H, W)`` (same padding).
    """
    b, i, h, w = x.shape
    o, _, k, _ = weight.shape
    if styles.shape != (b, i):
        raise ValueError(
            f"modulated_conv2d: styles must be {(b, i)} for input {tuple(x.shape)}, got {tuple(styles.shape)}."
        )
    if torch.jit.is_tracing():
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=k // 2)
        if demodulate:  # sum_{i,k} (s_i w_{o,i,k})^2 = sum_i s_i^2 sum_k w_{o,i,k}^2
            out = out * torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps)[:, :, None, None]
        return out
    wb = weight[None] * styles[:, None, :, None, None]  # (B, O, I, k, k)
    if demodulate:
        wb = wb * torch.rsqrt(wb.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    out = F.conv2d(x.reshape(1, b * i, h, w), wb.reshape(b * o, i, k, k), padding=k // 2, groups=b)
    return out.reshape(b, o, h, w)


class ModulatedConv2d(nn.Module):
    """Modulated convolution with its learned style affine ``w -> s`` (bias initialised to 1).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size (3 in the synthesis layers, 1 for the image outputs).
        w_dim: size of the intermediate latent ``w``.
        demodulate: weight demodulation (off for the image outputs).
        up: upsample by 2 first with the ``[1, 3, 3, 1]`` FIR filter.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.up = FIRUpsample2d() if up else None

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)
        if self.up is not None:
            x = self.up(x)
        if not self.demodulate:
            # the image outputs scale the styles instead (StyleGAN2's to-RGB layers)
            styles = styles * self.weight_gain
            return modulated_conv2d(x, self.weight, styles, demodulate=False)
        return modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=True)


class NoiseInjection(nn.Module):
    """Add ``strength * noise`` (per-pixel, shared over channels); ``strength`` is learned and starts at 0.

    Noise modes: ``"random"`` (fresh N(0, 1) each call), ``"const"`` (a fixed buffer drawn at construction,
    saved with the weights, for reproducible outputs), ``"none"``. An explicit ``noise`` tensor wins.
    """

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("const_noise", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, noise_mode: str = "random", noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            elif noise_mode == "const":
                noise = self.const_noise.to(x.dtype)
            elif noise_mode == "none":
                return x
            else:
                raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
        return x + noise * self.strength


class StyleLayer(nn.Module):
    """One synthesis layer: modulated 3 x 3 conv (optionally upsampling), noise, bias, scaled leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True, up=up)
        self.noise = NoiseInjection(resolution)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", noise=None) -> torch.Tensor:
        x = self.noise(self.conv(x, w), noise_mode, noise)
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * LRELU_GAIN


class ToImage(nn.Module):
    """StyleGAN2's to-RGB layer for any channel count: modulated 1 x 1 conv without demodulation, plus bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class FromImage(EqualizedConv2d):
    """The discriminator's from-RGB layer for any channel count: 1 x 1 equalised conv + scaled leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1, activation=True)
