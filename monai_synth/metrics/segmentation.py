"""Agreement of label maps (MONAI Dice and mean IoU), e.g. interpreter votes against annotations."""

from __future__ import annotations

import torch
from monai.metrics import DiceMetric, MeanIoU
from monai.networks.utils import one_hot

__all__ = ["score_labels"]


def score_labels(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Mean foreground Dice and mIoU (MONAI metrics) of two label maps.

    Args:
        predicted: ``(N, 1, S, S)`` integer labels in ``0..num_classes-1``.
        truth: ``(N, 1, S, S)`` integer labels.
        num_classes: ``K``, background included (background is left out of both means).

    Returns:
        ``{"dice": float, "miou": float}`` (NaN classes absent from both maps are ignored).
    """
    pred, true = one_hot(predicted.cpu().long(), num_classes), one_hot(truth.cpu().long(), num_classes)
    return {
        "dice": float(DiceMetric(include_background=False, reduction="mean")(pred, true).nanmean()),
        "miou": float(MeanIoU(include_background=False, reduction="mean")(pred, true).nanmean()),
    }
