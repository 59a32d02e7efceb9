"""Tests for the generated-mask post-processing: largest components, hole filling, change fraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import FillHoles
from scipy import ndimage

from monai_synth.transforms.postprocessing import (
    PostprocessMask,
    PostprocessMaskD,
    PostprocessMaskd,
    PostprocessMaskDict,
    mask_change_fraction,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _two_blobs() -> np.ndarray:
    label = np.zeros((1, 12, 12), dtype=np.int64)
    label[0, 1:6, 1:6] = 1  # 25 px
    label[0, 8:10, 8:10] = 1  # 4 px
    return label


def _ring() -> np.ndarray:
    label = np.zeros((1, 9, 9), dtype=np.int64)
    label[0, 2:7, 2:7] = 1
    label[0, 4, 4] = 0  # enclosed hole
    label[0, 3, 3] = 0  # another one, diagonal to the first
    return label


@pytest.mark.parametrize("as_type", [np.asarray, torch.as_tensor])
def test_two_blobs_largest_kept(as_type):
    label = as_type(_two_blobs())
    out = PostprocessMask(num_classes=2)(label)
    assert type(out) is type(label) and out.shape == (1, 12, 12) and out.dtype == label.dtype
    expected = _two_blobs()
    expected[0, 8:10, 8:10] = 0
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(np.asarray(label), _two_blobs())  # input untouched
    kept_both = PostprocessMask(num_classes=2, num_components=2)(label)
    np.testing.assert_array_equal(np.asarray(kept_both), _two_blobs())


def test_ring_hole_filled_but_border_bays_are_not():
    out = PostprocessMask(num_classes=2)(_ring())
    expected = np.zeros((1, 9, 9), dtype=np.int64)
    expected[0, 2:7, 2:7] = 1
    np.testing.assert_array_equal(out, expected)
    bay = np.zeros((1, 6, 6), dtype=np.int64)
    bay[0, 0:4, 0:4] = 1
    bay[0, 0, 1] = 0  # touches the image border: open, not a hole
    np.testing.assert_array_equal(PostprocessMask(num_classes=2)(bay), bay)
    np.testing.assert_array_equal(PostprocessMask(num_classes=2, fill_holes=False)(_ring()), _ring())


def _multiclass_map() -> np.ndarray:
    label = np.zeros((1, 16, 16), dtype=np.int64)
    label[0, 1:9, 1:9] = 1  # organ, 8 x 8
    label[0, 3:6, 3:6] = 2  # class 2 nested inside class 1: must survive
    label[0, 4, 4] = 0  # hole inside the nested class: belongs to class 2
    label[0, 6, 7] = 0  # hole inside class 1
    label[0, 12:15, 1:4] = 1  # stray island of class 1
    label[0, 14, 6] = 2  # stray island of class 2
    label[0, 10:15, 9:12] = 3  # class 3 block ...
    label[0, 10:12, 12] = 3
    label[0, 1:3, 13:15] = 3  # ... and a stray island of class 3
    label[0, 10:15, 13:15] = 4  # class 4 block beside class 3
    label[0, 13:15, 12] = 4  # (12, 12) stays background: a pocket bounded by classes 3 and 4
    return label


def test_multiclass_islands_nesting_and_shared_gaps():
    label = _multiclass_map()
    out = PostprocessMask(num_classes=5)(torch.as_tensor(label))
    expected = label.copy()
    expected[0, 12:15, 1:4] = 0  # islands removed
    expected[0, 14, 6] = 0
    expected[0, 1:3, 13:15] = 0
    expected[0, 4, 4] = 2  # holes take the one class around them
    expected[0, 6, 7] = 1
    assert label[0, 12, 12] == 0 and expected[0, 12, 12] == 0  # the shared pocket stays background
    np.testing.assert_array_equal(out.numpy(), expected)
    # MONAI's FillHoles would overwrite the nested class 2 with class 1; we must not
    assert int((out == 2).sum()) == 9
    assert int((np.asarray(FillHoles()(label.copy())) == 2).sum()) < 9  # (why we do not use it)


def test_binary_hole_filling_matches_monai_fillholes():
    rng = np.random.default_rng(0)
    for connectivity in (1, 2):
        for _ in range(5):
            label = (rng.random((1, 24, 24)) < 0.55).astype(np.int64)
            ours = PostprocessMask(num_classes=2, keep_largest=False, connectivity=connectivity)(label)
            theirs = FillHoles(applied_labels=[1], connectivity=connectivity)(label.copy())
            np.testing.assert_array_equal(ours, np.asarray(theirs))


def test_connectivity_and_min_size():
    label = np.zeros((1, 8, 8), dtype=np.int64)
    label[0, 1:3, 1:3] = 1  # 4 px
    label[0, 3, 3] = 1  # diagonal neighbour of the block
    label[0, 6, 6] = 1  # isolated pixel
    full = PostprocessMask(num_classes=2, fill_holes=False)(label)  # 8-connected: block + diagonal pixel
    assert full.sum() == 5 and full[0, 3, 3] == 1
    four = PostprocessMask(num_classes=2, fill_holes=False, connectivity=1)(label)
    assert four.sum() == 4 and four[0, 3, 3] == 0
    small_gone = PostprocessMask(num_classes=2, keep_largest=False, min_size=2, connectivity=1)(label)
    assert small_gone.sum() == 4
    everything_small = PostprocessMask(num_classes=2, min_size=10)(label)
    assert everything_small.sum() == 0  # the largest component is below min_size: the class disappears


def test_change_fraction_exact():
    label = np.zeros((1, 10, 10), dtype=np.int64)
    label[0, 1:7, 1:7] = 1
    label[0, 3, 3] = 0  # 1 hole pixel
    label[0, 8, 8:11] = 1  # 2-pixel island
    out = PostprocessMask(num_classes=2)(label)
    assert mask_change_fraction(label, out) == pytest.approx(3 / 100)
    assert mask_change_fraction(torch.as_tensor(label), torch.as_tensor(label)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        mask_change_fraction(label, label[:, :5])


def test_dictionary_version_records_change():
    label = MetaTensor(torch.as_tensor(_two_blobs()), meta={"filename_or_obj": "fake_0003.png"})
    data = {"label": label, "image": torch.zeros(1, 12, 12)}
    out = PostprocessMaskd(keys="label", num_classes=2)(data)
    assert out["postprocess_change"] == pytest.approx(4 / 144)
    assert isinstance(out["label"], MetaTensor) and out["label"].meta["filename_or_obj"] == "fake_0003.png"
    assert "postprocess_change" not in data and int(data["label"].sum()) == 29  # input dict untouched
    assert PostprocessMaskD is PostprocessMaskd and PostprocessMaskDict is PostprocessMaskd
    two = PostprocessMaskd(keys=["a", "b"], num_classes=2, change_key=["a_change", "b_change"])
    result = two({"a": _two_blobs(), "b": _ring()})
    assert result["a_change"] == pytest.approx(4 / 144) and result["b_change"] == pytest.approx(2 / 81)
    assert "change" not in PostprocessMaskd(keys="label", num_classes=2, change_key=None)({"label": _ring()})
    with pytest.raises(ValueError, match="change_key"):
        PostprocessMaskd(keys=["a", "b"], num_classes=2)


@pytest.mark.parametrize(
    "kwargs, label, match",
    [
        ({"num_classes": 1}, None, "num_classes"),
        ({"num_classes": 2, "min_size": -1}, None, "min_size"),
        ({"num_classes": 3, "num_components": (1, 2, 3)}, None, "num_components"),
        ({"num_classes": 2}, np.full((1, 4, 4), 2), "num_classes=2"),
        ({"num_classes": 2}, np.zeros((4, 4)), r"\(1, H, W"),
        ({"num_classes": 2}, np.zeros((2, 4, 4)), r"\(1, H, W"),
    ],
)
def test_errors(kwargs, label, match):
    with pytest.raises(ValueError, match=match):
        PostprocessMask(**kwargs)(label)


@pytest.mark.shared_data
def test_real_chest_xray_masks():
    """Real Shenzhen lung masks (two lungs in label 1): clean masks survive, injected defects are repaired."""
    from PIL import Image

    masks = sorted((SHARED_DATA / "cxr_shenzhen" / "masks").glob("*.png"))[:3]
    if not masks:
        pytest.skip(f"shared data not found at {SHARED_DATA} (cxr_shenzhen/masks)")
    for path in masks:
        raw = np.asarray(Image.open(path).convert("L").resize((128, 128), Image.NEAREST))
        lungs = (raw > 127).astype(np.int64)[None]
        clean = PostprocessMask(num_classes=2, num_components=2)(lungs)
        np.testing.assert_array_equal(clean, lungs)  # both lungs kept, nothing changed
        damaged = lungs.copy()
        cy, cx = np.unravel_index(np.argmax(ndimage.distance_transform_edt(lungs[0])), lungs[0].shape)
        damaged[0, 0:3, 0:3] = 1  # speck in the corner
        damaged[0, cy, cx] = 0  # pinhole deep inside a lung
        repaired = PostprocessMask(num_classes=2, num_components=2)(damaged)
        np.testing.assert_array_equal(repaired, lungs)
        one_lung = PostprocessMask(num_classes=2)(lungs)  # num_components=1 drops a lung: warn users
        assert 0.2 < mask_change_fraction(lungs, one_lung) / lungs.mean() < 0.8
