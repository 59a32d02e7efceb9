from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_synth.transforms import NormalizeToRange, NormalizeToRangeD, NormalizeToRanged, NormalizeToRangeDict

EXACT_CASES = [
    # lung window (-600, 1500): [-1350, 150] -> [-1, 1], clipped outside
    ({"mode": "window", "window": (-600, 1500)}, [[[-2000.0, -1350.0, -600.0, 150.0, 3000.0]]], [[[-1, -1, 0, 1, 1]]]),
    # mediastinal window (40, 400): [-160, 240]
    ({"mode": "window", "window": (40, 400)}, [[[-160.0, 40.0, 140.0, 240.0]]], [[[-1, 0, 0.5, 1]]]),
    ({"mode": "fixed", "input_range": (0, 255)}, [[[0.0, 51.0, 255.0, 300.0]]], [[[-1, -0.6, 1, 1]]]),
    ({"mode": "minmax"}, [[[2.0, 4.0, 6.0]], [[-10.0, 0.0, 10.0]]], [[[-1, 0, 1]], [[-1, 0, 1]]]),
    # whole-image min-max when not channel-wise
    ({"mode": "minmax", "channel_wise": False}, [[[0.0, 5.0]], [[10.0, 10.0]]], [[[-1, 0]], [[1, 1]]]),
    # z-score of [0, 1, 2, 3]: mean 1.5, std sqrt(1.25); clip at 1 std then divide by 1
    ({"mode": "zscore", "zscore_clip": 1.0}, [[[0.0, 1.0, 2.0, 3.0]]], [[[-1, -0.4472136, 0.4472136, 1]]]),
    (
        {"mode": "zscore", "zscore_clip": 3.0},
        [[[0.0, 1.0, 2.0, 3.0]]],
        [[[-0.4472136, -0.1490712, 0.1490712, 0.4472136]]],
    ),
    # percentiles (0, 100) == min-max; a constant channel gives -1 (no NaN)
    (
        {"mode": "percentile", "percentiles": (0, 100)},
        [[[1.0, 2.0, 3.0]], [[7.0, 7.0, 7.0]]],
        [[[-1, 0, 1]], [[-1, -1, -1]]],
    ),
    ({"mode": "minmax"}, [[[5.0, 5.0, 5.0]]], [[[-1, -1, -1]]]),
    ({"mode": "zscore"}, [[[5.0, 5.0, 5.0]]], [[[0, 0, 0]]]),
]


@pytest.mark.parametrize("kwargs, values, expected", EXACT_CASES)
@pytest.mark.parametrize("as_torch", [False, True])
def test_exact_values_and_type(kwargs, values, expected, as_torch):
    img = torch.tensor(values) if as_torch else np.asarray(values, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constant channels must not hit MONAI's divide-by-zero path
        out = NormalizeToRange(**kwargs)(img)
    assert isinstance(out, torch.Tensor if as_torch else np.ndarray)
    assert not isinstance(out, MetaTensor)
    out_np = out.numpy() if as_torch else out
    assert out_np.dtype == np.float32
    np.testing.assert_allclose(out_np, np.asarray(expected, dtype=np.float32), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "window", "window": (40, 400)},
        {"mode": "percentile"},
        {"mode": "zscore"},
        {"mode": "minmax"},
        {"mode": "fixed", "input_range": (-1000, 1000)},
    ],
)
def test_range_on_random_multichannel(kwargs):
    rng = np.random.default_rng(0)
    img = rng.normal(100, 300, size=(3, 16, 12, 4)).astype(np.float32)  # 3D, 3 modalities
    out = NormalizeToRange(**kwargs)(img)
    assert out.shape == img.shape
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert np.isfinite(out).all()


def test_percentile_is_robust_per_channel():
    img = np.stack([np.arange(1000.0), np.arange(1000.0) * 100]).reshape(2, 10, 100).astype(np.float32)
    img[0, 0, 0] = -1e6  # outlier
    out = NormalizeToRange(mode="percentile", percentiles=(1, 99))(img)
    # the outlier is clipped and does not squash the rest of the channel
    assert out[0, 0, 0] == -1.0
    assert np.isclose(np.median(out[0]), 0.0, atol=0.02)
    np.testing.assert_allclose(out[0], out[1], atol=0.01)  # same relative shape -> same output


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "gamma"}, "unknown mode"),
        ({"mode": "window"}, "window=\\(center, width\\)"),
        ({"mode": "window", "window": (40, 0)}, "width must be > 0"),
        ({"mode": "minmax", "window": (40, 400)}, "only used with mode='window'"),
        ({"mode": "fixed"}, "input_range"),
        ({"mode": "fixed", "input_range": (255, 0)}, "a_min < a_max"),
        ({"mode": "zscore", "input_range": (0, 1)}, "only used with mode='fixed'"),
        ({"mode": "percentile", "percentiles": (99, 1)}, "percentiles"),
        ({"mode": "zscore", "zscore_clip": 0}, "zscore_clip"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NormalizeToRange(**kwargs)


def test_bad_images_name_the_file(nifti_loader):
    img = np.ones((4, 5), dtype=np.float32)
    img[1, 1] = np.nan
    loaded = nifti_loader(img, "scan_nan.nii.gz")
    with pytest.raises(ValueError, match="scan_nan.nii.gz.*NaN"):
        NormalizeToRange()(loaded)
    with pytest.raises(ValueError, match="channel-first"):
        NormalizeToRange()(np.zeros((4, 5)))


@pytest.mark.parametrize("dict_cls", [NormalizeToRanged, NormalizeToRangeD, NormalizeToRangeDict])
def test_dict_version_with_metatensor(dict_cls, nifti_loader):
    raw = np.array([[0.0, 255.0], [51.0, 102.0]], dtype=np.float32)
    image = nifti_loader(raw, "xray.nii.gz")
    label = torch.ones(1, 2, 2, dtype=torch.int64)
    out = dict_cls(keys="image", mode="fixed", input_range=(0, 255))({"image": image, "label": label})
    assert isinstance(out["image"], MetaTensor)
    assert str(out["image"].meta["filename_or_obj"]).endswith("xray.nii.gz")
    np.testing.assert_allclose(out["image"].numpy()[0], [[-1, 1], [-0.6, -0.2]], atol=1e-6)
    assert out["label"] is label  # other keys untouched
