"""monai_synth.data.orientation: layouts, slice geometry, per-channel files, mixed sources refused."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import EnsureChannelFirst, LoadImage
from PIL import Image

from monai_synth.data import orientation as orient

VIEWER = {"layout": "viewer", "affine": np.eye(4).tolist()}
INDEX = {"layout": "index", "affine": np.diag([0.5, 0.5, 3.0, 1.0]).tolist()}
LEGACY = {"layout": "legacy", "affine": None}


def _monai(path: Path) -> np.ndarray:
    return np.asarray(EnsureChannelFirst()(LoadImage(image_only=True)(str(path))))


@pytest.mark.parametrize("orientation", [VIEWER, INDEX])
def test_nifti_and_png_outputs_load_alike_and_match_the_sources(tmp_path: Path, orientation) -> None:
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20  # (H, W) internal array, not square
    orient.save_label(tmp_path / "l.nii.gz", picture[None], orientation)
    orient.save_preview(tmp_path / "l.png", picture, orientation)
    from_nifti, from_png = _monai(tmp_path / "l.nii.gz"), _monai(tmp_path / "l.png")
    np.testing.assert_array_equal(from_nifti, from_png)
    if orientation is VIEWER:  # a PNG source showing this picture loads the same way
        Image.fromarray(picture).save(tmp_path / "source.png")
        np.testing.assert_array_equal(from_nifti, _monai(tmp_path / "source.png"))
    else:  # index layout: the array MONAI returns is the internal one
        np.testing.assert_array_equal(from_nifti[0], picture)
    np.testing.assert_allclose(nib.load(tmp_path / "l.nii.gz").affine, orientation["affine"])


def test_legacy_writes_the_internal_array_with_identity_affine(tmp_path: Path) -> None:
    picture = np.arange(6, dtype=np.float32).reshape(2, 3)
    orient.save_map(tmp_path / "m.nii.gz", picture, LEGACY)
    stored = nib.load(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(np.asarray(stored.dataobj), picture)
    np.testing.assert_allclose(stored.affine, np.eye(4))


def test_multi_channel_images_are_one_file_per_channel(tmp_path: Path) -> None:
    image = np.stack([np.full((4, 5), c, np.float32) for c in range(3)])
    paths = orient.save_image(tmp_path / "x_image.nii.gz", image, INDEX)
    assert [p.name for p in paths] == ["x_image_c0.nii.gz", "x_image_c1.nii.gz", "x_image_c2.nii.gz"]
    loaded = EnsureChannelFirst()(LoadImage(image_only=True)([str(p) for p in paths]))
    assert tuple(loaded.shape) == (3, 4, 5)
    np.testing.assert_array_equal(np.asarray(loaded)[:, 0, 0], [0, 1, 2])


def test_tensors_convert_like_arrays() -> None:
    x = torch.arange(6.0).reshape(1, 2, 3)
    assert tuple(orient.to_file_layout(x, VIEWER).shape) == (1, 3, 2)
    assert orient.from_file_layout(x, INDEX) is x


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_affine_keeps_direction_and_spacing_and_scales_the_plane(axis: int) -> None:
    affine = np.array([[0, 0, 2.0, 10], [-0.8, 0, 0, 20], [0, 0.9, 0, 30], [0, 0, 0, 1]])
    shape = (40, 60, 20)
    plane = [k for k in range(3) if k != axis]
    out = orient.slice_affine(affine, shape, axis, image_size=10)
    scale = min(shape[k] for k in plane) / 10
    np.testing.assert_allclose(out[:3, 0], affine[:3, plane[0]] * scale)
    np.testing.assert_allclose(out[:3, 1], affine[:3, plane[1]] * scale)
    np.testing.assert_allclose(out[:3, 2], affine[:3, axis])
    centre = affine @ np.array([19.5, 29.5, 9.5, 1.0])  # the slice is centred on the source
    np.testing.assert_allclose(out @ np.array([4.5, 4.5, 0, 1.0]), centre)


def test_mixed_pictures_and_volumes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mixes pictures \(a.png\) and medical image files \(b.nii.gz\)"):
        orient.orientation_of_files(["a.png", "b.nii.gz"], None, 32)


def test_exports_without_a_record_warn(caplog) -> None:
    assert orient.export_orientation({"data": {}}, "old.pt")["layout"] == "legacy"
    assert "old.pt records no source orientation" in caplog.text
    assert orient.export_orientation({"data": {"orientation": INDEX}}) == INDEX


@pytest.mark.parametrize(
    "source,target,swapped",
    [(VIEWER, INDEX, True), (INDEX, VIEWER, True), (VIEWER, VIEWER, False), (INDEX, INDEX, False),
     (LEGACY, VIEWER, False), (INDEX, LEGACY, False)],
)  # fmt: skip
def test_convert_layout_between_datasets(source, target, swapped: bool) -> None:
    array = np.arange(6).reshape(1, 2, 3)
    out = orient.convert_layout(array, source, target)
    assert orient.layouts_agree(source, target) is not swapped
    np.testing.assert_array_equal(out, array.swapaxes(-1, -2) if swapped else array)
    assert tuple(orient.convert_layout(torch.as_tensor(array), source, target).shape) == out.shape


def test_generated_set_orientation_names_pre_contract_sets(tmp_path: Path) -> None:
    import json

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "generation.json").write_text(json.dumps({"config": {"data": {"image_size": 32}}}))
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "generation.json").write_text(json.dumps({"config": {"data": {"orientation": VIEWER}}}))
    assert orient.generated_set_orientation(tmp_path / "old" / "datalist.json")["layout"] == "legacy"
    assert orient.generated_set_orientation(tmp_path / "old")["layout"] == "legacy"
    assert orient.generated_set_orientation(tmp_path / "new" / "datalist.json") is None
    assert orient.generated_set_orientation(tmp_path / "datalist.json") is None  # not a monai_synth set


def test_save_volume_label_keeps_index_order_and_affine(tmp_path: Path) -> None:
    label = np.zeros((3, 5, 4), np.uint8)  # first axis <= 8 must not be taken for channels
    label[1, 2, 3] = 2
    affine = np.diag([0.7, 0.8, 2.0, 1.0])
    orient.save_volume_label(tmp_path / "v.nii.gz", label, affine)
    stored = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(np.asarray(stored.dataobj), label)
    np.testing.assert_allclose(stored.affine, affine)
