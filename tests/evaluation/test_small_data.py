"""The small-data study (issue 17): number of real cases, given and external test sets, per-volume scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.data.splits import check_no_leakage
from monai_synth.evaluation.arms import oversample_real, plan_arms, real_case_order, real_subset
from monai_synth.evaluation.config import StudyConfig
from monai_synth.evaluation.study import SyntheticEvaluationStudy
from monai_synth.evaluation.volumes import slice_spacing, stack_volume, volume_scores
from monai_synth.utils.io import read_json, write_json_atomic

TINY = {"image_size": 32, "max_epochs": 1, "batch_size": 4, "compute_fid": False, "figures": False, "device": "cpu"}


# ---------------------------------------------------------------------------------------------------
# num_real: arms and nested subsets
# ---------------------------------------------------------------------------------------------------
def test_plan_arms_with_num_real_names_and_order() -> None:
    arms = plan_arms(["real", "synthetic", "hybrid"], [15], {"gan": 20}, num_real=[5, None, 3])
    assert [a.name for a in arms] == [
        "real_r3", "real_r5", "real_rall", "synthetic_n15", "hybrid_r3_n15", "hybrid_r5_n15", "hybrid_rall_n15",
    ]  # fmt: skip
    assert [a.num_real for a in arms] == [3, 5, None, None, 3, 5, None]
    # without num_real: today's names
    assert [a.name for a in plan_arms(["real", "hybrid"], [15], {"gan": 20})] == ["real", "hybrid_n15"]


def test_plan_arms_hybrid_real_fraction_adds_oversampled_arms() -> None:
    arms = plan_arms(["hybrid"], [10], {"gan": 20}, num_real=[4], hybrid_real_fraction=0.5)
    assert [(a.name, a.real_fraction) for a in arms] == [("hybrid_r4_n10", None), ("hybrid_r4_n10_rf0.5", 0.5)]
    with pytest.raises(ValueError, match="hybrid_real_fraction"):
        plan_arms(["hybrid"], [10], {"gan": 20}, hybrid_real_fraction=1.0)
    with pytest.raises(ValueError, match="num_real"):
        plan_arms(["real"], [], {}, num_real=[0])


def test_real_subsets_are_nested_case_level_and_order_independent() -> None:
    items = [{"case_id": f"c{i:02d}", "slice_index": s} for i in range(12) for s in range(2)]
    order = real_case_order(items, seed=3)
    assert sorted(order) == sorted({i["case_id"] for i in items})
    assert real_case_order(items[::-1], seed=3) == order  # input order does not matter
    previous: set[str] = set()
    for r in (3, 5, 8):
        subset = real_subset(items, r, seed=3)
        cases = {i["case_id"] for i in subset}
        assert len(cases) == r and len(subset) == 2 * r  # every slice of a kept case
        assert previous <= cases
        previous = cases
    assert real_subset(items, None) == items
    with pytest.raises(ValueError, match=r"num_real=13 but the real training split has only 12 case"):
        real_subset(items, 13)


def test_oversample_real() -> None:
    real = [{"i": k} for k in range(3)]
    assert oversample_real(real, 10, None) == real
    out = oversample_real(real, 9, 0.5)  # 0.5 / 0.5 * 9 = 9 real pairs
    assert len(out) == 9 and [o["i"] for o in out] == [0, 1, 2] * 3
    assert len(oversample_real(real, 1, 0.5)) == 3  # never fewer than the real pairs


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_real": [0]}, "num_real"),
        ({"num_real": [5, 5]}, "twice"),
        ({"num_real": "30"}, "num_real"),
        ({"hybrid_real_fraction": 1.5}, "hybrid_real_fraction"),
        ({"test_datasets": ["a"]}, "test_datasets"),
    ],
)
def test_small_data_settings_are_checked(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudyConfig(output_dir=str(tmp_path), **kwargs)


def test_one_num_real_is_a_list_of_one(tmp_path: Path) -> None:
    assert StudyConfig(output_dir=str(tmp_path), num_real=30).num_real == [30]
    assert StudyConfig(output_dir=str(tmp_path), num_real=[30, None]).num_real == [30, None]


def test_num_real_study_keeps_validation_and_test_and_nests_the_subsets(tmp_path: Path) -> None:
    common = dict(phantom_samples=16, phantom_generated_samples=10, num_synthetic=[6], folds=2, val_fraction=0.2)
    sweep = SyntheticEvaluationStudy(
        tmp_path / "sweep", num_real=[2, 4], hybrid_real_fraction=0.5, **common, **TINY
    ).run()
    plain = SyntheticEvaluationStudy(tmp_path / "plain", arms=["real"], **common, **TINY).run()
    names = [a["name"] for a in sweep["arms"]]
    assert names == ["real_r2", "real_r4", "synthetic_n6", "hybrid_r2_n6", "hybrid_r2_n6_rf0.5", "hybrid_r4_n6",
                     "hybrid_r4_n6_rf0.5"]  # fmt: skip
    assert sweep["data"]["splits"] == plain["data"]["splits"]  # validation/test never change with num_real
    for fold, subsets in enumerate(sweep["data"]["real_subsets"]):
        assert set(subsets["2"]) < set(subsets["4"]) <= set(sweep["data"]["splits"][fold]["training"])
    arms = {a["name"]: a for a in sweep["arms"]}
    for fold in range(2):
        assert arms["real_r2"]["folds"][fold]["num_real_cases"] == 2
        assert arms["hybrid_r4_n6"]["folds"][fold]["num_real_cases"] == 4
        assert arms["hybrid_r2_n6_rf0.5"]["folds"][fold]["num_real_oversampled"] == 6
        assert arms["synthetic_n6"]["folds"][fold]["num_real_train"] == 0
    test_cases = {name: sorted(c["item_id"] for c in a["cases"]["test_R"]) for name, a in arms.items()}
    assert len({tuple(v) for v in test_cases.values()}) == 1
    assert "real_r2" in (tmp_path / "sweep" / "report.md").read_text()


def test_num_real_larger_than_the_training_split_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    import monai_synth.evaluation.study as study_module

    monkeypatch.setattr(study_module, "train_segmentation_network", _no_training)
    study = SyntheticEvaluationStudy(tmp_path, arms=["real"], phantom_samples=10, num_real=[50], **TINY)
    with pytest.raises(ValueError, match=r"Fold 0: num_real=50 but the real training split has only \d+ case"):
        study.run()


def _no_training(*args, **kwargs):
    raise AssertionError("training started before the settings were checked")


# ---------------------------------------------------------------------------------------------------
# a given datalist, external test sets, leakage by content
# ---------------------------------------------------------------------------------------------------
def _split_datalist(folder: Path, keys=("training", "validation", "test"), counts=(8, 2, 3)) -> Path:
    entries = read_json(folder / "datalist.json")["training"]
    content, start = {}, 0
    for key, count in zip(keys, counts):
        content[key] = entries[start : start + count]
        start += count
    return write_json_atomic(folder / "split.json", content)


def test_a_datalist_with_a_test_list_is_used_as_given(tmp_path: Path) -> None:
    real = write_phantom_dataset(tmp_path / "real", 13, image_size=32, seed=0)
    datalist = _split_datalist(real.parent if real.is_file() else real)
    given = read_json(datalist)
    results = SyntheticEvaluationStudy(tmp_path / "out", real_dataset_dir=datalist, arms=["real"], **TINY).run()
    split = results["data"]["splits"][0]
    for key in ("training", "validation", "test"):
        assert split[key] == sorted(e["case_id"] for e in given[key])
    assert results["data"]["real_datalist_as_given"] == str(datalist)
    assert len(results["arms"][0]["cases"]["test_R"]) == 3


def test_a_given_test_list_with_missing_files_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    import monai_synth.evaluation.study as study_module

    monkeypatch.setattr(study_module, "train_segmentation_network", _no_training)
    folder = write_phantom_dataset(tmp_path / "real", 13, image_size=32, seed=0)
    folder = folder.parent if folder.is_file() else folder
    datalist = _split_datalist(folder)
    content = read_json(datalist)
    content["test"][0]["image"] = "images/missing.nii.gz"
    write_json_atomic(datalist, content)
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        SyntheticEvaluationStudy(tmp_path / "out", real_dataset_dir=datalist, arms=["real"], **TINY).run()


@pytest.mark.parametrize("broken", ["missing_file", "missing_datalist"])
def test_an_external_test_set_with_missing_files_fails_before_training(tmp_path: Path, monkeypatch, broken) -> None:
    import monai_synth.evaluation.study as study_module

    monkeypatch.setattr(study_module, "train_segmentation_network", _no_training)
    site_b = write_phantom_dataset(tmp_path / "site_b", 3, image_size=32, seed=500)
    site_b = site_b.parent if site_b.is_file() else site_b
    content = read_json(site_b / "datalist.json")
    content["training"][1]["label"] = "labels/missing_label.nii.gz"
    write_json_atomic(site_b / "datalist.json", content)
    source = site_b / "datalist.json" if broken == "missing_file" else tmp_path / "nowhere.json"
    study = SyntheticEvaluationStudy(tmp_path / "out", arms=["real"], phantom_samples=8, test_datasets={"site_b": source},
                                     **TINY)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="missing_label.nii.gz" if broken == "missing_file" else "nowhere.json"):
        study.run()


def test_external_test_set_is_scored_and_reported_on_its_own(tmp_path: Path) -> None:
    site_b = write_phantom_dataset(tmp_path / "site_b", 5, image_size=32, seed=9000)
    results = SyntheticEvaluationStudy(
        tmp_path / "out", arms=["real", "synthetic"], phantom_samples=10, phantom_generated_samples=8,
        num_synthetic=[4], test_datasets={"site_b": site_b}, **TINY,
    ).run()  # fmt: skip
    assert results["test_sets"][:2] == ["test_R", "test_R:site_b"]
    for arm in results["arms"]:
        assert len(arm["cases"]["test_R:site_b"]) == 5
        assert {c["case_id"] for c in arm["cases"]["test_R:site_b"]} == {f"phantom_{9000 + i:05d}" for i in range(5)}
    site_b = results["statistics"]["test_R:site_b"]["dice"]
    assert site_b["test"] == "wilcoxon" and site_b["score_name"] == "dice"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "test-R `site_b`: external real test set" in report


def test_external_test_set_overlapping_training_is_refused(tmp_path: Path, monkeypatch) -> None:
    import monai_synth.evaluation.study as study_module

    monkeypatch.setattr(study_module, "train_segmentation_network", _no_training)
    real = write_phantom_dataset(tmp_path / "real", 10, image_size=32, seed=0)
    real_dir = real.parent if real.is_file() else real
    entries = read_json(real_dir / "datalist.json")["training"]
    # a renamed, byte-identical copy of every real case under new case ids: only the content check sees it
    copy = tmp_path / "site_b"
    (copy / "images").mkdir(parents=True)
    (copy / "labels").mkdir(parents=True)
    listed = []
    for k, e in enumerate(entries):
        shutil.copy(real_dir / e["image"], copy / "images" / f"other_{k}.nii.gz")
        shutil.copy(real_dir / e["label"], copy / "labels" / f"other_{k}.nii.gz")
        listed.append({"image": f"images/other_{k}.nii.gz", "label": f"labels/other_{k}.nii.gz", "case_id": f"b{k}"})
    write_json_atomic(copy / "datalist.json", {"training": listed})
    study = SyntheticEvaluationStudy(
        tmp_path / "out", real_dataset_dir=real_dir, arms=["real"], test_datasets={"site_b": copy}, **TINY
    )
    with pytest.raises(ValueError, match=r"external test set site_b.*byte-identical"):
        study.run()


def test_renamed_copy_of_a_test_image_in_a_generated_set_is_caught(tmp_path: Path) -> None:
    folder = write_phantom_dataset(tmp_path / "real", 4, image_size=32, seed=0)
    folder = folder.parent if folder.is_file() else folder
    entries = read_json(folder / "datalist.json")["training"]
    test = [{"image": str(folder / e["image"]), "case_id": e["case_id"]} for e in entries[:1]]
    shutil.copy(folder / entries[0]["image"], tmp_path / "generated_0007.nii.gz")
    train = [{"image": str(tmp_path / "generated_0007.nii.gz"), "case_id": "gen_7"}]
    train += [{"image": str(folder / e["image"]), "case_id": e["case_id"]} for e in entries[1:]]
    with pytest.raises(ValueError, match=r"0 shared 'case_id'.*0 shared image file.*1 byte-identical"):
        check_no_leakage(train, test)
    check_no_leakage(train[1:], test)  # the other files differ
    check_no_leakage(train, test, check_content=False)


def test_external_test_set_with_other_channels_is_refused(tmp_path: Path, monkeypatch) -> None:
    import monai_synth.evaluation.study as study_module

    monkeypatch.setattr(study_module, "train_segmentation_network", _no_training)
    two = tmp_path / "two"
    (two / "images").mkdir(parents=True)
    (two / "labels").mkdir(parents=True)
    entries = []
    for k in range(3):
        image = np.random.default_rng(k).random((32, 32, 1, 2)).astype(np.float32)
        label = np.zeros((32, 32), np.uint8)
        label[8:20, 8:20] = 1
        nib.save(nib.Nifti1Image(image, np.eye(4)), two / "images" / f"c{k}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), two / "labels" / f"c{k}.nii.gz")
        entries.append({"image": f"images/c{k}.nii.gz", "label": f"labels/c{k}.nii.gz", "case_id": f"two{k}"})
    write_json_atomic(two / "datalist.json", {"training": entries})
    study = SyntheticEvaluationStudy(
        tmp_path / "out", arms=["real"], phantom_samples=8, test_datasets={"mri": two}, **TINY
    )
    with pytest.raises(ValueError, match=r"test_datasets 'mri'"):
        study.run()


# ---------------------------------------------------------------------------------------------------
# per-volume scores in mm
# ---------------------------------------------------------------------------------------------------
def _volume_file(path: Path, shape, spacing) -> Path:
    affine = np.diag([*spacing, *[1.0] * (4 - len(spacing))])
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), affine), path)
    return path


def test_slice_spacing_after_crop_and_resize(tmp_path: Path) -> None:
    path = _volume_file(tmp_path / "v.nii.gz", (20, 40, 7), (0.5, 1.5, 3.0))
    # slices of 20 x 40 are cropped to 20 x 20 and resized to 10 x 10: pixels twice as large
    assert slice_spacing({"image_path": str(path)}, image_size=10, axis=2) == pytest.approx((1.0, 3.0, 3.0))
    # along axis 0: 40 x 7 slices, cropped to 7 x 7, resized to 20 x 20
    assert slice_spacing({"image_path": str(path)}, image_size=20, axis=0) == pytest.approx((0.525, 1.05, 0.5))
    flat = _volume_file(tmp_path / "f.nii.gz", (20, 20), (1.0, 1.0))
    assert slice_spacing({"image_path": str(flat)}, image_size=20) is None
    assert slice_spacing({"case_id": "phantom"}, image_size=20) is None


def test_stack_volume_places_slices_and_fills_gaps() -> None:
    slices = torch.ones((2, 1, 3, 3), dtype=torch.long)
    volume = stack_volume(slices, [5, 7])
    assert volume.shape == (1, 1, 3, 3, 3)
    assert volume[0, 0, :, :, 0].sum() == 9 and volume[0, 0, :, :, 1].sum() == 0 and volume[0, 0, :, :, 2].sum() == 9


def test_volume_scores_equal_hand_computed_values_with_anisotropic_spacing(tmp_path: Path) -> None:
    """A 4 x 4 x 3 voxel cube (voxels 0.5 x 1.5 x 3 mm) against itself shifted by one voxel.

    Shift along the slice axis: Dice = 2 * 32 / 96 = 2/3; the pred face beyond the truth is one slice
    (3 mm) from the nearest truth surface voxel and holds 16 of the 44 surface voxels (> 5 %), so HD = HD95
    = 3 mm. Shift along the second in-plane axis: Dice = 2 * 36 / 96 = 0.75, HD = HD95 = 1.5 mm (12 of 44
    surface voxels at one 1.5 mm step). In pixels both would be 1.
    """
    path = _volume_file(tmp_path / "case.nii.gz", (16, 16, 8), (0.5, 1.5, 3.0))
    truth = np.zeros((16, 16, 8), np.int64)
    truth[4:8, 4:8, 1:4] = 1
    shifted_z = np.roll(truth, 1, axis=2)
    shifted_y = np.roll(truth, 1, axis=1)
    kept = list(range(1, 6))  # slices 0, 6, 7 left out (e.g. by keep_labels): empty in both

    def slices(volume: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.stack([volume[None, :, :, z] for z in kept]))

    items = [{"case_id": "v1", "slice_index": z, "image_path": str(path)} for z in kept]
    for prediction, dice, hd in ((shifted_z, 2 / 3, 3.0), (shifted_y, 0.75, 1.5)):
        [(case_id, scores, spacing)] = volume_scores(slices(prediction), slices(truth), items, 2, image_size=16)
        assert case_id == "v1" and spacing == pytest.approx((0.5, 1.5, 3.0))
        assert scores["dice"][0] == pytest.approx(dice)
        assert scores["hd"][0] == pytest.approx(hd)
        assert scores["hd95"][0] == pytest.approx(hd)


def _write_volumes(folder: Path, count: int, seed: int = 0) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    entries = []
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    for k in range(count):
        label = np.zeros((16, 16, 6), np.uint8)
        x, y = rng.integers(3, 8, size=2)
        label[x : x + 6, y : y + 6, 1:5] = 1
        image = (label * 100 + rng.normal(0, 10, label.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), folder / "images" / f"vol{k}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), folder / "labels" / f"vol{k}.nii.gz")
        entries.append({"image": f"images/vol{k}.nii.gz", "label": f"labels/vol{k}.nii.gz", "case_id": f"vol{k}"})
    return write_json_atomic(folder / "datalist.json", {"training": entries})


def test_3d_study_scores_per_volume_in_mm(tmp_path: Path) -> None:
    datalist = _write_volumes(tmp_path / "volumes", 8)
    results = SyntheticEvaluationStudy(
        tmp_path / "out", real_dataset_dir=datalist, arms=["real"], test_fraction=0.25, **{**TINY, "image_size": 16}
    ).run()
    assert results["test_sets"] == ["test_R", "test_R/volume"]
    cases = results["arms"][0]["cases"]
    test_volumes = results["data"]["splits"][0]["test"]
    assert sorted(c["case_id"] for c in cases["test_R/volume"]) == test_volumes
    assert len(cases["test_R"]) == 6 * len(test_volumes)  # every slice kept
    assert all(c["spacing"] == pytest.approx([1.0, 1.0, 2.5]) for c in cases["test_R/volume"])
    assert "test_R/volume" in results["statistics"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "scored per volume (HD in mm)" in report and "HD95 (mm)" in report


# ---------------------------------------------------------------------------------------------------
# saved models and inference.json
# ---------------------------------------------------------------------------------------------------
def test_saved_model_reloads_and_inference_reproduces_the_test_dice(tmp_path: Path) -> None:
    from monai_synth.data.splits import write_datalist
    from monai_synth.evaluation.inference import StudySegmenter, load_study_model

    real = write_phantom_dataset(tmp_path / "real", 12, image_size=32, seed=0)
    real_dir = real.parent if real.is_file() else real
    results = SyntheticEvaluationStudy(
        tmp_path / "study", real_dataset_dir=real_dir, arms=["real"], num_real=[6], test_fraction=0.25, **TINY
    ).run()
    arm = results["arms"][0]
    assert arm["folds"][0]["model"] == "models/real_r6/fold0/model.pt"
    path = tmp_path / "study" / arm["folds"][0]["model"]
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["network"] == "UNet" and payload["config"]["arm"] == "real_r6"
    network, config = load_study_model(path)
    assert config["image_size"] == 32 and config["num_classes"] == 6

    test_cases = set(results["data"]["splits"][0]["test"])
    entries = [e for e in read_json(real_dir / "datalist.json")["training"] if e["case_id"] in test_cases]
    for e in entries:
        e["image"], e["label"] = str(real_dir / e["image"]), str(real_dir / e["label"])
    datalist = write_datalist(tmp_path / "test.json", {"test": entries})
    out = StudySegmenter(dataset=datalist, study_dir=tmp_path / "study", arm="real_r6", fold=0).run()
    study_dice = {c["case_id"]: c["dice_mean"] for c in arm["cases"]["test_R"]}
    scores = read_json(tmp_path / "study" / "inference" / "real_r6_fold0" / "scores.json")
    for item in scores["items"]:
        assert item["dice_mean"] == pytest.approx(study_dice[item["case_id"]], abs=1e-6, nan_ok=True)
    assert out["mean_dice"] == pytest.approx(float(np.nanmean(list(study_dice.values()))), abs=1e-6)
    written = read_json(out["datalist"])["test"]
    assert {e["case_id"] for e in written} == test_cases
    mask = nib.load(tmp_path / "study" / "inference" / "real_r6_fold0" / written[0]["label"]).get_fdata()
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= set(range(6))


@pytest.mark.parametrize("real_kwargs", [None, {"max_items": 11}])
def test_generator_datalist_holds_exactly_the_arm_training_cases(tmp_path: Path, real_kwargs) -> None:
    # real_dataset_kwargs (max_items here) change which cases the study splits: the generator's list follows them
    real = write_phantom_dataset(tmp_path / "real", 14, image_size=32, seed=0)
    real_dir = real.parent if real.is_file() else real
    study = SyntheticEvaluationStudy(
        tmp_path / "study", real_dataset_dir=real_dir, arms=["real"], num_real=[4], real_dataset_kwargs=real_kwargs,
        **TINY,
    )  # fmt: skip
    path = study.write_generator_datalist(tmp_path / "gan_training.json", num_real=4)
    cases = sorted(e["case_id"] for e in read_json(path)["training"])
    results = study.run()
    assert cases == results["data"]["real_subsets"][0]["4"]
    assert not set(cases) & set(results["data"]["splits"][0]["test"] + results["data"]["splits"][0]["validation"])
