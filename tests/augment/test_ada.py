"""Paired-aware adaptive discriminator augmentation."""

from __future__ import annotations

import pytest
import torch

from monai_synth.augment import PairedAugmentPipe

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
INTENSITY = ("brightness", "contrast", "lumaflip")


def _pairs(b=16, size=32):
    """Smooth random images; the mask channel is ``image > 0`` encoded in {-1, 1}."""
    torch.manual_seed(0)
    image = torch.nn.functional.interpolate(torch.randn(b, 1, 4, 4), size=size, mode="bicubic", align_corners=False)
    mask = torch.where(image > 0, 1.0, -1.0)
    return torch.cat([image, mask], dim=1)


def _only(names, p=1.0):
    return PairedAugmentPipe(image_channels=1, p=p, **{n: float(n in names) for n in GEOMETRIC + INTENSITY})


def test_p_zero_is_identity():
    x = _pairs()
    assert PairedAugmentPipe(1, p=0.0)(x) is x


def test_integer_geometric_ops_keep_threshold_mask_exactly_aligned():
    x = _pairs()
    y = _only(("xflip", "rotate90", "xint"))(x)
    assert not torch.equal(y, x)
    assert torch.equal(y[:, 1:] > 0, y[:, :1] > 0)
    assert set(y[:, 1].unique().tolist()) <= {-1.0, 1.0}


def test_all_geometric_ops_keep_mask_crisp_and_aligned():
    x = _pairs(32)
    y = _only(GEOMETRIC)(x)
    assert set(y[:, 1].unique().tolist()) <= {-1.0, 1.0}  # nearest resampling: no blended mask values
    agreement = ((y[:, 1:] > 0) == (y[:, :1] > 0)).float().mean()
    assert agreement > 0.97  # only pixels on the boundary can disagree (bilinear vs nearest)
    assert not torch.equal(y, x)


def test_intensity_ops_touch_image_channels_only():
    x = _pairs()
    y = _only(INTENSITY)(x)
    assert torch.equal(y[:, 1:], x[:, 1:])
    assert not torch.allclose(y[:, :1], x[:, :1])
    flipped = _only(("lumaflip",))(x)
    for i in range(x.shape[0]):  # one channel: the luma flip is a sign change, or nothing
        assert torch.equal(flipped[i, 0], x[i, 0]) or torch.allclose(flipped[i, 0], -x[i, 0])


def test_mask_only_and_multichannel_inputs_and_gradients():
    x = _pairs()
    mask_only = PairedAugmentPipe(image_channels=0, p=1.0)(x[:, 1:])
    assert set(mask_only.unique().tolist()) <= {-1.0, 1.0}
    multi = torch.randn(4, 5, 16, 16, requires_grad=True)
    out = PairedAugmentPipe(image_channels=3, p=0.8)(multi)
    assert out.shape == multi.shape
    out.sum().backward()
    assert multi.grad is not None and torch.isfinite(multi.grad).all()
    with pytest.raises(ValueError, match="image_channels=3"):
        PairedAugmentPipe(image_channels=3, p=0.5)(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="square"):
        PairedAugmentPipe(1, p=0.5)(torch.zeros(2, 2, 8, 4))


def test_probability_controls_how_many_samples_change():
    x = _pairs(200, 16)
    changed = lambda p: (_only(("xflip", "rotate90"), p)(x) != x).flatten(1).any(1).float().mean().item()  # noqa: E731
    torch.manual_seed(1)
    low, high = changed(0.1), changed(0.9)
    assert low < 0.2 and high > 0.6
    assert float(PairedAugmentPipe(1, p=0.3).state_dict()["p"]) == pytest.approx(0.3)
