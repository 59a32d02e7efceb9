"""Tests of monai_synth.evaluation.segmentation: metric values on constructed masks, networks, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_synth.evaluation.segmentation import (
    build_network,
    class_mean,
    predict_labels,
    segmentation_scores,
    standard_augmentation,
    train_segmentation_network,
)


def _square(
    size: int = 16, top: int = 4, left: int = 4, height: int = 8, width: int = 8, value: int = 1
) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size, dtype=torch.long)
    mask[..., top : top + height, left : left + width] = value
    return mask


@pytest.mark.parametrize("num_classes", [2, 4])
def test_identical_masks_give_dice_one_and_zero_distance(num_classes: int) -> None:
    label = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    for c in range(1, num_classes):
        label[:, :, 2 * c : 2 * c + 3, 2:12] = c
    scores = segmentation_scores(label, label, num_classes)
    for name in ("dice", "iou"):
        assert scores[name].shape == (2, num_classes - 1)
        np.testing.assert_allclose(scores[name], 1.0)
    for name in ("hd", "hd95"):
        np.testing.assert_allclose(scores[name], 0.0)


def test_half_overlap_known_values() -> None:
    label = _square(height=8, width=8)  # 64 pixels
    prediction = _square(height=8, width=4)  # its left half: 32 pixels, all inside
    scores = segmentation_scores(prediction, label, 2)
    assert scores["dice"][0, 0] == pytest.approx(2 * 32 / (64 + 32))
    assert scores["iou"][0, 0] == pytest.approx(32 / 64)
    assert scores["hd"][0, 0] == pytest.approx(4.0)  # the right column of the label is 4 pixels from the prediction


def test_shifted_square_known_values() -> None:
    label = _square(top=4, left=4)
    prediction = _square(top=4, left=6)  # shifted 2 pixels right: overlap 8 x 6
    scores = segmentation_scores(prediction, label, 2)
    assert scores["dice"][0, 0] == pytest.approx(2 * 48 / 128)
    assert scores["iou"][0, 0] == pytest.approx(48 / 80)
    assert scores["hd"][0, 0] == pytest.approx(2.0)


def test_empty_masks_follow_monai_conventions() -> None:
    label = torch.cat([_square(), torch.zeros(1, 1, 16, 16, dtype=torch.long)])
    prediction = torch.zeros_like(label)  # case 0: empty prediction; case 1: both empty
    scores = segmentation_scores(prediction, label, 2)
    assert scores["dice"][0, 0] == 0.0 and math.isnan(scores["dice"][1, 0])
    assert math.isinf(scores["hd"][0, 0]) and math.isnan(scores["hd"][1, 0])
    assert math.isnan(scores["hd95"][0, 0])


def test_class_mean_ignores_nan_and_propagates_inf() -> None:
    values = np.array([[0.5, np.nan, 1.0], [np.nan, np.nan, np.nan], [1.0, np.inf, 2.0]])
    out = class_mean(values)
    assert out[0] == pytest.approx(0.75)
    assert math.isnan(out[1])
    assert math.isinf(out[2])


@pytest.mark.parametrize(
    "prediction,label,message",
    [
        (torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), "shapes differ"),
        (torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), r"\(B, 1, H, W\)"),
        (torch.full((1, 1, 8, 8), 3), torch.zeros(1, 1, 8, 8), "outside 0..1"),
    ],
)
def test_bad_inputs_raise(prediction, label, message) -> None:
    with pytest.raises(ValueError, match=message):
        segmentation_scores(prediction, label, 2)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("UNet", {}),
        ("UNet", {"channels": (8, 16), "strides": (2,), "num_res_units": 0}),
        ("BasicUNet", {"features": (4, 4, 8, 8, 16, 4)}),
        ("SegResNet", {"init_filters": 8}),
    ],
)
def test_build_network_by_name(name: str, kwargs: dict) -> None:
    network = build_network(name, in_channels=2, out_channels=3, **kwargs)
    assert network(torch.zeros(1, 2, 32, 32)).shape == (1, 3, 32, 32)


def test_build_network_errors() -> None:
    with pytest.raises(ValueError, match="not a network of monai.networks.nets"):
        build_network("NoSuchNet", 1, 2)
    with pytest.raises(ValueError, match="network_kwargs"):
        build_network("UNet", 1, 2, no_such_argument=3)


def test_standard_augmentation_keeps_labels_integral() -> None:
    augmentation = standard_augmentation(32, prob=1.0, flip_prob=1.0, rotate_degrees=20.0)
    augmentation.set_random_state(seed=0)
    label = torch.zeros(1, 32, 32)
    label[:, 8:20, 8:16], label[:, 8:20, 16:24] = 1, 2
    out = augmentation({"image": torch.rand(1, 32, 32) * 2 - 1, "label": label})
    assert out["image"].shape == (1, 32, 32) and out["label"].shape == (1, 32, 32)
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0, 2.0}
    assert not torch.equal(out["label"], label)


def _items(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        label = np.zeros((1, 16, 16), dtype=np.int64)
        top, left = rng.integers(2, 8, size=2)
        label[:, top : top + 6, left : left + 6] = 1
        image = np.where(label > 0, 0.8, -0.8).astype(np.float32) + rng.normal(0, 0.1, (1, 16, 16)).astype(np.float32)
        items.append({"image": image, "label": label})
    return items


def _small_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("UNet", 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)


def test_training_keeps_the_best_validation_weights() -> None:
    network = _small_unet()
    train, val = _items(8), _items(4, seed=1)
    result = train_segmentation_network(
        network, train, val, num_classes=2, max_epochs=4, batch_size=4, learning_rate=1e-2, patience=0
    )
    assert result.epochs_run == 4 and len(result.train_loss) == 4 and len(result.val_dice) == 4
    assert all(math.isfinite(v) for v in result.train_loss)
    best = max(d for _, d in result.val_dice)
    assert result.best_val_dice == pytest.approx(best)
    assert result.best_epoch == [e for e, d in result.val_dice if d == best][0]
    # the network now holds the best epoch's weights: its validation Dice is the best one
    images = torch.as_tensor(np.stack([i["image"] for i in val]))
    labels = torch.as_tensor(np.stack([i["label"] for i in val]))
    dice = segmentation_scores(predict_labels(network, images), labels, 2)["dice"]
    assert float(np.nanmean(dice)) == pytest.approx(best, abs=1e-5)


def test_early_stopping_after_patience_validations_without_improvement() -> None:
    # learning_rate 0: the weights never change, so the validation Dice never improves after epoch 1
    result = train_segmentation_network(
        _small_unet(), _items(4), _items(2), num_classes=2, max_epochs=6, learning_rate=0.0, patience=2
    )
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_training_without_validation_keeps_last_epoch() -> None:
    result = train_segmentation_network(_small_unet(), _items(4), [], num_classes=2, max_epochs=2, loss="dice_ce")
    assert result.best_epoch == 2 and result.best_val_dice is None and result.val_dice == []


def test_epoch_length_sets_the_steps_per_epoch() -> None:
    # 4 items in batches of 2 are 2 steps per pass; epoch_length=5 restarts the loader within each epoch
    result = train_segmentation_network(
        _small_unet(), _items(4), [], num_classes=2, max_epochs=2, batch_size=2, epoch_length=5
    )
    assert result.iterations == 10 and len(result.train_loss) == 2
    assert (
        train_segmentation_network(_small_unet(), _items(4), [], num_classes=2, max_epochs=2, batch_size=2).iterations
        == 4
    )


def test_non_finite_loss_raises() -> None:
    items = _items(2)
    items[0]["image"] = np.full_like(items[0]["image"], np.nan)
    with pytest.raises(FloatingPointError, match="learning_rate"):
        train_segmentation_network(_small_unet(), items, [], num_classes=2, max_epochs=1, batch_size=2)


@pytest.mark.parametrize(
    "kwargs,message",
    [({"loss": "focal"}, "loss"), ({"max_epochs": 0}, "max_epochs"), ({"epoch_length": 0}, "epoch_length")],
)
def test_training_setting_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_segmentation_network(_small_unet(), _items(2), [], num_classes=2, **kwargs)
