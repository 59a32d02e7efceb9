"""Agreement of label maps (MONAI Dice, mean IoU and HD95), e.g. interpreter votes against annotations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric, MeanIoU, compute_hausdorff_distance
from monai.networks.utils import one_hot

__all__ = ["score_cases", "score_labels", "summarise_cases"]


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


def score_cases(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> list[dict[str, float]]:
    """Per-image mean foreground Dice and 95th-percentile Hausdorff distance (pixels), MONAI metrics.

    Args:
        predicted: ``(N, 1, *spatial)`` integer labels in ``0..num_classes-1``.
        truth: ``(N, 1, *spatial)`` integer labels.
        num_classes: ``K``, background included (background is left out of both means).

    Returns:
        one ``{"dice": float, "hd95": float}`` per image; a class absent from both maps is left out of that
        image's means, and ``hd95`` is NaN when no class has a finite distance (a class present in only one
        of the two maps has none).
    """
    pred, true = one_hot(predicted.cpu().long(), num_classes), one_hot(truth.cpu().long(), num_classes)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(pred, true).float()
    distance = compute_hausdorff_distance(pred, true, include_background=False, percentile=95).float()
    distance = torch.where(torch.isfinite(distance), distance, torch.nan)
    cases = []
    for d, h in zip(dice, distance):
        cases.append({"dice": float(d.nanmean()) if bool(torch.isfinite(d).any()) else math.nan,
                      "hd95": float(h.nanmean()) if bool(torch.isfinite(h).any()) else math.nan})  # fmt: skip
    return cases


def summarise_cases(cases: list[dict[str, float]]) -> dict[str, Any]:
    """Mean / standard deviation over images of ``score_cases`` figures, with the count of unscored images.

    Returns:
        ``{"dice", "dice_std", "hd95", "hd95_std", "hd95_missing"}``: means and standard deviations over the
        images with a finite value (NaN when none has one); ``hd95_missing`` counts images without a distance.
    """
    summary: dict[str, Any] = {}
    for key in ("dice", "hd95"):
        values = np.asarray([c[key] for c in cases], dtype=float)
        finite = values[np.isfinite(values)]
        summary[key] = round(float(finite.mean()), 6) if finite.size else math.nan
        summary[f"{key}_std"] = round(float(finite.std()), 6) if finite.size else math.nan
        if key == "hd95":
            summary["hd95_missing"] = int(values.size - finite.size)
    return summary
