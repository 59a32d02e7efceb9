"""Paired-aware adaptive discriminator augmentation (Karras et al., StyleGAN2-ADA, NeurIPS 2020).

Every tensor the discriminator sees (real and generated, in every loss term) goes through the same
stochastic pipeline, each transformation applied with probability ``p``. As long as ``p`` stays below
about 0.8 the augmentations do not "leak" into the generated distribution, and the discriminator
cannot memorise a small training set. ``p`` is tuned by
:class:`monai_synth.handlers.AdaptiveAugmentHandler` from the overfitting heuristic
``r_t = E[sign(D(real))]``.

Paired-aware: for ``image + mask`` tensors (the paired encoding) the geometric transformations move the
image and mask channels with one sampling grid — bilinear for the image channels, nearest for the mask
channels so they stay crisp — while intensity transformations (brightness, contrast, luma flip) touch
only the image channels. The default set is StyleGAN2-ADA's ``bgc`` pipeline without the colour-only
hue and saturation terms (medical images are not RGB):

geometric: x-flip, 90-degree rotations, integer translation (up to 12.5 % of the side), isotropic
scaling (log2 std 0.2), arbitrary rotation (applied twice with probability ``1 - sqrt(1 - p)``),
anisotropic scaling (log2 std 0.2), fractional translation (std 12.5 %); intensity: brightness
(std 0.2), contrast (log2 std 0.5), luma flip.

Differences from the reference implementation, by choice: resampling uses ``grid_sample`` with
reflection padding (bilinear / nearest) rather than the reference's wavelet-filtered 2x supersampling,
so the pipeline is plain PyTorch and differentiable with respect to its input (needed for R1 on
augmented reals and for the generator's gradient).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PairedAugmentPipe"]


def _eye(b: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).repeat(b, 1, 1)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(tx.shape[0], tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(sx.shape[0], sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(theta.shape[0], theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


class PairedAugmentPipe(nn.Module):
    """Stochastic augmentation of ``(B, C_img + C_mask, H, W)`` tensors with strength ``p`` (a buffer).

    Args:
        image_channels: leading channels treated as image (bilinear resampling, intensity transforms);
            the remaining channels are mask channels (nearest resampling, no intensity transforms).
            0 means all channels are mask channels (M-SG).
        xflip, rotate90, xint, scale, rotate, aniso, xfrac, brightness, contrast, lumaflip: multipliers of
            ``p`` for each transformation (1 enables, 0 disables).
        xint_max, scale_std, rotate_max, aniso_std, xfrac_std, brightness_std, contrast_std: strengths,
            defaults of StyleGAN2-ADA.
        p: initial probability (0: the pipeline is the identity).

    Example::

        aug = PairedAugmentPipe(image_channels=1, p=0.3)
        augmented = aug(pairs)          # same shape, image and mask still aligned
    """

    def __init__(
        self,
        image_channels: int = 1,
        xflip: float = 1.0,
        rotate90: float = 1.0,
        xint: float = 1.0,
        scale: float = 1.0,
        rotate: float = 1.0,
        aniso: float = 1.0,
        xfrac: float = 1.0,
        brightness: float = 1.0,
        contrast: float = 1.0,
        lumaflip: float = 1.0,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        p: float = 0.0,
    ) -> None:
        super().__init__()
        if image_channels < 0:
            raise ValueError(f"PairedAugmentPipe: image_channels must be >= 0, got {image_channels}.")
        self.image_channels = int(image_channels)
        self.weights = {
            "xflip": xflip,
            "rotate90": rotate90,
            "xint": xint,
            "scale": scale,
            "rotate": rotate,
            "aniso": aniso,
            "xfrac": xfrac,
            "brightness": brightness,
            "contrast": contrast,
            "lumaflip": lumaflip,
        }
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.aniso_std, self.xfrac_std = aniso_std, xfrac_std
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.register_buffer("p", torch.tensor(float(p)))

    def extra_repr(self) -> str:
        return f"image_channels={self.image_channels}, p={float(self.p):.4f}"

    def _mask(self, name: str, b: int, device: torch.device, prob: float | None = None) -> torch.Tensor:
        """``(B,)`` bool: which samples get transformation ``name``."""
        prob = float(self.p) * self.weights[name] if prob is None else prob
        return torch.rand(b, device=device) < prob

    def geometric_matrix(self, b: int, size: int, device: torch.device) -> torch.Tensor:
        """``(B, 3, 3)`` output-to-input sampling matrices in normalised [-1, 1] coordinates."""
        m = _eye(b, device)
        if self.weights["xflip"] > 0:
            flip = torch.randint(0, 2, (b,), device=device) * self._mask("xflip", b, device)
            m = m @ _scale(1 - 2 * flip.float(), torch.ones(b, device=device))
        if self.weights["rotate90"] > 0:
            quarter = torch.randint(0, 4, (b,), device=device) * self._mask("rotate90", b, device)
            m = m @ _rotate(-math.pi / 2 * quarter.float())
        if self.weights["xint"] > 0:
            # whole pixels: 2 / size per pixel in normalised coordinates
            t = (torch.rand(b, 2, device=device) * 2 - 1) * self.xint_max
            t = torch.round(t * size) * 2 / size * self._mask("xint", b, device)[:, None]
            m = m @ _translate(t[:, 0], t[:, 1])
        if self.weights["scale"] > 0:
            s = torch.exp2(torch.randn(b, device=device) * self.scale_std)
            s = torch.where(self._mask("scale", b, device), s, torch.ones_like(s))
            m = m @ _scale(s, s)
        p_rot = 1 - math.sqrt(max(0.0, 1 - min(1.0, float(self.p) * self.weights["rotate"])))
        if self.weights["rotate"] > 0:
            theta = (torch.rand(b, device=device) * 2 - 1) * math.pi * self.rotate_max
            m = m @ _rotate(theta * self._mask("rotate", b, device, p_rot))
        if self.weights["aniso"] > 0:
            s = torch.exp2(torch.randn(b, device=device) * self.aniso_std)
            s = torch.where(self._mask("aniso", b, device), s, torch.ones_like(s))
            m = m @ _scale(s, 1 / s)
        if self.weights["rotate"] > 0:
            theta = (torch.rand(b, device=device) * 2 - 1) * math.pi * self.rotate_max
            m = m @ _rotate(theta * self._mask("rotate", b, device, p_rot))
        if self.weights["xfrac"] > 0:
            t = torch.randn(b, 2, device=device) * self.xfrac_std * 2 * self._mask("xfrac", b, device)[:, None]
            m = m @ _translate(t[:, 0], t[:, 1])
        return m

    def _resample(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(m[:, :2, :].to(x.dtype), list(x.shape), align_corners=False)
        c = self.image_channels
        parts = []
        if c > 0:
            parts.append(F.grid_sample(x[:, :c], grid, mode="bilinear", padding_mode="reflection", align_corners=False))
        if x.shape[1] > c:
            parts.append(F.grid_sample(x[:, c:], grid, mode="nearest", padding_mode="reflection", align_corners=False))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _intensity(self, x: torch.Tensor) -> torch.Tensor:
        c = self.image_channels
        if c == 0:
            return x
        b, device = x.shape[0], x.device
        image = x[:, :c]
        if self.weights["brightness"] > 0:
            shift = torch.randn(b, device=device) * self.brightness_std * self._mask("brightness", b, device)
            image = image + shift[:, None, None, None].to(x.dtype)
        if self.weights["contrast"] > 0:
            gain = torch.exp2(torch.randn(b, device=device) * self.contrast_std)
            gain = torch.where(self._mask("contrast", b, device), gain, torch.ones_like(gain))
            image = image * gain[:, None, None, None].to(x.dtype)
        if self.weights["lumaflip"] > 0:
            # reflect along the luma axis (1, ..., 1) / sqrt(C): x - 2 * mean_c(x); for one channel, x -> -x
            flip = (torch.randint(0, 2, (b,), device=device) * self._mask("lumaflip", b, device)).to(x.dtype)
            image = image - 2 * flip[:, None, None, None] * image.mean(dim=1, keepdim=True)
        return torch.cat([image, x[:, c:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"PairedAugmentPipe expects square (B, C, H, W) tensors, got {tuple(x.shape)}.")
        if x.shape[1] < self.image_channels:
            raise ValueError(
                f"PairedAugmentPipe: image_channels={self.image_channels} but the input has {x.shape[1]} channels."
            )
        if float(self.p) <= 0:
            return x
        m = self.geometric_matrix(x.shape[0], x.shape[-1], x.device)
        moved = (m != _eye(x.shape[0], x.device)).flatten(1).any(dim=1)
        if moved.all():
            x = self._resample(x, m)
        elif moved.any():  # resample only the transformed samples, so the others stay bit-exact
            x = x.index_put((moved,), self._resample(x[moved], m[moved]))
        return self._intensity(x)
