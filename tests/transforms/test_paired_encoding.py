from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_synth.transforms import (
    DecodePaired,
    DecodePairedD,
    DecodePairedd,
    EncodePaired,
    EncodePairedd,
    EncodePairedDict,
    mask_channels,
)


def _pair(image_channels: int, num_classes: int, seed: int = 0, size: tuple[int, int] = (5, 6)):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand((image_channels, *size), generator=gen) * 2 - 1
    label = torch.randint(0, num_classes, (1, *size), generator=gen)
    return image, label


@pytest.mark.parametrize("num_classes, expected", [(2, 1), (3, 3), (4, 4), (6, 6)])
def test_mask_channels(num_classes, expected):
    assert mask_channels(num_classes) == expected


def test_mask_channels_rejects_single_class():
    with pytest.raises(ValueError, match="num_classes"):
        mask_channels(1)


def test_binary_encoding_values():
    image = torch.tensor([[[-1.0, 0.5], [0.0, 1.0]]])
    label = torch.tensor([[[0, 1], [1, 0]]])
    pair = EncodePaired(2)(image, label)
    expected = torch.tensor([[[-1.0, 0.5], [0.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]]])
    torch.testing.assert_close(pair, expected)


def test_multiclass_encoding_values():
    image = torch.zeros(1, 1, 3)
    label = torch.tensor([[[0, 2, 1]]])
    pair = EncodePaired(3)(image, label)
    assert pair.shape == (4, 1, 3)
    torch.testing.assert_close(pair[1:, 0], torch.tensor([[1.0, -1, -1], [-1, -1, 1], [-1, 1, -1]]))


@pytest.mark.parametrize("image_channels", [1, 3])
@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("as_torch", [False, True])
def test_round_trip(image_channels, num_classes, as_torch):
    image, label = _pair(image_channels, num_classes)
    if not as_torch:
        image, label = image.numpy(), label.numpy()
    pair = EncodePaired(num_classes)(image, label)
    assert isinstance(pair, torch.Tensor if as_torch else np.ndarray)
    assert tuple(pair.shape) == (image_channels + mask_channels(num_classes), 5, 6)
    assert pair.min() >= -1 and pair.max() <= 1
    dec_image, dec_label = DecodePaired(image_channels, num_classes)(pair)
    assert isinstance(dec_label, torch.Tensor if as_torch else np.ndarray)
    assert tuple(dec_label.shape) == (1, 5, 6)
    assert str(dec_label.dtype).endswith("int64")
    np.testing.assert_allclose(np.asarray(dec_image), np.asarray(image), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(dec_label), np.asarray(label))


@pytest.mark.parametrize("num_classes", [2, 4])
def test_decode_noisy_logits(num_classes):
    image, label = _pair(1, num_classes, seed=3, size=(16, 16))
    clean = EncodePaired(num_classes)(image, label)
    gen = torch.Generator().manual_seed(4)
    noisy = clean * 3.0 + torch.randn(clean.shape, generator=gen) * 0.4  # far outside [-1, 1], not +-1
    dec_image, dec_label = DecodePaired(1, num_classes)(noisy)
    assert dec_image.min() >= -1 and dec_image.max() <= 1  # image clamped
    torch.testing.assert_close(dec_label, label)


def test_decode_threshold_and_ties():
    binary = torch.tensor([[[0.0, 0.0]], [[-0.2, 0.3]]])
    _, lab = DecodePaired(1, 2)(binary)
    torch.testing.assert_close(lab, torch.tensor([[[0, 1]]]))
    _, lab = DecodePaired(1, 2, threshold=0.5)(binary)
    torch.testing.assert_close(lab, torch.tensor([[[0, 0]]]))
    _, lab = DecodePaired(1, 2)(torch.tensor([[[0.0]], [[0.0]]]))  # exactly at threshold -> background
    assert lab.item() == 0
    # multi-class tie between classes 1 and 2 -> the lower index; all equal -> background
    multi = torch.tensor([[[0.0, 0.0]], [[-1.0, 0.7]], [[0.7, 0.7]], [[0.7, 0.7]]])
    _, lab = DecodePaired(1, 3)(multi)
    torch.testing.assert_close(lab, torch.tensor([[[1, 0]]]))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_batched_decode_and_encode(num_classes):
    pairs = [_pair(2, num_classes, seed=s) for s in range(3)]
    images = torch.stack([p[0] for p in pairs])
    labels = torch.stack([p[1] for p in pairs])
    encoded = EncodePaired(num_classes)(images, labels)
    assert tuple(encoded.shape) == (3, 2 + mask_channels(num_classes), 5, 6)
    for b, (image, label) in enumerate(pairs):  # batched encode == per-item encode
        torch.testing.assert_close(encoded[b], EncodePaired(num_classes)(image, label))
    dec_image, dec_label = DecodePaired(2, num_classes)(encoded)
    assert tuple(dec_image.shape) == (3, 2, 5, 6) and tuple(dec_label.shape) == (3, 1, 5, 6)
    torch.testing.assert_close(dec_label, labels)


@pytest.mark.parametrize(
    "image, label, match",
    [
        (torch.zeros(1, 4, 4), torch.tensor([[[0, 1, 2, 0]]]).expand(1, 4, 4), r"\[2\].*0\.\.1"),
        (torch.zeros(1, 4, 4), torch.full((1, 4, 4), -1), r"\[-1\]"),
        (torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5), r"\[0.5\].*MapMaskValues"),
        (torch.zeros(1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.int64), r"\(1, 4, 4\).*\(1, 4, 5\)"),
        (torch.zeros(1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.int64), "label_channels=1"),
        (torch.full((1, 4, 4), 255.0), torch.zeros(1, 4, 4, dtype=torch.int64), "NormalizeToRange"),
        (torch.full((1, 4, 4), float("nan")), torch.zeros(1, 4, 4, dtype=torch.int64), "NaN"),
        (torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.int64), "spatial_dims=2"),
    ],
)
def test_encode_errors(image, label, match):
    with pytest.raises(ValueError, match=match):
        EncodePaired(2)(image, label)


def test_encode_tolerates_rounding_and_clamps():
    image = torch.tensor([[[1.0004, -1.0004]]])
    pair = EncodePaired(2)(image, torch.zeros(1, 1, 2, dtype=torch.int64))
    torch.testing.assert_close(pair[0], torch.tensor([[1.0, -1.0]]))


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (torch.zeros(3, 4, 4), {"image_channels": 1, "num_classes": 2}, "image_channels=1.*num_classes=2"),
        (torch.zeros(2, 4, 4), {"image_channels": 1, "num_classes": 3}, "= 4"),
        (torch.full((2, 4, 4), float("nan")), {"image_channels": 1, "num_classes": 2}, "NaN"),
        (torch.zeros(4, 4), {"image_channels": 1, "num_classes": 2}, "spatial_dims"),
    ],
)
def test_decode_errors(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DecodePaired(**kwargs)(x)


def test_decode_bad_settings():
    with pytest.raises(ValueError, match="image_channels"):
        DecodePaired(0, 2)
    with pytest.raises(ValueError, match="num_classes"):
        DecodePaired(1, 1)


@pytest.mark.parametrize("enc_cls, dec_cls", [(EncodePairedd, DecodePairedd), (EncodePairedDict, DecodePairedD)])
def test_dict_round_trip_with_metatensors(enc_cls, dec_cls, nifti_loader):
    image = nifti_loader(np.array([[-1.0, 0.0, 1.0], [0.5, 0.25, -0.5]], dtype=np.float32), "img_001.nii.gz")
    label = nifti_loader(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.int16), "lab_001.nii.gz")
    encode = enc_cls(image_key="image", label_key="label", output_key="pair", num_classes=3)
    d = encode({"image": image, "label": label})
    pair = d["pair"]
    assert isinstance(pair, MetaTensor) and tuple(pair.shape) == (4, 2, 3)
    assert str(pair.meta["filename_or_obj"]).endswith("img_001.nii.gz")
    assert d["image"] is image and d["label"] is label  # inputs kept
    out = dec_cls(key="pair", image_key="gen_image", label_key="gen_label", image_channels=1, num_classes=3)(
        {"pair": pair}
    )
    torch.testing.assert_close(out["gen_image"].as_tensor(), image.as_tensor())
    np.testing.assert_array_equal(out["gen_label"].numpy(), label.numpy())
    assert out["gen_label"].dtype == torch.int64


def test_dict_encode_names_both_files(nifti_loader):
    image = nifti_loader(np.zeros((4, 4), np.float32), "img_002.nii.gz")
    label = nifti_loader(np.zeros((4, 5), np.int16), "lab_002.nii.gz")
    with pytest.raises(ValueError, match=r"img_002.nii.gz.*\(1, 4, 4\).*lab_002.nii.gz.*\(1, 4, 5\)"):
        EncodePairedd(num_classes=2)({"image": image, "label": label})
    raw = {"image": np.zeros((1, 2, 2), np.float32), "label": np.full((1, 2, 2), 5), "label_path": "p/mask_9.png"}
    with pytest.raises(ValueError, match=r"mask_9.png.*\[5\]"):
        EncodePairedd(num_classes=2)(raw)
