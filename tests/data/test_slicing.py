from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_synth.data import slicing
from monai_synth.data.datalist import SkipReport
from monai_synth.data.slicing import extract_slices, load_paired_arrays, slice_cache_path

SHAPE = (4, 5, 6)


def _nifti(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return str(path)


def _volume_pair(root: Path, case: str = "c1", label_dtype=np.uint8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, SHAPE).astype(np.float32)
    label = np.zeros(SHAPE, dtype=label_dtype)
    label[1:3, 1:3, 2] = 1  # label 1 on axis-2 slice 2 (4 pixels)
    label[0, 0, 4] = 2  # label 2 on axis-2 slice 4 (1 pixel)
    label[2, 2, 5] = 7  # an unrelated label on slice 5
    return {
        "image": _nifti(root / "images" / f"{case}.nii.gz", image),
        "label": _nifti(root / "labels" / f"{case}.nii.gz", label),
        "case_id": case,
        "subject_age": 42,
        "_image": image,
        "_label": label,
    }


@pytest.fixture
def pair(tmp_path):
    return _volume_pair(tmp_path)


def _files(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("_")}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_extract_slices_axis_values_and_keys(pair, axis):
    slices = extract_slices([_files(pair)], axis=axis)
    assert len(slices) == SHAPE[axis]
    for k, item in enumerate(slices):
        expected_image = np.take(pair["_image"], k, axis=axis)
        expected_label = np.take(pair["_label"], k, axis=axis)
        assert item["image"].shape == (1, *expected_image.shape) and item["image"].dtype == np.float32
        assert item["label"].shape == (1, *expected_label.shape) and np.issubdtype(item["label"].dtype, np.integer)
        np.testing.assert_array_equal(item["image"][0], expected_image)
        np.testing.assert_array_equal(item["label"][0], expected_label)  # raw values, unchanged
        assert item["slice_index"] == k and item["case_id"] == "c1" and item["subject_age"] == 42
        assert item["image_path"] == pair["image"] and item["label_path"] == pair["label"]


@pytest.mark.parametrize(
    "keep_labels, min_pixels, expected",
    [([1, 2], 1, [2, 4]), ([1], 1, [2]), (2, 1, [4]), ([1, 2], 2, [2]), ([7], 1, [5]), ([1, 2], 4, [2])],
)
def test_extract_slices_keep_labels(pair, keep_labels, min_pixels, expected):
    slices = extract_slices([_files(pair)], axis=2, keep_labels=keep_labels, min_label_pixels=min_pixels)
    assert [s["slice_index"] for s in slices] == expected


def test_extract_slices_keep_labels_nothing_found_lists_values(pair):
    with pytest.raises(ValueError, match=r"keep_labels=\[255\].*label values found in the masks: \[0, 1, 2, 7\]"):
        extract_slices([_files(pair)], axis=2, keep_labels=[255])


def test_extract_slices_float_labels_become_integers(tmp_path):
    item = _volume_pair(tmp_path, label_dtype=np.float32)
    slices = extract_slices([_files(item)], axis=2, keep_labels=[7])
    assert slices[0]["label"].dtype == np.uint8 and slices[0]["label"].max() == 7


def test_extract_slices_fractional_labels_raise(tmp_path, pair):
    _nifti(Path(pair["label"]), pair["_label"].astype(np.float32) * 0.5)
    with pytest.raises(ValueError, match=rf"Mask {pair['label']} holds non-integer values"):
        extract_slices([_files(pair)], axis=2)


def test_extract_slices_shape_mismatch_names_both(tmp_path, pair):
    _nifti(Path(pair["label"]), np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(ValueError) as err:
        extract_slices([_files(pair)], axis=2)
    message = str(err.value)
    assert pair["image"] in message and pair["label"] in message
    assert "(4, 5, 6)" in message and "(4, 5, 7)" in message


@pytest.mark.parametrize("name", ["bad.nii.gz", "bad.png", "bad.nrrd"])
def test_extract_slices_corrupt_file(tmp_path, pair, name):
    bad = tmp_path / name
    bad.write_bytes(b"this is not an image" * 8)
    item = {"image": str(bad), "label": pair["label"]}
    with pytest.raises(ValueError, match=rf"Could not read {bad}"):
        extract_slices([item], axis=2)


def test_extract_slices_missing_file(tmp_path, pair):
    with pytest.raises(FileNotFoundError, match="nowhere.nii.gz"):
        extract_slices([{"image": str(tmp_path / "nowhere.nii.gz"), "label": pair["label"]}], axis=2)


def test_extract_slices_skip_reports_bad_cases(tmp_path, pair):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"garbage" * 10)
    items = [{"image": str(bad), "label": pair["label"], "case_id": "broken"}, _files(pair)]
    report = SkipReport()
    slices = extract_slices(items, axis=2, on_error="skip", report=report)
    assert {s["case_id"] for s in slices} == {"c1"} and len(slices) == SHAPE[2]
    assert report.skipped[0]["case_id"] == "broken" and "Could not read" in report.skipped[0]["reason"]
    with pytest.raises(ValueError, match=r"No slices could be extracted from 1 case\(s\) \(1 skipped: .*bad\.nii\.gz"):
        extract_slices(items[:1], axis=2, on_error="skip", report=SkipReport())


def _png_pair(root: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    # Asymmetric content so that a transposition or flip cannot go unnoticed.
    image = np.zeros((6, 9), np.uint8)
    image[0, :] = 200  # bright top row
    image[:, 0] = 50  # dim left column
    image[0, 0] = 255
    mask = np.zeros((6, 9), np.uint8)
    mask[1:3, 5:8] = 255
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "x.png")
    Image.fromarray(mask).save(root / "x_mask.png")
    return {"image": str(root / "x.png"), "label": str(root / "x_mask.png")}, image, mask


def test_extract_slices_png_matches_pil_orientation(tmp_path):
    item, image, mask = _png_pair(tmp_path)
    (s,) = extract_slices([item], axis=None)
    assert s["image"].shape == (1, 6, 9) and s["label"].shape == (1, 6, 9)
    np.testing.assert_array_equal(s["image"][0], np.asarray(Image.open(item["image"])))
    np.testing.assert_array_equal(s["image"][0], image)
    np.testing.assert_array_equal(s["label"][0], mask)  # 0..255 kept, mapping is the transforms' job
    assert s["slice_index"] == 0 and s["case_id"] == "x"


def test_extract_slices_rgb_png_gives_three_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "m.png")
    (s,) = extract_slices([{"image": str(tmp_path / "rgb.png"), "label": str(tmp_path / "m.png")}], axis=None)
    np.testing.assert_array_equal(s["image"], np.moveaxis(rgb, -1, 0).astype(np.float32))


def test_extract_slices_axis_on_2d_data_raises(tmp_path):
    item, _, _ = _png_pair(tmp_path)
    with pytest.raises(ValueError, match=rf"{item['image']} is a 2D image.*axis=2 does not exist.*axis=None"):
        extract_slices([item], axis=2)


def test_extract_slices_volume_without_axis_raises(pair):
    with pytest.raises(ValueError, match=rf"{pair['image']} is a 3D volume.*axis=None"):
        extract_slices([_files(pair)], axis=None)


@pytest.mark.parametrize("axis", [3, -1, 1.0, True])
def test_extract_slices_axis_out_of_range(pair, axis):
    with pytest.raises(ValueError, match=rf"axis={axis!r} is out of range \(first file: {pair['image']}"):
        extract_slices([_files(pair)], axis=axis)


@pytest.mark.parametrize("kwargs", [{"min_label_pixels": 0}, {"keep_labels": []}, {"on_error": "warn"}])
def test_extract_slices_bad_settings(pair, kwargs):
    with pytest.raises(ValueError):
        extract_slices([_files(pair)], axis=2, **kwargs)


def test_extract_slices_four_d_nifti_channels(tmp_path, pair):
    multi = np.random.default_rng(1).random((*SHAPE, 3)).astype(np.float32)  # (H, W, D, C)
    item = {"image": _nifti(tmp_path / "multi.nii.gz", multi), "label": pair["label"]}
    slices = extract_slices([item], axis=2)
    assert slices[3]["image"].shape == (3, 4, 5)
    np.testing.assert_array_equal(slices[3]["image"], np.moveaxis(multi[:, :, 3], -1, 0))


def test_extract_slices_modality_list_stacked(tmp_path, pair):
    second = _nifti(tmp_path / "t2.nii.gz", pair["_image"] * 2)
    item = {"image": [pair["image"], second], "label": pair["label"], "case_id": "c1"}
    slices = extract_slices([item], axis=2)
    assert slices[0]["image"].shape == (2, 4, 5) and slices[0]["image_path"] == [pair["image"], second]
    np.testing.assert_allclose(slices[1]["image"][1], 2 * slices[1]["image"][0])


def test_modality_shape_mismatch_names_both(tmp_path, pair):
    other = _nifti(tmp_path / "t2.nii.gz", np.zeros((4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Modalities.*\(4, 5, 6\).*t2\.nii\.gz is \(4, 5, 5\)"):
        load_paired_arrays([pair["image"], other], pair["label"])


def test_multichannel_mask_raises(tmp_path, pair):
    rgb_mask = _nifti(tmp_path / "m.nii.gz", np.zeros((*SHAPE, 3), np.uint8))
    with pytest.raises(ValueError, match="has 3 channels"):
        load_paired_arrays(pair["image"], rgb_mask)


def test_unlabelled_items(pair):
    slices = extract_slices([{"image": pair["image"]}], axis=2)
    assert len(slices) == SHAPE[2] and "label" not in slices[0] and slices[0]["case_id"] == "c1"
    with pytest.raises(ValueError, match="needs a mask"):
        extract_slices([{"image": pair["image"]}], axis=2, keep_labels=[1])


def test_in_memory_image_is_rejected(pair):
    with pytest.raises(ValueError, match="must be a file path"):
        extract_slices([{"image": np.zeros((1, 4, 4)), "label": pair["label"]}], axis=None)


# ---------------------------------------------------------------- caching


@pytest.fixture
def count_reads(monkeypatch):
    calls: list[str] = []
    original = slicing._read_file

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(slicing, "_read_file", counting)
    return calls


def test_cache_reused_without_reading_volumes(tmp_path, count_reads):
    items = [_files(_volume_pair(tmp_path / "data", case, seed=i)) for i, case in enumerate(("a", "b"))]
    cache = tmp_path / "cache"
    first = extract_slices(items, axis=2, keep_labels=[1, 2], cache_dir=cache)
    assert len(count_reads) == 4  # each image and mask read once
    files = sorted(cache.glob("*.npz"))
    assert [f.name.split("-")[0] for f in files] == ["a", "b"]
    assert not [f for f in cache.iterdir() if ".tmp" in f.name]  # atomic writes leave no temp files

    second = extract_slices(items, axis=2, keep_labels=[1, 2], cache_dir=cache)
    assert len(count_reads) == 4  # nothing read again
    assert [(s["case_id"], s["slice_index"]) for s in second] == [(s["case_id"], s["slice_index"]) for s in first]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
        assert a["label"].dtype == b["label"].dtype

    extract_slices(items, axis=1, keep_labels=[1, 2], cache_dir=cache)  # other settings: new entries
    assert len(count_reads) == 8 and len(list(cache.glob("*.npz"))) == 4


def test_cache_invalidated_when_file_changes(tmp_path, count_reads):
    item = _files(_volume_pair(tmp_path))
    cache = tmp_path / "cache"
    extract_slices([item], axis=2, cache_dir=cache)
    before = slice_cache_path(cache, item["image"], item["label"], 2, None, 1, "c1")
    _nifti(Path(item["image"]), np.ones(SHAPE, np.float32))
    stat = os.stat(item["image"])
    os.utime(item["image"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = slice_cache_path(cache, item["image"], item["label"], 2, None, 1, "c1")
    assert before != after
    slices = extract_slices([item], axis=2, cache_dir=cache)
    assert len(count_reads) == 4 and np.all(slices[0]["image"] == 1)


def test_corrupt_cache_is_recomputed(tmp_path, count_reads):
    item = _files(_volume_pair(tmp_path))
    cache = tmp_path / "cache"
    first = extract_slices([item], axis=2, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    cache_file.write_bytes(b"truncated")
    second = extract_slices([item], axis=2, cache_dir=cache)
    assert len(count_reads) == 4
    np.testing.assert_array_equal(first[2]["image"], second[2]["image"])
    assert np.load(cache_file)["image"].shape == (SHAPE[2], 1, 4, 5)  # rewritten


def test_cache_of_volume_without_kept_slices(tmp_path, count_reads):
    items = [_files(_volume_pair(tmp_path / "a", "a")), _files(_volume_pair(tmp_path / "b", "b"))]
    blank = np.zeros(SHAPE, np.uint8)
    _nifti(Path(items[1]["label"]), blank)
    cache = tmp_path / "cache"
    for _ in range(2):
        slices = extract_slices(items, axis=2, keep_labels=[1], cache_dir=cache)
        assert {s["case_id"] for s in slices} == {"a"}
    assert len(count_reads) == 4
