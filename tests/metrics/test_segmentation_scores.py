"""Per-image Dice / HD95 (``score_cases``) and their summary, as the segment.json bundles report them."""

from __future__ import annotations

import math

import pytest
import torch
from monai.metrics import compute_hausdorff_distance
from monai.networks.utils import one_hot

from monai_synth.metrics import score_cases, score_labels, summarise_cases


def _square(top: int, left: int, size: int = 8, shape: int = 24) -> torch.Tensor:
    label = torch.zeros(1, shape, shape, dtype=torch.long)
    label[:, top : top + size, left : left + size] = 1
    return label


def test_each_image_is_scored_on_its_own() -> None:
    truth = torch.stack([_square(4, 4), _square(4, 4), _square(4, 4)])
    predicted = torch.stack([_square(4, 4), _square(4, 6), torch.zeros(1, 24, 24, dtype=torch.long)])
    cases = score_cases(predicted, truth, num_classes=2)
    assert len(cases) == 3
    assert cases[0] == {"dice": 1.0, "hd95": 0.0}
    # 8 x 8 squares overlapping in 8 x 6 pixels: Dice = 2 * 48 / 128
    assert cases[1]["dice"] == pytest.approx(0.75)
    oracle = compute_hausdorff_distance(one_hot(predicted[1:2], 2), one_hot(truth[1:2], 2), percentile=95)
    assert cases[1]["hd95"] == pytest.approx(float(oracle)) and cases[1]["hd95"] > 0
    assert cases[2]["dice"] == 0.0 and math.isnan(cases[2]["hd95"])  # nothing predicted: no distance


def test_summary_skips_images_without_a_distance() -> None:
    cases = [{"dice": 1.0, "hd95": 0.0}, {"dice": 0.5, "hd95": 4.0}, {"dice": 0.0, "hd95": math.nan}]
    summary = summarise_cases(cases)
    assert summary["dice"] == pytest.approx(0.5) and summary["hd95"] == pytest.approx(2.0)
    assert summary["hd95_std"] == pytest.approx(2.0) and summary["hd95_missing"] == 1
    assert math.isnan(summarise_cases([{"dice": 0.0, "hd95": math.nan}])["hd95"])


def test_multiclass_means_leave_out_absent_classes_and_match_the_pooled_dice() -> None:
    truth = torch.zeros(2, 1, 24, 24, dtype=torch.long)
    truth[:, :, 2:10, 2:10], truth[0, :, 12:20, 12:20] = 1, 2  # class 2 only in the first image
    predicted = truth.clone()
    predicted[1, :, 2:10, 2:6] = 0  # second image: half of class 1 missed
    cases = score_cases(predicted, truth, num_classes=3)
    assert cases[0] == {"dice": 1.0, "hd95": 0.0}
    assert cases[1]["dice"] == pytest.approx(2 * 32 / (32 + 64))  # class 2 absent from both: not averaged in
    pooled = score_labels(predicted, truth, num_classes=3)["dice"]
    assert pooled == pytest.approx((1.0 + 1.0 + cases[1]["dice"]) / 3)
