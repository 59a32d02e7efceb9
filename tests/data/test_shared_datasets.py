"""The data path on the real shared datasets (Shenzhen chest X-ray, MSD hippocampus); skipped when absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.data import CacheDataset, load_decathlon_datalist
from PIL import Image

from monai_synth.data.datalist import resolve_dataset
from monai_synth.data.slicing import extract_slices
from monai_synth.data.splits import check_no_leakage, split_datalist, write_datalist

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SHENZHEN = SHARED / "cxr_shenzhen"
HIPPOCAMPUS = SHARED / "msd_hippocampus"

pytestmark = pytest.mark.shared_data


def _require(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"shared dataset {folder} is absent")


@pytest.fixture(scope="module")
def shenzhen_items():
    _require(SHENZHEN)
    return resolve_dataset(SHENZHEN)


@pytest.fixture(scope="module")
def hippocampus_items():
    _require(HIPPOCAMPUS)
    return resolve_dataset(HIPPOCAMPUS)


def test_shenzhen_pairs(shenzhen_items):
    assert len(shenzhen_items) == 566
    for item in shenzhen_items[:5] + shenzhen_items[-5:]:
        assert Path(item["image"]).parent.name == "images" and Path(item["label"]).parent.name == "masks"
        assert Path(item["image"]).name == Path(item["label"]).name == f"{item['case_id']}.png"
    assert [i["case_id"] for i in shenzhen_items] == sorted(i["case_id"] for i in shenzhen_items)


def test_shenzhen_slices_orientation_and_values(shenzhen_items):
    items = shenzhen_items[:4]
    slices = extract_slices(items, axis=None)
    assert len(slices) == 4
    for item, s in zip(items, slices):
        assert s["image"].shape == (1, 512, 512) and s["image"].dtype == np.float32
        assert s["label"].shape == (1, 512, 512)
        np.testing.assert_array_equal(s["image"][0], np.asarray(Image.open(item["image"])))
        np.testing.assert_array_equal(s["label"][0], np.asarray(Image.open(item["label"])))
        assert 0 <= s["image"].min() and s["image"].max() <= 255
        raw = np.unique(s["label"])
        assert raw.min() == 0 and raw.max() == 255 and len(raw) > 2  # anti-aliased, left for MapMaskValues
        lung = s["label"][0] > 127
        assert set(np.unique(lung.astype(np.uint8))) == {0, 1}
        rows, cols = np.nonzero(lung)
        height, width = lung.shape
        assert 0.3 * height < rows.mean() < 0.6 * height  # upper-middle rows (apices at the top)
        assert 0.4 * width < cols.mean() < 0.6 * width
        left, right = lung[:, : width // 2].sum(), lung[:, width // 2 :].sum()
        assert 0.6 < left / right < 1.6  # two lungs side by side, roughly symmetric
        # the mediastinum separates the lungs along the middle column band, not the middle row band
        columns, rows_profile = lung.sum(axis=0), lung.sum(axis=1)
        centre_column = columns[width // 2 - 10 : width // 2 + 10].mean() / columns.max()
        centre_row = rows_profile[height // 2 - 10 : height // 2 + 10].mean() / rows_profile.max()
        assert centre_column < 0.3 < 0.6 < centre_row


def test_hippocampus_slices(hippocampus_items, tmp_path):
    assert len(hippocampus_items) == 260
    assert all(Path(i["image"]).parent.name == "imagesTr" for i in hippocampus_items)
    items = hippocampus_items[:5]
    slices = extract_slices(items, axis=2, keep_labels=[1, 2], cache_dir=tmp_path / "cache")
    assert len(slices) > 0
    assert [s["case_id"] for s in slices] == sorted(s["case_id"] for s in slices)  # grouped by volume
    assert {s["case_id"] for s in slices} == {i["case_id"] for i in items}
    per_case: dict[str, list[int]] = {}
    for s in slices:
        assert s["image"].ndim == 3 and s["image"].shape[0] == 1
        assert s["label"].shape == (1, *s["image"].shape[1:])
        assert np.isin(s["label"], [1, 2]).any()  # every kept slice shows hippocampus
        assert set(np.unique(s["label"]).tolist()) <= {0, 1, 2}
        per_case.setdefault(s["case_id"], []).append(s["slice_index"])
    for item in items:
        volume_shape = slices[[s["case_id"] for s in slices].index(item["case_id"])]["image"].shape[1:]
        assert 25 <= volume_shape[0] <= 45 and 40 <= volume_shape[1] <= 65
        assert per_case[item["case_id"]] == sorted(set(per_case[item["case_id"]]))
    # cached slices equal freshly computed ones
    again = extract_slices(items, axis=2, keep_labels=[1, 2], cache_dir=tmp_path / "cache")
    assert len(again) == len(slices)
    np.testing.assert_array_equal(again[7]["image"], slices[7]["image"])
    # a MONAI dataset over the slices serves the arrays as they are
    dataset = CacheDataset(slices, transform=None, progress=False)
    assert np.array_equal(np.asarray(dataset[3]["label"]), slices[3]["label"])


def test_hippocampus_split_by_volume(hippocampus_items, tmp_path):
    items = hippocampus_items[:10]
    splits = split_datalist(items, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert [len(splits[k]) for k in ("training", "validation", "test")] == [7, 1, 2]
    check_no_leakage(splits["training"], splits["test"])
    path = write_datalist(tmp_path / "split.json", splits)
    loaded = load_decathlon_datalist(path, is_segmentation=True, data_list_key="test")
    assert [i["image"] for i in loaded] == [i["image"] for i in splits["test"]]
    assert resolve_dataset(path, key="test") == splits["test"]
