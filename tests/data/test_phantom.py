"""Tests of the built-in phantom dataset (monai_synth.data.phantom)."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import torch
from monai.data import DataLoader, load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, LoadImaged, ScaleIntensityRanged
from PIL import Image
from scipy import ndimage

from monai_synth.data.phantom import (
    PHANTOM_BINARY_LABELS,
    PHANTOM_LABELS,
    PhantomDataset,
    generate_phantom,
    phantom_affine,
    phantom_preview,
    write_phantom_dataset,
)

ORGANS = [k for k in PHANTOM_LABELS if k != "background"]
SIZES_SEEDS = [(size, seed) for size in (32, 64, 128, 256) for seed in (0, 7, 123)]


@cache
def _phantom(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    image, label = generate_phantom(seed, size)
    image.setflags(write=False)
    label.setflags(write=False)
    return image, label


def _centroid_column(label: np.ndarray, name: str) -> float:
    return float(np.nonzero(label[0] == PHANTOM_LABELS[name])[1].mean())


@pytest.mark.parametrize("size", [32, 100, 128])
def test_shapes_and_dtypes(size):
    image, label = _phantom(3, size)
    assert image.shape == label.shape == (1, size, size)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert np.isfinite(image).all()
    assert -1024.0 <= image.min() and image.max() <= 3071.0
    assert set(np.unique(label)) <= set(PHANTOM_LABELS.values())


def test_deterministic_per_seed():
    a_img, a_lab = generate_phantom(5, 64)
    b_img, b_lab = generate_phantom(5, 64)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = generate_phantom(6, 64)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)


def test_global_rng_untouched():
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    generate_phantom(1, 32)
    assert np.random.rand() == expected


def test_same_anatomy_at_every_size():
    # same seed: labels at 64 downsampled agree with labels at 128 (anatomy does not depend on size)
    _, small = _phantom(7, 64)
    _, large = _phantom(7, 128)
    assert (small[0] == large[0, ::2, ::2]).mean() > 0.9


@pytest.mark.parametrize("size,seed", SIZES_SEEDS)
def test_every_organ_present_and_ordered(size, seed):
    image, label = _phantom(seed, size)
    for name in ORGANS:
        assert (label == PHANTOM_LABELS[name]).sum() >= 3, f"{name} missing at {size}x{size}, seed {seed}"
    # radiological convention: patient's right lung on the image left
    right, heart, left = (_centroid_column(label, n) for n in ("right_lung", "heart", "left_lung"))
    assert right < heart < left
    assert right < _centroid_column(label, "trachea") < left
    # heart anterior (upper) to the aorta, trachea between heart and aorta in depth; aorta on the patient's left
    rows = {n: np.nonzero(label[0] == PHANTOM_LABELS[n])[0].mean() for n in ("heart", "trachea", "aorta")}
    assert rows["heart"] < rows["trachea"] < rows["aorta"]
    assert _centroid_column(label, "aorta") > _centroid_column(label, "trachea")
    # no organ outside the body (body = air-tight region above -500 HU with its holes filled)
    body = ndimage.binary_fill_holes(image[0] > -500)
    assert not (label[0] > 0)[~body].any()
    assert not body[0].any() and not body[-1].any() and not body[:, 0].any() and not body[:, -1].any()


@pytest.mark.parametrize("size,seed", [(64, 0), (64, 11), (128, 7), (256, 123)])
def test_hounsfield_ranges(size, seed):
    image, label = _phantom(seed, size)
    image, label = image[0], label[0]
    for lung in ("left_lung", "right_lung"):
        assert image[label == PHANTOM_LABELS[lung]].mean() < -600
    assert 0 <= image[label == PHANTOM_LABELS["heart"]].mean() <= 150
    assert image[label == PHANTOM_LABELS["trachea"]].mean() < -700
    assert -50 <= np.median(image[label == PHANTOM_LABELS["aorta"]]) <= 150
    assert np.median(image[:3, :3]) < -950  # air in the corner
    assert image.max() > 400  # bone
    body = ndimage.binary_fill_holes(image > -500) & (label == 0) & (image > -500)
    assert -150 < np.median(image[body]) < 100  # fat and muscle


def test_binary_is_union_of_lungs():
    image, label = generate_phantom(4, 64)
    image_b, label_b = generate_phantom(4, 64, binary=True)
    np.testing.assert_array_equal(image, image_b)
    lungs = np.isin(label, (PHANTOM_LABELS["left_lung"], PHANTOM_LABELS["right_lung"]))
    np.testing.assert_array_equal(label_b, lungs.astype(np.uint8))
    assert set(np.unique(label_b)) == set(PHANTOM_BINARY_LABELS.values())


@pytest.mark.parametrize("size", [31, 513, 0, -64, 64.0, True])
def test_image_size_validation(size):
    with pytest.raises(ValueError, match="image_size"):
        generate_phantom(0, size)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_seed_validation(seed):
    with pytest.raises(ValueError, match="seed"):
        generate_phantom(seed, 32)


def test_dataset_items_indexing_and_transform():
    ds = PhantomDataset(4, image_size=32, seed=10)
    assert len(ds) == 4
    item = ds[2]
    assert item["seed"] == 12 and item["case_id"] == "phantom_00012"
    image, label = generate_phantom(12, 32)
    np.testing.assert_array_equal(item["image"], image)
    np.testing.assert_array_equal(item["label"], label)
    subset = ds[1:3]
    assert len(subset) == 2 and subset[0]["seed"] == 11

    scaled = PhantomDataset(2, image_size=32, transform=ScaleIntensityRanged("image", -1000, 1000, -1, 1, clip=True))
    out = scaled[0]["image"]
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert PhantomDataset(1, binary=True).labels == PHANTOM_BINARY_LABELS


def test_dataset_dataloader():
    loader = DataLoader(PhantomDataset(3, image_size=32, seed=1), batch_size=2, num_workers=0)
    batches = list(loader)
    assert [b["image"].shape for b in batches] == [torch.Size([2, 1, 32, 32]), torch.Size([1, 1, 32, 32])]
    assert batches[0]["label"].dtype == torch.uint8
    assert batches[0]["case_id"] == ["phantom_00001", "phantom_00002"]
    assert batches[1]["seed"].tolist() == [3]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2, "image_size": 16}, "image_size"),
        ({"num_samples": 2, "seed": -3}, "seed"),
    ],
)
def test_dataset_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhantomDataset(**kwargs)


def test_nifti_orientation_affine():
    import nibabel as nib

    affine = phantom_affine(64)
    assert nib.aff2axcodes(affine) == ("P", "L", "S")
    np.testing.assert_allclose(np.abs(affine[:3, :3]).sum(axis=0), [400 / 64] * 3)


@pytest.mark.parametrize("reader", [None, "ITKReader"])
def test_write_round_trip(tmp_path, reader):
    path = write_phantom_dataset(tmp_path / "ph", num_samples=2, image_size=32, seed=5, formats=("nifti", "png"))
    assert path == tmp_path / "ph" / "datalist.json"
    meta = json.loads(path.read_text())
    assert meta["labels"] == {str(v): k for k, v in PHANTOM_LABELS.items()}
    assert meta["modality"] == {"0": "CT"}
    assert meta["phantom"]["seed"] == 5 and meta["phantom"]["image_size"] == 32
    items = load_decathlon_datalist(path, data_list_key="training")
    assert [i["case_id"] for i in items] == ["phantom_00005", "phantom_00006"]
    load = Compose([LoadImage(reader=reader, image_only=True), EnsureChannelFirst()])
    for item in items:
        image, label = generate_phantom(item["seed"], 32)
        loaded_image, loaded_label = load(item["image"]), load(item["label"])
        assert tuple(loaded_image.shape) == tuple(loaded_label.shape) == (1, 32, 32)
        np.testing.assert_allclose(loaded_image.numpy(), image, atol=1e-4)  # same orientation, same values
        np.testing.assert_array_equal(loaded_label.numpy(), label)
    png_image = np.asarray(Image.open(tmp_path / "ph" / "images" / "phantom_00005.png"))
    png_label = np.asarray(Image.open(tmp_path / "ph" / "labels" / "phantom_00005.png"))
    image, label = generate_phantom(5, 32)
    np.testing.assert_array_equal(png_label, label[0])
    assert png_image.dtype == np.uint8 and png_image.shape == (32, 32)
    lung = label[0] == PHANTOM_LABELS["left_lung"]
    assert png_image[lung].mean() < png_image[label[0] == PHANTOM_LABELS["heart"]].mean()


def test_write_dictionary_pipeline(tmp_path):
    path = write_phantom_dataset(tmp_path, num_samples=1, image_size=32, binary=True)
    items = load_decathlon_datalist(path, data_list_key="training")
    out = Compose([LoadImaged(("image", "label"), ensure_channel_first=True)])(items[0])
    assert out["image"].shape == (1, 32, 32)
    assert set(np.unique(out["label"].numpy())) == {0, 1}
    assert json.loads(path.read_text())["labels"] == {"0": "background", "1": "lung"}


def test_write_png_only(tmp_path):
    path = write_phantom_dataset(tmp_path, num_samples=1, image_size=32, formats=["png"])
    items = load_decathlon_datalist(path, data_list_key="training")
    assert items[0]["image"].endswith("phantom_00000.png")
    assert not list(tmp_path.rglob("*.nii.gz"))


def test_write_idempotent_and_resumes(tmp_path):
    path = write_phantom_dataset(tmp_path, num_samples=2, image_size=32)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    assert write_phantom_dataset(tmp_path, num_samples=2, image_size=32) == path
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    # a missing file is re-created with the same content
    lost = tmp_path / "labels" / "phantom_00001.nii.gz"
    lost.unlink()
    write_phantom_dataset(tmp_path, num_samples=2, image_size=32)
    assert LoadImage(image_only=True)(lost).numpy().tolist() == generate_phantom(1, 32)[1][0].tolist()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    # a fresh folder gets byte-identical files (no time stamps in the gzip headers)
    write_phantom_dataset(tmp_path / "again", num_samples=2, image_size=32)
    for p in files:
        assert (tmp_path / "again" / p.relative_to(tmp_path)).read_bytes() == before[p][0]


@pytest.mark.parametrize(
    "kwargs", [{"num_samples": 3}, {"image_size": 64}, {"seed": 1}, {"binary": True}, {"formats": ("png",)}]
)
def test_write_refuses_different_set(tmp_path, kwargs):
    args = {"num_samples": 2, "image_size": 32, "seed": 0, "binary": False, "formats": ("nifti",)}
    write_phantom_dataset(tmp_path / "set", **args)
    snapshot = (tmp_path / "set" / "datalist.json").read_bytes()
    with pytest.raises(ValueError, match="set"):
        write_phantom_dataset(tmp_path / "set", **{**args, **kwargs})
    assert (tmp_path / "set" / "datalist.json").read_bytes() == snapshot


def test_write_refuses_foreign_datalist(tmp_path):
    (tmp_path / "datalist.json").write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match=str(tmp_path)):
        write_phantom_dataset(tmp_path, num_samples=1, image_size=32)


@pytest.mark.parametrize("formats", [(), ("nifti", "jpeg"), "dicom"])
def test_write_format_validation(tmp_path, formats):
    with pytest.raises(ValueError, match="formats"):
        write_phantom_dataset(tmp_path, num_samples=1, image_size=32, formats=formats)


def test_preview_grid():
    grid = phantom_preview(image_size=32, seed=0, n=5)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 32, 4 * 2 * 32, 3)
    plain, overlay = grid[:32, :32], grid[:32, 32:64]
    assert (plain[..., 0] == plain[..., 2]).all()  # grey image
    assert (overlay != plain).any()  # coloured labels
    assert not grid[32:, 2 * 32 :].any()  # unused cells stay black
