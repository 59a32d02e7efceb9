from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_synth.data import PairedSliceDataset
from monai_synth.transforms import EncodePairedd


def _png_folder(root: Path, masks: dict[str, np.ndarray], size: int = 40) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name, mask in masks.items():
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{name}.png")
    return root


def _disc(size: int = 40, radius: int = 10, value: int = 255) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2, value, 0)


def test_phantom_items_are_scaled_resized_and_encodable() -> None:
    ds = PairedSliceDataset(None, image_size=32, phantom_samples=3)
    assert len(ds) == 3 and ds.num_classes == 6 and ds.image_channels == 1 and ds.pair_channels == 7
    item = ds[0]
    assert item["image"].shape == (1, 32, 32) and item["label"].shape == (1, 32, 32)
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    assert set(np.unique(item["label"])) <= set(range(6)) and len(np.unique(item["label"])) >= 4
    pair = EncodePairedd(num_classes=ds.num_classes)(dict(item))["pair"]
    assert tuple(pair.shape) == (7, 32, 32)
    assert ds.summary["label_names"]["1"] == "left_lung"
    binary = PairedSliceDataset(None, image_size=32, phantom_samples=2, phantom_binary=True)
    assert binary.num_classes == 2 and binary.pair_channels == 2


def test_anti_aliased_png_masks_are_binarised_with_a_warning(tmp_path: Path, caplog) -> None:
    mask = _disc()
    mask[20, 9] = 128  # an anti-aliased edge value
    root = _png_folder(tmp_path, {"a": mask, "b": _disc(radius=8)})
    with caplog.at_level("WARNING"):
        ds = PairedSliceDataset(root, image_size=32)
    assert "anti-aliased" in caplog.text
    assert ds.num_classes == 2 and ds.summary["mask_rule"]["threshold"] == 127
    assert set(np.unique(ds[0]["label"])) == {0, 1}


def test_odd_mask_values_without_a_rule_are_refused(tmp_path: Path) -> None:
    root = _png_folder(tmp_path, {"a": _disc(value=7), "b": _disc(value=3)})
    ds = PairedSliceDataset(root, image_size=32, mask_mapping={0: 0, 3: 1, 7: 2})
    assert ds.num_classes == 3
    with pytest.raises(ValueError, match=r"a\.png.*7"):
        PairedSliceDataset(root, image_size=32, mask_mapping={0: 0, 3: 1})  # 7 not mapped


def test_mismatched_image_and_mask_shapes_name_the_file(tmp_path: Path) -> None:
    root = _png_folder(tmp_path, {"a": _disc(), "b": _disc()})
    Image.fromarray(_disc(size=30).astype(np.uint8)).save(root / "masks" / "b.png")
    with pytest.raises(ValueError, match="b.png"):
        PairedSliceDataset(root, image_size=32)


def test_empty_and_missing_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PairedSliceDataset(tmp_path / "nowhere", image_size=32)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(ValueError, match=str(tmp_path.name)):
        PairedSliceDataset(tmp_path, image_size=32)


def test_volumes_become_slices_keeping_chosen_labels(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = np.random.default_rng(0).normal(size=(24, 24, 6)).astype(np.float32)
    label = np.zeros((24, 24, 6), dtype=np.uint8)
    label[8:16, 8:16, 2:4] = 1
    label[10:14, 10:14, 3] = 2
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "images" / "vol.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / "labels" / "vol.nii.gz")
    ds = PairedSliceDataset(tmp_path, image_size=16, keep_labels=[1, 2])
    assert len(ds) == 2 and ds.num_classes == 3
    assert {item["case_id"] for item in ds.data} == {"vol"}
    assert all(item["image"].shape == (1, 16, 16) for item in ds.data)


@pytest.mark.shared_data
def test_shenzhen_loads_as_binary_lung_pairs(shared_data: Path) -> None:
    ds = PairedSliceDataset(shared_data / "cxr_shenzhen", image_size=64, max_items=4)
    assert len(ds) == 4 and ds.num_classes == 2 and ds.image_channels == 1
    lung_fraction = np.mean([np.mean(item["label"] == 1) for item in ds.data])
    assert 0.1 < lung_fraction < 0.6  # lungs fill a good part of a chest X-ray, never all of it


@pytest.mark.shared_data
def test_hippocampus_volumes_slice_to_three_classes(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "msd_hippocampus"
    ds = PairedSliceDataset(root, image_size=32, keep_labels=[1, 2], max_items=20, cache_dir=tmp_path)
    assert ds.num_classes == 3 and len(ds) == 20
    assert all(np.isin(item["label"], [1, 2]).any() for item in ds.data)


def test_image_only_folder_loads_with_blank_masks_when_labels_are_optional(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(tmp_path / "images" / f"case_{i}.png")
    with pytest.raises(ValueError, match="no label sub-folder"):
        PairedSliceDataset(tmp_path, image_size=16)  # labels required by default
    ds = PairedSliceDataset(tmp_path, image_size=16, require_labels=False)
    assert len(ds) == 3 and ds.summary["unlabelled_items"] == 3
    item = ds[0]
    assert item["image"].shape == (1, 16, 16) and -1 <= item["image"].min() < item["image"].max() <= 1
    assert item["label"].shape == (1, 16, 16) and not item["label"].any()
    assert [x["case_id"] for x in ds.data] == ["case_0", "case_1", "case_2"]
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        PairedSliceDataset(tmp_path, image_size=16, require_labels=False)


def _nifti_folder(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, (image, label) in pairs.items():
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), root / "images" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), root / "labels" / f"{name}.nii.gz")
    return root


def _pair(size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(seed).uniform(0, 100, (size, size))
    label = np.zeros((size, size))
    label[8:20, 8:20] = 1
    return image, label


def test_binary_masks_with_a_stray_value_are_refused_naming_file_values_and_mapping(tmp_path: Path) -> None:
    image, label = _pair(seed=1)
    label[0, 0] = 7  # one stray pixel in an otherwise binary mask
    root = _nifti_folder(tmp_path / "data", {"a": _pair(), "b": (image, label)})
    with pytest.raises(ValueError, match=r"\{0, 1, 7\}.*8 classes.*7 in 1 mask\(s\): .*labels/b\.nii\.gz") as info:
        PairedSliceDataset(root, image_size=32)
    assert "mask_mapping" in str(info.value) and "{0: 0, 1: 1, 7: 0}" in str(info.value)
    # an explicit mapping (or num_classes) says what the values mean
    assert PairedSliceDataset(root, image_size=32, mask_mapping={0: 0, 1: 1, 7: 0}).num_classes == 2
    assert PairedSliceDataset(root, image_size=32, num_classes=8).num_classes == 8


def test_labels_declared_by_the_dataset_may_be_absent(tmp_path: Path) -> None:
    image, label = _pair()
    label[20:24, 20:24] = 2  # labels {0, 1, 2} declared, the masks show only 0 and 2
    label[label == 1] = 0
    root = _nifti_folder(tmp_path / "data", {"a": (image, label)})
    (root / "dataset.json").write_text('{"labels": {"0": "background", "1": "left", "2": "right"}}')
    assert PairedSliceDataset(root, image_size=32).num_classes == 3


@pytest.mark.parametrize("others", [0, 2], ids=["alone", "among_normal_images"])
def test_tiny_images_are_refused_with_file_and_size(tmp_path: Path, others: int) -> None:
    pairs = {f"ok{i}": _pair(64, seed=i) for i in range(others)}
    pairs["dot"] = (np.full((1, 1), 5.0), np.zeros((1, 1)))
    root = _nifti_folder(tmp_path / "data", pairs)
    with pytest.raises(ValueError, match=r"smaller than 8 px.*images/dot\.nii\.gz.* is 1x1 px.*smaller image_size"):
        PairedSliceDataset(root, image_size=64)
    root = _nifti_folder(tmp_path / "small", {"a": _pair(16)})
    with pytest.raises(ValueError, match=r"smaller than 32 px.*16x16"):  # image_size / 8
        PairedSliceDataset(root, image_size=256)
    assert len(PairedSliceDataset(root, image_size=64)) == 1


def test_nan_in_an_image_names_the_image_file(tmp_path: Path) -> None:
    image, label = _pair()
    image[3, 3] = np.nan
    root = _nifti_folder(tmp_path / "data", {"a": (image, label), "b": _pair(seed=2)})
    with pytest.raises(ValueError, match=r"images/a\.nii\.gz.*NaN") as info:
        PairedSliceDataset(root, image_size=32)
    assert "labels/a.nii.gz" not in str(info.value)
