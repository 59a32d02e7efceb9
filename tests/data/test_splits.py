from __future__ import annotations

import json
import random

import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from monai_synth.data.splits import check_no_leakage, kfold_datalist, split_datalist, write_datalist


def _slices(num_cases: int, per_case: int = 3) -> list[dict]:
    return [
        {"image": f"/data/case{c:02d}.nii.gz", "case_id": f"case{c:02d}", "slice_index": k}
        for c in range(num_cases)
        for k in range(per_case)
    ]


def _cases(items) -> set:
    return {item["case_id"] for item in items}


def _signature(splits: dict) -> dict:
    return {k: [(i["case_id"], i["slice_index"]) for i in v] for k, v in splits.items()}


@pytest.mark.parametrize(
    "num_cases, val, test, sizes",
    [
        (10, 0.1, 0.2, (7, 1, 2)),
        (3, 0.1, 0.2, (1, 1, 1)),  # non-zero fractions get at least one case
        (20, 0.0, 0.25, (15, 0, 5)),
        (8, 0.25, 0.0, (6, 2, 0)),
        (10, 0.15, 0.25, (5, 2, 3)),  # halves round up: 1.5 -> 2, 2.5 -> 3
    ],
)
def test_split_sizes_and_grouping(num_cases, val, test, sizes):
    splits = split_datalist(_slices(num_cases), val_fraction=val, test_fraction=test, seed=3)
    assert set(splits) == {"training", "validation", "test"}
    counts = tuple(len(_cases(splits[k])) for k in ("training", "validation", "test"))
    assert counts == sizes
    for key in splits:  # all slices of a case stay together
        assert len(splits[key]) == 3 * len(_cases(splits[key]))
    everything = _cases(splits["training"]) | _cases(splits["validation"]) | _cases(splits["test"])
    assert everything == _cases(_slices(num_cases))
    check_no_leakage(splits["training"], splits["test"])
    check_no_leakage(splits["training"], splits["validation"])
    check_no_leakage(splits["validation"], splits["test"])


def test_split_reproducible_and_order_independent():
    items = _slices(12)
    reference = _signature(split_datalist(items, seed=5))
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    assert _signature(split_datalist(shuffled, seed=5)) == reference
    assert _signature(split_datalist(items, seed=5)) == reference
    assert any(_signature(split_datalist(items, seed=s))["test"] != reference["test"] for s in range(6, 10))


@pytest.mark.parametrize(
    "num_cases, val, test, match",
    [
        (2, 0.1, 0.2, r"Too few groups \('case_id'\) to split: 2 group\(s\) in 6 item\(s\).*needs 1.*leaving 0"),
        (1, 0.0, 0.2, r"1 group\(s\)"),
    ],
)
def test_split_too_few_groups(num_cases, val, test, match):
    with pytest.raises(ValueError, match=match):
        split_datalist(_slices(num_cases), val_fraction=val, test_fraction=test)


@pytest.mark.parametrize(
    "kwargs", [{"val_fraction": -0.1}, {"test_fraction": 1.0}, {"val_fraction": 0.5, "test_fraction": 0.5}]
)
def test_split_bad_fractions(kwargs):
    with pytest.raises(ValueError, match="fraction"):
        split_datalist(_slices(10), **kwargs)


def test_split_items_without_group_key():
    items = _slices(4) + [{"image": "/x.nii.gz"}]
    with pytest.raises(ValueError, match=r"Items \[12\] have no 'case_id'"):
        split_datalist(items)
    with pytest.raises(ValueError, match="empty"):
        split_datalist([])


def test_split_custom_group_key():
    items = [{"image": f"/s{i}.png", "patient": f"p{i // 2}"} for i in range(10)]
    splits = split_datalist(items, val_fraction=0.2, test_fraction=0.2, group_key="patient")
    for a, b in (("training", "test"), ("training", "validation"), ("validation", "test")):
        assert not {i["patient"] for i in splits[a]} & {i["patient"] for i in splits[b]}


@pytest.mark.parametrize("num_cases, num_folds", [(10, 5), (7, 3), (4, 4), (5, 2)])
def test_kfold_coverage(num_cases, num_folds):
    items = _slices(num_cases, per_case=2)
    folds = kfold_datalist(items, num_folds=num_folds, seed=1)
    assert len(folds) == num_folds
    tested = [case for fold in folds for case in sorted(_cases(fold["test"]))]
    assert sorted(tested) == sorted(_cases(items))  # every case tested exactly once
    sizes = [len(_cases(f["test"])) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for fold in folds:
        assert fold["validation"] == []
        check_no_leakage(fold["training"], fold["test"])
        assert len(fold["training"]) + len(fold["test"]) == len(items)


def test_kfold_validation_and_reproducibility():
    items = _slices(10)
    folds = kfold_datalist(items, num_folds=5, seed=2, val_fraction=0.25)
    for fold in folds:
        assert len(_cases(fold["validation"])) == 2  # 25% of 8 training cases
        check_no_leakage(fold["training"], fold["validation"])
        check_no_leakage(fold["validation"], fold["test"])
        assert len(fold["training"]) + len(fold["validation"]) + len(fold["test"]) == len(items)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    again = kfold_datalist(shuffled, num_folds=5, seed=2, val_fraction=0.25)
    assert [_signature(f) for f in again] == [_signature(f) for f in folds]


@pytest.mark.parametrize(
    "num_folds, match", [(6, r"num_folds=6 is more than the 5 group\(s\)"), (1, ">= 2"), (2.5, ">= 2")]
)
def test_kfold_bad_num_folds(num_folds, match):
    with pytest.raises(ValueError, match=match):
        kfold_datalist(_slices(5), num_folds=num_folds)


# ---------------------------------------------------------------- write_datalist


@pytest.fixture
def files(tmp_path):
    items = []
    for case in ("a", "b", "c", "d"):
        for kind in ("images", "labels"):
            (tmp_path / "data" / kind).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / kind / f"{case}.nii.gz").write_bytes(b"x")
        items.append(
            {
                "image": str(tmp_path / "data" / "images" / f"{case}.nii.gz"),
                "label": str(tmp_path / "data" / "labels" / f"{case}.nii.gz"),
                "case_id": case,
            }
        )
    return items


def test_write_datalist_round_trip(tmp_path, files):
    splits = split_datalist(files, val_fraction=0.25, test_fraction=0.25)
    path = write_datalist(tmp_path / "out" / "split.json", splits)
    content = json.loads(path.read_text())
    assert content["training"][0]["image"].startswith("../data/images/")  # relative to the JSON's folder
    for key in ("training", "validation", "test"):
        loaded = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key)
        assert [(i["image"], i["label"], i["case_id"]) for i in loaded] == [
            (i["image"], i["label"], i["case_id"]) for i in splits[key]
        ]


def test_write_datalist_base_dir_and_modalities(tmp_path, files):
    items = [{"image": [files[0]["image"], files[1]["image"]], "label": files[0]["label"], "case_id": "a"}]
    path = write_datalist(tmp_path / "lists" / "d.json", {"training": items}, base_dir=tmp_path / "data")
    assert json.loads(path.read_text())["training"][0]["image"] == ["images/a.nii.gz", "images/b.nii.gz"]
    loaded = load_decathlon_datalist(path, is_segmentation=True, base_dir=tmp_path / "data")
    assert loaded[0]["image"] == items[0]["image"] and loaded[0]["label"] == items[0]["label"]


def test_write_datalist_rejects_arrays(tmp_path):
    splits = {"training": [{"image": np.zeros((1, 4, 4), np.float32), "label": "/x.nii.gz", "case_id": "a"}]}
    target = tmp_path / "d.json"
    with pytest.raises(ValueError, match=r"splits\['training'\]\[0\]\['image'\] holds ndarray.*save_nifti_atomic"):
        write_datalist(target, splits)
    assert not target.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("splits", [[{"image": "/a"}], {"training": {"image": "/a"}}, {"training": ["/a"]}])
def test_write_datalist_bad_structure(tmp_path, splits):
    with pytest.raises(ValueError, match="must be"):
        write_datalist(tmp_path / "d.json", splits)


def test_write_datalist_keeps_previous_file_on_error(tmp_path, files):
    path = write_datalist(tmp_path / "d.json", {"training": files})
    before = path.read_text()
    with pytest.raises(ValueError):
        write_datalist(path, {"training": [{"image": np.zeros(3)}]})
    assert path.read_text() == before


# ---------------------------------------------------------------- check_no_leakage


def test_check_no_leakage_detects_shared_cases():
    train, test = _slices(3), _slices(5)[6:]  # cases 2..4: case02 is in both
    with pytest.raises(ValueError, match=r"1 shared 'case_id' value\(s\) \[case02\].*1 shared image file"):
        check_no_leakage(train, test)
    check_no_leakage(_slices(2), _slices(5)[6:])


def test_check_no_leakage_detects_same_file_under_other_case_id(tmp_path):
    image = tmp_path / "scan.nii.gz"
    image.write_bytes(b"x")
    link = tmp_path / "alias.nii.gz"
    link.symlink_to(image)
    train = [{"image": np.zeros((1, 2, 2)), "image_path": str(image), "case_id": "A"}]
    test = [{"image": str(link), "case_id": "B"}]
    with pytest.raises(ValueError, match=r"0 shared 'case_id'.*1 shared image file\(s\) \[.*scan\.nii\.gz\]"):
        check_no_leakage(train, test)
