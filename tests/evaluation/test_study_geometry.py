"""The study's geometry: generated sets in the real data's layout, 2D Hausdorff distances in mm, masks on the source grid."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from monai_synth.data import orientation as orient
from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.evaluation.config import StudyConfig
from monai_synth.evaluation.segmentation import segmentation_scores
from monai_synth.evaluation.study import SyntheticEvaluationStudy
from monai_synth.evaluation.volumes import pixel_spacing
from monai_synth.utils.io import write_json_atomic

TINY = {"image_size": 32, "max_epochs": 1, "batch_size": 4, "compute_fid": False, "figures": False, "device": "cpu"}


# ---------------------------------------------------------------------------------------------------
# generated sets are brought into the real data's layout
# ---------------------------------------------------------------------------------------------------
def _generated_copy(real_dir: Path, out: Path, orientation: dict, marker: dict | None) -> Path:
    """The real PNG phantoms written back as a 'generated' NIfTI set with ``orientation``'s writers."""
    from monai_synth.data.pipeline import PairedSliceDataset

    dataset = PairedSliceDataset(real_dir, image_size=32, intensity={"mode": "fixed", "input_range": (0, 255)})
    entries = []
    for k, item in enumerate(dataset.data):
        [image] = orient.save_image(out / f"pairs/{k}_image.nii.gz", item["image"], orientation)
        orient.save_label(out / f"pairs/{k}_label.nii.gz", item["label"], orientation)
        entries.append({"image": f"pairs/{k}_image.nii.gz", "label": f"pairs/{k}_label.nii.gz", "case_id": f"g{k}"})
    labels = json.loads((real_dir / "datalist.json").read_text())["labels"]
    if marker is not None:
        write_json_atomic(out / "generation.json", marker)
    return write_json_atomic(out / "datalist.json", {"labels": labels, "training": entries})


@pytest.mark.parametrize("legacy", [False, True])
def test_generated_nifti_pairs_of_png_sources_match_the_real_layout(tmp_path: Path, legacy: bool) -> None:
    real_dir = write_phantom_dataset(tmp_path / "real", 4, image_size=32, seed=0, formats=("png",)).parent
    if legacy:  # written before the contract: the internal (viewer) array as is, generation.json without orientation
        datalist = _generated_copy(real_dir, tmp_path / "gen", {"layout": "legacy"}, {"config": {"data": {}}})
    else:  # under the contract: NIfTI files load like the PNGs do with MONAI's LoadImage (transposed)
        record = {"layout": "viewer", "affine": np.eye(4).tolist(), "source_format": ".png"}
        datalist = _generated_copy(real_dir, tmp_path / "gen", record, {"config": {"data": {"orientation": record}}})
    study = SyntheticEvaluationStudy(tmp_path / "out", real_dataset_dir=real_dir, synthetic_datalist=datalist,
                                     synthetic_test_fraction=0.0, **TINY)  # fmt: skip
    real = study._load_real()
    [generated] = study._load_generated(real).values()
    by_name = {k: item for k, item in enumerate(generated.dataset.data)}
    for k, item in enumerate(real.data):
        np.testing.assert_array_equal(by_name[k]["label"], item["label"])  # not transposed
        assert np.corrcoef(by_name[k]["image"].ravel(), item["image"].ravel())[0, 1] > 0.99
    left = np.argwhere(real.data[0]["label"][0] == 1).mean(axis=0)
    right = np.argwhere(real.data[0]["label"][0] == 2).mean(axis=0)
    assert np.abs(left - right).max() > 8  # a transposition would be visible


# ---------------------------------------------------------------------------------------------------
# 2D pixel spacing and Hausdorff distances in mm
# ---------------------------------------------------------------------------------------------------
def test_pixel_spacing_of_2d_nifti_and_pictures(tmp_path: Path) -> None:
    nifti = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 60), np.float32), np.diag([0.5, 2.0, 1.0, 1.0])), nifti)
    # 40 x 60 -> centred 40 x 40 -> 20 x 20: pixels twice as large
    assert pixel_spacing({"image_path": str(nifti)}, 20) == pytest.approx((1.0, 4.0))
    assert pixel_spacing({"image_path": str(nifti)}, 20, override=[0.25, 0.25]) == pytest.approx((0.5, 0.5))
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 50), np.uint8)).save(png)  # 30 rows, 50 columns
    assert pixel_spacing({"image_path": str(png)}, 15) is None  # a picture knows no spacing
    assert pixel_spacing({"image_path": [str(png)]}, 15, override=[0.2, 0.4]) == pytest.approx((0.4, 0.8))
    assert pixel_spacing({"case_id": "phantom"}, 15, override=[1.0, 1.0]) is None


def test_hausdorff_in_mm_equals_a_hand_computed_value() -> None:
    """A 4 x 4 square against itself shifted by 2 rows, then by 2 columns, with pixels 1.5 x 0.5 mm.

    Row shift: the prediction's far edge row is 2 rows = 3 mm from the truth's nearest edge row (and the
    truth's far edge row as far from the prediction), so HD = 3 mm; column shift: 2 columns = 1 mm. In
    pixels both are 2. Dice = 2 * 8 / 32 = 0.5 either way.
    """
    truth = torch.zeros((1, 1, 12, 12), dtype=torch.long)
    truth[0, 0, 4:8, 4:8] = 1
    rows, columns = torch.roll(truth, 2, dims=2), torch.roll(truth, 2, dims=3)
    for prediction, expected in ((rows, 3.0), (columns, 1.0)):
        scores = segmentation_scores(prediction, truth, 2, spacing=[(1.5, 0.5)])
        assert scores["hd"][0, 0] == pytest.approx(expected)
        assert scores["dice"][0, 0] == pytest.approx(0.5)
    pixels = segmentation_scores(rows, truth, 2)
    assert pixels["hd"][0, 0] == pytest.approx(2.0)


def test_pixel_spacing_setting_is_checked(tmp_path: Path) -> None:
    assert StudyConfig(output_dir=str(tmp_path), pixel_spacing=0.5).pixel_spacing == [0.5, 0.5]
    for bad in (0, -1.0, [1.0], [1.0, 0.0], "0.5", True):
        with pytest.raises(ValueError, match="pixel_spacing"):
            StudyConfig(output_dir=str(tmp_path), pixel_spacing=bad)


def test_png_study_with_pixel_spacing_reports_mm(tmp_path: Path) -> None:
    real_dir = write_phantom_dataset(tmp_path / "real", 10, image_size=32, seed=0, formats=("png",)).parent
    common = dict(real_dataset_dir=real_dir, arms=["real"], test_fraction=0.3, save_models=False, **TINY)
    in_px = SyntheticEvaluationStudy(tmp_path / "px", **common).run()
    in_mm = SyntheticEvaluationStudy(tmp_path / "mm", pixel_spacing=[0.5, 0.5], **common).run()
    assert in_px["distance_units"]["test_R"] == "px" and in_mm["distance_units"]["test_R"] == "mm"
    # same network, same predictions: the distances scale by the pixel size (0.5 mm, 32 -> 32: no resize)
    px = {c["item_id"]: c["hd_mean"] for c in in_px["arms"][0]["cases"]["test_R"]}
    mm = {c["item_id"]: c["hd_mean"] for c in in_mm["arms"][0]["cases"]["test_R"]}
    finite = [k for k in px if np.isfinite(px[k])]
    assert finite and all(mm[k] == pytest.approx(0.5 * px[k], rel=1e-5) for k in finite)
    assert "HD95 (mm)" in (tmp_path / "mm" / "report.md").read_text()
    assert "HD95 (mm)" not in (tmp_path / "px" / "report.md").read_text()


# ---------------------------------------------------------------------------------------------------
# inference masks on the source grid, in the source's orientation
# ---------------------------------------------------------------------------------------------------
class ThresholdNet(torch.nn.Module):
    """Class 1 wherever the (normalised) image is positive: a 'trained' model whose output is known."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x[:, :1], x[:, :1]], dim=1) * self.scale


def _threshold_model(path: Path, image_size: int, monkeypatch) -> Path:
    import sys
    import types

    from monai_synth.evaluation.inference import save_study_model

    module = types.ModuleType("geometry_test_nets")
    module.ThresholdNet = ThresholdNet
    monkeypatch.setitem(sys.modules, "geometry_test_nets", module)
    preprocessing = {
        "intensity": {"mode": "fixed", "input_range": [0.0, 255.0]},
        "mask_rule": {"mapping": None, "threshold": 127},
        "slice_axis": "auto",
        "class_names": {"1": "object"},
    }
    return save_study_model(
        path, ThresholdNet(), "geometry_test_nets.ThresholdNet", {}, 1, 2, image_size, preprocessing
    )


def test_inference_masks_of_non_square_pngs_are_on_the_source_grid(tmp_path: Path, monkeypatch) -> None:
    """48 rows x 40 columns, an off-centre object: crop 40 x 40 at row 4, model at 20 x 20, mask back at 48 x 40."""
    from monai_synth.evaluation.inference import StudySegmenter

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    picture = np.zeros((48, 40), np.uint8)
    picture[10:20, 6:14] = 255  # upper left, taller than wide: a transposition or a shift shows
    Image.fromarray(picture).save(data / "images" / "scan.png")
    model = _threshold_model(tmp_path / "model.pt", 20, monkeypatch)
    out = StudySegmenter(model_path=model, dataset=data, output_dir=tmp_path / "inference").run()
    assert out["num_items"] == 1 and out["num_masks"] == 1
    entry = json.loads((tmp_path / "inference" / "datalist.json").read_text())["test"][0]
    mask = LoadImage(image_only=True)(str(tmp_path / "inference" / entry["label"]))
    source = LoadImage(image_only=True)(str(data / "images" / "scan.png"))  # MONAI's (W, H) = (40, 48)
    assert tuple(mask.shape) == tuple(source.shape) == (40, 48)
    np.testing.assert_array_equal(np.asarray(mask), (np.asarray(source) > 127).astype(np.uint8))


def test_inference_mask_of_a_volume_is_a_volume_with_the_source_affine(tmp_path: Path, monkeypatch) -> None:
    from monai_synth.evaluation.inference import StudySegmenter

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    volume = np.zeros((20, 24, 3), np.float32)
    volume[4:10, 6:16, 1] = 255  # slices 20 x 24 -> crop 20 x 20 at column 2 -> 10 x 10
    affine = np.array([[-0.8, 0, 0, 10.0], [0, 0.6, 0, -5.0], [0, 0, 2.0, 3.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume, affine), data / "images" / "vol.nii.gz")
    model = _threshold_model(tmp_path / "model.pt", 10, monkeypatch)
    StudySegmenter(model_path=model, dataset=data, output_dir=tmp_path / "inference").run()
    entry = json.loads((tmp_path / "inference" / "datalist.json").read_text())["test"][0]
    stored = nib.load(tmp_path / "inference" / entry["label"])
    np.testing.assert_allclose(stored.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(stored.dataobj), (volume > 127).astype(np.uint8))
