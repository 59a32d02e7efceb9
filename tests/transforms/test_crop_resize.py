from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_synth.transforms import CropResize, PairedCropResizeD, PairedCropResized, PairedCropResizeDict


@pytest.mark.parametrize(
    "in_shape, spatial_size, out_shape",
    [
        ((1, 20, 12), 8, (1, 8, 8)),  # tall
        ((3, 12, 20), 8, (3, 8, 8)),  # wide, 3 channels
        ((1, 9, 9), 16, (1, 16, 16)),  # up-sampling a square
        ((2, 10, 14), (6, 6), (2, 6, 6)),
        ((1, 10, 12, 14), 5, (1, 5, 5, 5)),  # 3D
    ],
)
@pytest.mark.parametrize("as_torch", [False, True])
def test_shapes_and_types(in_shape, spatial_size, out_shape, as_torch):
    img = np.random.default_rng(0).random(in_shape).astype(np.float32)
    img = torch.from_numpy(img) if as_torch else img
    out = CropResize(spatial_size)(img)
    assert tuple(out.shape) == out_shape
    assert isinstance(out, torch.Tensor if as_torch else np.ndarray)
    assert out.dtype == (torch.float32 if as_torch else np.float32)


def test_crop_is_centred():
    # wide image: columns 0..13, the centred 10 x 10 square keeps columns 2..11
    img = np.tile(np.arange(14, dtype=np.float32), (1, 10, 1))
    out = CropResize(10, mode="nearest")(img)
    np.testing.assert_array_equal(out[0, 0], np.arange(2, 12))
    # without the crop the whole width is squeezed in
    squeezed = CropResize(7, mode="nearest", crop_to_square=False)(img)
    assert squeezed[0, 0, 0] == 0 and squeezed[0, 0, -1] == 12


def test_area_mode_averages():
    img = np.array([[[0, 2], [4, 6]]], dtype=np.float32)
    np.testing.assert_allclose(CropResize(1, mode="area")(img), [[[3.0]]])


@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
@pytest.mark.parametrize("size", [7, 32])
def test_masks_stay_integer_without_new_values(dtype, size):
    rng = np.random.default_rng(1)
    mask = rng.choice(np.array([0, 1, 3], dtype=dtype), size=(1, 18, 25))
    out = CropResize(size, mode="nearest")(mask)
    assert out.dtype == dtype and out.shape == (1, size, size)
    assert set(np.unique(out)) <= {0, 1, 3}


def test_bad_settings():
    with pytest.raises(ValueError, match="positive"):
        CropResize(0)
    with pytest.raises(ValueError, match="channel-first"):
        CropResize(4)(np.zeros((8,)))
    with pytest.raises(ValueError, match="2 dims"):
        CropResize((4, 4))(np.zeros((1, 8, 8, 8)))


@pytest.mark.parametrize("dict_cls", [PairedCropResized, PairedCropResizeD, PairedCropResizeDict])
def test_paired_dict_with_metatensors(dict_cls, nifti_loader):
    rng = np.random.default_rng(2)
    image = nifti_loader(rng.random((12, 20)).astype(np.float32), "img.nii.gz")
    label = nifti_loader(rng.integers(0, 3, (12, 20)).astype(np.int16), "lab.nii.gz")
    out = dict_cls(keys=("image", "label"), spatial_size=6)({"image": image, "label": label})
    for key in ("image", "label"):
        assert isinstance(out[key], MetaTensor) and tuple(out[key].shape) == (1, 6, 6)
    assert out["image"].dtype == torch.float32
    assert out["label"].dtype == label.dtype
    assert set(out["label"].unique().tolist()) <= {0, 1, 2}
    # the affine follows the crop (4 voxels off the long axis) and the 2x zoom
    np.testing.assert_allclose(out["label"].affine.numpy()[:2, :2], 2.0 * np.eye(2), atol=1e-5)
    np.testing.assert_allclose(out["label"].affine, out["image"].affine, atol=1e-5)


def test_paired_dict_per_key_modes_and_pairing():
    image = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    label = (image > 7).to(torch.int64)
    out = PairedCropResized(spatial_size=2, mode=("area", "nearest"))({"image": image, "label": label})
    np.testing.assert_allclose(out["image"].numpy(), [[[2.5, 4.5], [10.5, 12.5]]])
    np.testing.assert_array_equal(out["label"].numpy(), [[[0, 0], [1, 1]]])


def test_paired_dict_shape_mismatch_names_files():
    data = {
        "image": np.zeros((1, 10, 12), np.float32),
        "label": np.zeros((1, 10, 10), np.int64),
        "image_path": "a_img.png",
        "label_path": "a_mask.png",
    }
    with pytest.raises(ValueError, match=r"a_img.png.*\(10, 12\).*a_mask.png.*\(10, 10\)"):
        PairedCropResized(spatial_size=4)(data)
