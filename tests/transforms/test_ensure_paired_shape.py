from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_synth.transforms import EnsurePairedShape, EnsurePairedShapeD, EnsurePairedShaped, EnsurePairedShapeDict


@pytest.mark.parametrize("dict_cls", [EnsurePairedShaped, EnsurePairedShapeD, EnsurePairedShapeDict])
def test_matching_pair_passes_unchanged(dict_cls):
    data = {"image": np.zeros((3, 4, 5), np.float32), "label": torch.zeros(1, 4, 5, dtype=torch.int64)}
    out = dict_cls(keys=("image", "label"), image_channels=3, label_channels=1)(data)
    assert out["image"] is data["image"] and out["label"] is data["label"]


def test_shape_mismatch_names_paths_and_shapes():
    data = {
        "image": np.zeros((1, 512, 512), np.float32),
        "label": np.zeros((1, 256, 256), np.float32),
        "image_path": "images/CHNCXR_0001_0.png",
        "label_path": "masks/CHNCXR_0001_0.png",
    }
    with pytest.raises(ValueError) as err:
        EnsurePairedShaped(keys=("image", "label"))(data)
    message = str(err.value)
    for part in ("images/CHNCXR_0001_0.png", "masks/CHNCXR_0001_0.png", "(512, 512)", "(256, 256)"):
        assert part in message


def test_shape_mismatch_names_metatensor_files(nifti_loader):
    image = nifti_loader(np.zeros((6, 7), np.float32), "ct_slice.nii.gz")
    label = nifti_loader(np.zeros((6, 6), np.uint8), "ct_mask.nii.gz")
    with pytest.raises(ValueError, match=r"ct_slice.nii.gz.*\(6, 7\).*ct_mask.nii.gz.*\(6, 6\)"):
        EnsurePairedShaped()({"image": image, "label": label})


@pytest.mark.parametrize(
    "image_shape, label_shape, kwargs, match",
    [
        ((3, 4, 4), (1, 4, 4), {"image_channels": 1}, r"mri_t1.nii.gz.*3 channels.*image_channels=1"),
        ((1, 4, 4), (3, 4, 4), {"label_channels": 1}, r"label_channels=1.*MapMaskValues"),
        ((1, 4, 4), (4, 4), {}, "same number of dims"),
    ],
)
def test_channel_and_dim_errors(image_shape, label_shape, kwargs, match):
    data = {"image": np.zeros(image_shape), "label": np.zeros(label_shape), "image_path": "mri_t1.nii.gz"}
    with pytest.raises(ValueError, match=match):
        EnsurePairedShaped(**kwargs)(data)


def test_image_only_still_checks_channels():
    data = {"image": np.zeros((2, 4, 4)), "image_path": "x.nii.gz"}
    with pytest.raises(ValueError, match="x.nii.gz.*image_channels=1"):
        EnsurePairedShaped(image_channels=1, allow_missing_keys=True)(data)
    assert EnsurePairedShaped(image_channels=2, allow_missing_keys=True)(data)["image"] is data["image"]


def test_array_version_batched():
    check = EnsurePairedShape(image_channels=2, spatial_dims=2)
    image, label = torch.zeros(4, 2, 8, 8), torch.zeros(4, 1, 8, 8)
    assert check(image, label)[0] is image
    with pytest.raises(ValueError, match="shapes differ"):
        check(image, torch.zeros(3, 1, 8, 8))  # batch sizes differ
    with pytest.raises(ValueError, match="image_channels"):
        EnsurePairedShape(image_channels=0)
