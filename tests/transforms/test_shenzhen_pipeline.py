"""The transforms chained on a real Shenzhen chest X-ray pair (anti-aliased 0..255 lung mask)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monai_synth.transforms import (
    DecodePairedd,
    EncodePairedd,
    EnsurePairedShaped,
    MapMaskValuesd,
    NormalizeToRanged,
    PairedCropResized,
)

SHENZHEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cxr_shenzhen"
CASE = "CHNCXR_0001_0.png"


@pytest.mark.shared_data
def test_shenzhen_pair_pipeline():
    image_path, label_path = SHENZHEN / "images" / CASE, SHENZHEN / "masks" / CASE
    if not (image_path.is_file() and label_path.is_file()):
        pytest.skip(f"Shenzhen data not found at {SHENZHEN} (see ../shared/data/README.md)")
    keys = ("image", "label")
    pipeline = Compose(
        [
            LoadImaged(keys, image_only=True),
            EnsureChannelFirstd(keys),
            EnsurePairedShaped(keys, image_channels=1),
            MapMaskValuesd("label", threshold=127),
            NormalizeToRanged("image", mode="fixed", input_range=(0, 255)),
            PairedCropResized(keys, spatial_size=128),
            EncodePairedd(num_classes=2),
        ]
    )
    d = pipeline({"image": str(image_path), "label": str(label_path)})

    assert tuple(d["image"].shape) == (1, 128, 128) and d["image"].dtype == torch.float32
    assert tuple(d["label"].shape) == (1, 128, 128) and d["label"].dtype == torch.int64
    assert set(d["label"].unique().tolist()) == {0, 1}
    lung_fraction = d["label"].float().mean().item()
    assert 0.1 < lung_fraction < 0.6  # two lungs, not an empty or inverted mask
    assert -1.0 <= d["image"].min() < -0.5 and 0.5 < d["image"].max() <= 1.0

    pair = d["pair"]
    assert isinstance(pair, MetaTensor) and tuple(pair.shape) == (2, 128, 128)
    assert pair.min() >= -1 and pair.max() <= 1
    assert set(pair[1].unique().tolist()) == {-1.0, 1.0}
    assert Path(str(pair.meta["filename_or_obj"])).name == CASE

    decoded = DecodePairedd(image_channels=1, num_classes=2, image_key="dec_image", label_key="dec_label")(d)
    torch.testing.assert_close(decoded["dec_label"].as_tensor(), d["label"].as_tensor())
