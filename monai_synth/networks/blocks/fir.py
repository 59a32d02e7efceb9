"""FIR up/down-sampling in plain PyTorch (Karras et al., StyleGAN2 2020, "upfirdn2d").

StyleGAN2 resamples feature maps with the separable low-pass filter ``[1, 3, 3, 1]`` instead of
nearest or bilinear interpolation. The reference implementation ships compiled CUDA kernels with a
slow fallback; here the same operation is written with ``F.pad`` and a depthwise ``F.conv2d``, which
runs unchanged on CPU and GPU and is differentiable to any order (R1 and path-length penalties need
second-order gradients).

Operation (per channel): insert ``up - 1`` zeros between samples, pad, convolve with the 2D filter,
keep every ``down``-th sample. The filter is normalised to sum 1, times ``up ** 2`` when upsampling
so that a constant input stays constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fir_filter", "upfirdn2d", "upsample2d", "downsample2d", "FIRUpsample2d", "FIRDownsample2d", "FIRBlur2d"]

DEFAULT_FIR = (1, 3, 3, 1)


def fir_filter(taps: Sequence[float] = DEFAULT_FIR, gain: float = 1.0) -> torch.Tensor:
    """Separable 2D FIR filter ``outer(taps, taps)`` normalised to sum ``gain``; shape ``(k, k)``."""
    t = torch.as_tensor(taps, dtype=torch.float32)
    if t.ndim != 1 or t.numel() < 1 or t.sum() == 0:
        raise ValueError(f"fir_filter: taps must be a non-empty 1D sequence with non-zero sum, got {taps!r}.")
    f = torch.outer(t, t)
    return f * (gain / f.sum())


def upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter and downsample a ``(B, C, H, W)`` tensor.

    Args:
        x: input ``(B, C, H, W)``.
        f: ``(k, k)`` filter (applied as a true convolution, i.e. flipped; the default filters are symmetric).
        up: integer upsampling factor.
        down: integer downsampling factor.
        padding: ``(left, right, top, bottom)`` zero padding after upsampling (negative values crop).

    Returns:
        ``(B, C, (H * up + top + bottom - k) // down + 1, (W * up + left + right - k) // down + 1)``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}.")
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    left, right, top, bottom = (int(p) for p in padding)
    x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    x = x[:, :, max(-top, 0) : x.shape[2] - max(-bottom, 0), max(-left, 0) : x.shape[3] - max(-right, 0)]
    weight = f.to(dtype=x.dtype, device=x.device).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, factor * H, factor * W)``; ``f`` sums to 1 (the gain ``factor ** 2`` is applied here)."""
    k = f.shape[0]
    p0, p1 = (k + factor - 1) // 2, (k - factor) // 2
    return upfirdn2d(x, f * factor**2, up=factor, padding=(p0, p1, p0, p1))


def downsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, H // factor, W // factor)`` low-pass filtered with ``f`` (sum 1)."""
    k = f.shape[0]
    p0, p1 = (k - factor + 1) // 2, (k - factor) // 2
    return upfirdn2d(x, f, down=factor, padding=(p0, p1, p0, p1))


class _FIR(nn.Module):
    def __init__(self, taps: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__()
        self.register_buffer("filter", fir_filter(taps), persistent=False)


class FIRUpsample2d(_FIR):
    """Module form of :func:`upsample2d` (factor 2 by default)."""

    def __init__(self, factor: int = 2, taps: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__(taps)
        self.factor = int(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(x, self.filter, self.factor)


class FIRDownsample2d(_FIR):
    """Module form of :func:`downsample2d` (factor 2 by default)."""

    def __init__(self, factor: int = 2, taps: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__(taps)
        self.factor = int(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample2d(x, self.filter, self.factor)


class FIRBlur2d(_FIR):
    """Low-pass filter with explicit padding ``(left, right, top, bottom)``, no resampling.

    Used before a stride-2 convolution (the StyleGAN2 discriminator's downsampling convolutions).
    """

    def __init__(self, padding: Sequence[int], taps: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__(taps)
        self.padding = tuple(int(p) for p in padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.filter, padding=self.padding)
