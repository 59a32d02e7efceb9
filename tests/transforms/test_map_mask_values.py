from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_synth.transforms import (
    MapMaskValues,
    MapMaskValuesD,
    MapMaskValuesd,
    MapMaskValuesDict,
    OneHotMask,
    OneHotMaskd,
)

ANTI_ALIASED = [[[0, 3, 127, 128, 200, 255]]]


@pytest.mark.parametrize(
    "kwargs, values, expected",
    [
        ({"threshold": 127}, ANTI_ALIASED, [[[0, 0, 0, 1, 1, 1]]]),
        ({"threshold": 0.5, "num_classes": 2}, [[[0.0, 0.4, 0.6, 1.0]]], [[[0, 0, 1, 1]]]),
        ({"mapping": {0: 0, 255: 1}}, [[[0, 255, 255, 0]]], [[[0, 1, 1, 0]]]),
        ({"mapping": {0: 0, 1: 1, 2: 2}, "num_classes": 3}, [[[2, 1, 0, 2]]], [[[2, 1, 0, 2]]]),
        ({"mapping": {0: 0, 500: 1, 600: 2, 820: 1}}, [[[820, 600, 0, 500]]], [[[1, 2, 0, 1]]]),
        ({"mapping": {0.0: 0, 0.1: 1}}, [[[0.0, 0.1]]], [[[0, 1]]]),  # float keys match float32 data
        ({}, [[[0.0, 1.0, 2.0, 1.0]]], [[[0, 1, 2, 1]]]),  # already labels
        ({"num_classes": 4}, [[[3, 0]]], [[[3, 0]]]),
    ],
)
@pytest.mark.parametrize("as_torch", [False, True])
def test_mapping_rules(kwargs, values, expected, as_torch):
    mask = np.asarray(values, dtype=np.float32)
    mask = torch.from_numpy(mask) if as_torch else mask
    out = MapMaskValues(**kwargs)(mask)
    assert isinstance(out, torch.Tensor if as_torch else np.ndarray)
    out_np = out.numpy() if as_torch else out
    assert out_np.dtype == np.int64
    np.testing.assert_array_equal(out_np, expected)


@pytest.mark.parametrize(
    "kwargs, values, listed",
    [
        ({"mapping": {0: 0, 255: 1}}, ANTI_ALIASED, r"\[3, 127, 128, 200\]"),
        ({}, [[[0.0, 0.5, 1.0, 1.5]]], r"\[0.5, 1.5\]"),
        ({"num_classes": 2}, [[[0, 1, 2, 7]]], r"\[2, 7\]"),
        ({}, [[[0, -1]]], r"\[-1\]"),
    ],
)
def test_strict_errors_list_values_and_file(kwargs, values, listed, nifti_loader):
    mask = nifti_loader(np.asarray(values, dtype=np.float32)[0], "case_07_mask.nii.gz")
    with pytest.raises(ValueError, match="case_07_mask.nii.gz") as err:
        MapMaskValues(**kwargs)(mask)
    assert re.search(listed, str(err.value)), str(err.value)
    assert "strict=False" in str(err.value)


def test_non_strict_maps_to_background_with_warning():
    mask = np.array([[[0, 128, 255]]], dtype=np.float32)
    with pytest.warns(UserWarning, match=r"\[128\].*background"):
        out = MapMaskValues(mapping={0: 0, 255: 1}, strict=False)(mask)
    np.testing.assert_array_equal(out, [[[0, 0, 1]]])


def test_many_values_are_cut_in_message():
    mask = np.arange(100, dtype=np.float32).reshape(1, 10, 10) + 0.5
    with pytest.raises(ValueError, match=r"\(100 distinct values\)"):
        MapMaskValues()(mask, filename="noisy.png")


@pytest.mark.parametrize("channels", ["identical_rgb", "rgba_constant_alpha"])
def test_multichannel_masks_reduced(channels):
    grey = np.array([[0, 255], [255, 0]], dtype=np.float32)
    if channels == "identical_rgb":
        mask = np.stack([grey] * 3)
    else:
        mask = np.stack([grey] * 3 + [np.full_like(grey, 255)])
    out = MapMaskValues(threshold=127)(mask)
    assert out.shape == (1, 2, 2)
    np.testing.assert_array_equal(out[0], [[0, 1], [1, 0]])


def test_multichannel_masks_differing_raise():
    mask = np.zeros((3, 2, 2), dtype=np.float32)
    mask[1, 0, 0] = 255
    with pytest.raises(ValueError, match="colour_mask.png.*3 channels"):
        MapMaskValues(threshold=127)(mask, filename="colour_mask.png")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mapping": {0: 0}, "threshold": 1}, "not both"),
        ({"threshold": 127, "num_classes": 3}, "binary"),
        ({"mapping": {0: 0, 255: 2}, "num_classes": 2}, "num_classes=2"),
        ({"mapping": {0: 0.5}}, "integer label"),
        ({"mapping": {}}, "empty"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MapMaskValues(**kwargs)


def test_bad_masks():
    with pytest.raises(ValueError, match="channel-first"):
        MapMaskValues(threshold=1)(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        MapMaskValues(threshold=1)(np.full((1, 2, 2), np.nan))


@pytest.mark.parametrize("dict_cls", [MapMaskValuesd, MapMaskValuesD, MapMaskValuesDict])
def test_dict_version_metatensor(dict_cls, nifti_loader):
    mask = nifti_loader(np.array([[0, 100], [200, 255]], dtype=np.uint8), "lung_mask.nii.gz")
    out = dict_cls(keys="label", threshold=127)({"label": mask})["label"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.int64
    assert str(out.meta["filename_or_obj"]).endswith("lung_mask.nii.gz")
    np.testing.assert_array_equal(out.numpy()[0], [[0, 0], [1, 1]])


def test_dict_version_names_label_path():
    data = {"label": np.array([[[0, 9]]], dtype=np.float32), "label_path": "/data/masks/p1.png"}
    with pytest.raises(ValueError, match=r"/data/masks/p1.png.*\[9\]"):
        MapMaskValuesd(keys="label", num_classes=3)(data)


def test_one_hot_mask():
    label = np.array([[[0, 2], [1, 2]]], dtype=np.int64)
    out = OneHotMask(3)(label)
    assert isinstance(out, np.ndarray) and out.shape == (3, 2, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(0), label[0])
    np.testing.assert_array_equal(out.sum(0), np.ones((2, 2)))
    d = OneHotMaskd(keys="label", num_classes=3)({"label": torch.from_numpy(label)})
    assert tuple(d["label"].shape) == (3, 2, 2)
    with pytest.raises(ValueError, match=r"\[3\]"):
        OneHotMask(3)(np.array([[[0, 3]]]))
