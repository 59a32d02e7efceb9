"""Paired-aware DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020).

A fixed policy of cheap differentiable transformations applied to every batch the discriminator sees,
real and generated, in both the discriminator and the generator step; unlike ADA there is no
probability to tune: every transformation is applied to every sample, with a fresh random strength.

Paired-aware: the geometric transformations (``translation``, ``cutout``) move or cut the image and
mask channels with the same offsets and boxes; the ``color`` transformations (brightness, saturation,
contrast) touch the image channels only. Pixels that the geometry uncovers (translation) or removes
(cutout) are filled with 0 in the image channels (the reference's zero, mid-grey in [-1, 1]) and with
the encoded background in the mask channels (``-1`` for one mask channel; ``+1`` in the background
channel and ``-1`` elsewhere for one-hot masks), so a transformed mask is still a valid mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DIFFAUGMENT_POLICIES", "PairedDiffAugment", "select_discriminator_augment"]

DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")


def _parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else [str(p).strip() for p in policy]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in DIFFAUGMENT_POLICIES]
    if unknown:
        raise ValueError(
            f"PairedDiffAugment: unknown policy {unknown}; choose from {list(DIFFAUGMENT_POLICIES)} "
            "(comma-separated, e.g. 'color,translation,cutout')."
        )
    return tuple(names)


class PairedDiffAugment(nn.Module):
    """DiffAugment of ``(B, C_img + C_mask, H, W)`` paired tensors with a fixed policy.

    Args:
        image_channels: leading channels treated as image (colour ops, fill 0); the remaining channels are
            mask channels in the paired encoding (no colour ops, fill = encoded background). 0: all mask.
        policy: comma-separated string or sequence out of ``color``, ``translation``, ``cutout``
            (Zhao et al.'s recommended ``"color,translation,cutout"``); empty: the identity.
        translation_ratio: maximal shift as a fraction of the side (1/8 in the paper), whole pixels.
        cutout_ratio: side of the cut-out square as a fraction of the image side (1/2 in the paper).

    Raises:
        ValueError: unknown policy names, negative ``image_channels``, ratios outside [0, 1].

    Example::

        diffaug = PairedDiffAugment(image_channels=1)
        augmented = diffaug(pairs)      # (B, 2, H, W): shifted and cut together, brightness on channel 0 only
    """

    def __init__(
        self,
        image_channels: int = 1,
        policy: str | Sequence[str] = "color,translation,cutout",
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        if image_channels < 0:
            raise ValueError(f"PairedDiffAugment: image_channels must be >= 0, got {image_channels}.")
        if not (0 <= translation_ratio <= 1 and 0 <= cutout_ratio <= 1):
            raise ValueError(
                f"PairedDiffAugment: translation_ratio and cutout_ratio must be in [0, 1], "
                f"got {translation_ratio}, {cutout_ratio}."
            )
        self.image_channels = int(image_channels)
        self.policy = _parse_policy(policy)
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    def extra_repr(self) -> str:
        return f"image_channels={self.image_channels}, policy={','.join(self.policy) or 'none'}"

    def fill_values(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, 1, 1)`` values for uncovered pixels: 0 for image channels, encoded background for masks."""
        c, m = self.image_channels, x.shape[1] - self.image_channels
        fill = torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
        if m > 0:
            fill[:, c:] = -1.0
            if m > 1:  # one-hot encoding with the background channel first
                fill[:, c] = 1.0
        return fill

    def color(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness (+U[-0.5, 0.5]), saturation (x U[0, 2] about the channel mean), contrast (x U[0.5, 1.5]).

        Args:
            x: ``(B, C_img + C_mask, H, W)``.

        Returns:
            Same shape; mask channels unchanged.
        """
        c = self.image_channels
        if c == 0:
            return x
        b = x.shape[0]
        image = x[:, :c]
        image = image + (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
        mean = image.mean(dim=1, keepdim=True)  # one image channel: saturation is the identity
        image = (image - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image = (image - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean
        return torch.cat([image, x[:, c:]], dim=1)

    def translation(self, x: torch.Tensor) -> torch.Tensor:
        """Shift every sample by whole pixels in ``[-r H, r H]`` (same shift for its image and mask channels).

        Args:
            x: ``(B, C, H, W)``.

        Returns:
            Same shape; uncovered pixels hold :meth:`fill_values`.
        """
        b, _, h, w = x.shape
        sy, sx = int(h * self.translation_ratio + 0.5), int(w * self.translation_ratio + 0.5)
        if sy == 0 and sx == 0:
            return x
        dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
        dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row of every output pixel
        cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
        valid = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
        index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(b, 1, h * w).expand(-1, x.shape[1], -1)
        moved = torch.gather(x.reshape(b, x.shape[1], h * w), 2, index).reshape(x.shape)
        return torch.where(valid, moved, self.fill_values(x))

    def cutout(self, x: torch.Tensor) -> torch.Tensor:
        """Cut one square of side ``cutout_ratio * H`` at a random place, the same box in image and mask.

        Args:
            x: ``(B, C, H, W)``.

        Returns:
            Same shape; the box holds :meth:`fill_values`.
        """
        b, _, h, w = x.shape
        ch, cw = int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)
        if ch == 0 or cw == 0:
            return x
        # box centre anywhere in the image (the box may be clipped at the border), as in the reference
        cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device) - ch // 2
        cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device) - cw // 2
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        box = ((rows >= cy) & (rows < cy + ch) & (cols >= cx) & (cols < cx + cw)).unsqueeze(1)
        return torch.where(box, self.fill_values(x), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the policy in order (``color``, then ``translation``, then ``cutout`` as listed).

        Args:
            x: ``(B, C_img + C_mask, H, W)`` in [-1, 1].

        Returns:
            Same shape, differentiable with respect to ``x``.

        Raises:
            ValueError: not 4-D, or fewer channels than ``image_channels``.
        """
        if x.ndim != 4:
            raise ValueError(f"PairedDiffAugment expects (B, C, H, W) tensors, got {tuple(x.shape)}.")
        if x.shape[1] < self.image_channels:
            raise ValueError(
                f"PairedDiffAugment: image_channels={self.image_channels} but the input has {x.shape[1]} channels."
            )
        for name in self.policy:
            x = getattr(self, name)(x)
        return x


def select_discriminator_augment(
    ada: bool, augment_p: float, diffaugment: bool, ada_pipe: nn.Module, diffaugment_pipe: nn.Module
) -> nn.Module | None:
    """The augmentation a paired GAN trainer applies before its discriminator, from the bundle's switches.

    Args:
        ada: adaptive discriminator augmentation on (``ada_pipe``, its ``p`` tuned by a handler).
        augment_p: fixed ADA probability; ``> 0`` uses ``ada_pipe`` even without ``ada``.
        diffaugment: DiffAugment on (``diffaugment_pipe``, fixed policy).
        ada_pipe: a :class:`~monai_synth.augment.PairedAugmentPipe`.
        diffaugment_pipe: a :class:`PairedDiffAugment`.

    Returns:
        ``diffaugment_pipe``, ``ada_pipe`` or ``None`` (no augmentation, Neff et al.).

    Raises:
        ValueError: both ADA (``ada`` or ``augment_p > 0``) and DiffAugment requested.
    """
    uses_ada = bool(ada) or float(augment_p) > 0
    if diffaugment and uses_ada:
        raise ValueError(
            "diffaugment=True and ADA (ada=True or augment_p > 0) are alternatives: choose one, "
            "e.g. `--ada False --diffaugment True` for DiffAugment, or `--diffaugment False` for ADA."
        )
    if diffaugment:
        return diffaugment_pipe
    return ada_pipe if uses_ada else None
