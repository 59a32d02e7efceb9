"""Mask fidelity: Dice of a segmentation of generated images against their conditioning masks."""

from __future__ import annotations

import pytest
import torch

from monai_synth.metrics import MaskFidelity, fidelity_summary, mask_dice, train_fidelity_segmenter


def test_mask_dice_values():
    target = torch.zeros(3, 1, 4, 4, dtype=torch.long)
    target[:, :, :2, :2] = 1
    pred = target.clone()
    pred[1] = 0
    pred[1, :, :2, :1] = 1  # half of the square: 2 * 2 / (2 + 4)
    pred[2] = 2  # another class everywhere: 0 for class 1 and class 2
    dice = mask_dice(pred, target, 3)
    torch.testing.assert_close(dice, torch.tensor([1.0, 2 / 3, 0.0]))
    blank = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    assert mask_dice(blank, blank, 2).item() == 1.0  # nothing to find, nothing found
    with pytest.raises(ValueError, match="shapes differ"):
        mask_dice(blank, target, 2)


def _squares(n, seed):
    """Images that show their mask: a bright square (class 1) on dark noise, at random places."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, 1, 16, 16, dtype=torch.long)
    for k in range(n):
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        labels[k, :, r : r + 6, c : c + 6] = 1
    images = (labels.float() * 1.4 - 0.7) + 0.15 * torch.randn(n, 1, 16, 16, generator=g)
    return images.clamp(-1, 1), labels


def test_a_generator_that_ignores_the_mask_scores_low():
    real_images, real_labels = _squares(32, seed=0)
    segmenter = train_fidelity_segmenter(real_images, real_labels, 2, epochs=10, seed=0, channels=(8, 16))
    fidelity = MaskFidelity(segmenter, 2)
    faithful_images, masks = _squares(12, seed=1)  # images drawn for their masks
    ignoring_images, _ = _squares(12, seed=2)  # the same kind of images, blind to the masks
    faithful, ignoring = fidelity(faithful_images, masks), fidelity(ignoring_images, masks)
    assert len(faithful) == 12 and all(0 <= v <= 1 for v in faithful + ignoring)
    assert sum(faithful) / 12 > 0.8
    assert sum(ignoring) / 12 < 0.4
    summary = fidelity_summary(ignoring, threshold=0.5)
    assert summary["num_pairs"] == 12 and summary["num_below"] >= 9 and summary["min"] <= summary["mean"]
    with pytest.raises(ValueError, match="predicts 2 classes but the masks have 3"):
        MaskFidelity(fidelity.segmenter, 3)(faithful_images, masks)
