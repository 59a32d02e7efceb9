from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from monai_synth.data.datalist import (
    SkipReport,
    discover_pairs,
    load_datalist,
    resolve_dataset,
    strip_image_extension,
)


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _make_folder(root: Path, images: list[str], labels: list[str], image_dir="images", label_dir="labels") -> Path:
    for name in images:
        _touch(root / image_dir / name)
    for name in labels:
        _touch(root / label_dir / name)
    return root


@pytest.mark.parametrize(
    "name, stem",
    [
        ("case_1.nii.gz", "case_1"),
        ("CASE_1.NII.GZ", "CASE_1"),
        ("a.b.nii", "a.b"),
        ("x.png", "x"),
        ("x.jpeg", "x"),
        ("x.nrrd", "x"),
        ("x.mha", "x"),
        ("x.mhd", "x"),
        ("x.dcm", "x"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_strip_image_extension(name, stem):
    assert strip_image_extension(name) == stem


@pytest.mark.parametrize(
    "image_dir, label_dir, image_names, label_names",
    [
        ("images", "labels", ["b.nii.gz", "a.nii.gz"], ["a.nii.gz", "b.nii.gz"]),
        ("images", "masks", ["p1.png", "p2.png"], ["p1.png", "p2.png"]),
        ("imagesTr", "labelsTr", ["h_001.nii.gz", "h_002.nii.gz"], ["h_001.nii.gz", "h_002.nii.gz"]),
        ("images", "labels", ["a.nii.gz", "b.mha"], ["a.nrrd", "b.nii"]),  # pairs across formats
    ],
)
def test_discover_pairs_layouts(tmp_path, image_dir, label_dir, image_names, label_names):
    _make_folder(tmp_path, image_names, label_names, image_dir, label_dir)
    _touch(tmp_path / image_dir / ".DS_Store")  # hidden files are ignored
    items = discover_pairs(tmp_path)
    assert [it["case_id"] for it in items] == sorted(strip_image_extension(n) for n in image_names)
    for it in items:
        assert os.path.isabs(it["image"]) and os.path.isabs(it["label"])
        assert Path(it["image"]).parent.name == image_dir and Path(it["label"]).parent.name == label_dir
        assert strip_image_extension(Path(it["label"]).name) == it["case_id"]


def test_discover_pairs_explicit_dirs_and_suffix(tmp_path):
    _make_folder(tmp_path, ["c1.png", "c2.png"], ["c1_mask.png", "c2_mask.png"], "x", "y")
    items = discover_pairs(tmp_path, image_dir="x", label_dir=tmp_path / "y", label_suffix="_mask")
    assert [(Path(i["image"]).name, Path(i["label"]).name) for i in items] == [
        ("c1.png", "c1_mask.png"),
        ("c2.png", "c2_mask.png"),
    ]


def test_discover_pairs_suggests_label_suffix(tmp_path):
    _make_folder(tmp_path, ["c1.png"], ["c1_mask.png"], "images", "masks")
    with pytest.raises(ValueError, match="label_suffix='_mask'"):
        discover_pairs(tmp_path)


def test_discover_pairs_dicom_series_folders(tmp_path):
    for root in ("images", "labels"):
        _touch(tmp_path / root / "patient7" / "IM0001.dcm")
    _touch(tmp_path / "images" / "patient8" / "IM0001")
    _touch(tmp_path / "labels" / "patient8.nii.gz")  # a series may pair with a single mask file
    items = discover_pairs(tmp_path)
    assert [i["case_id"] for i in items] == ["patient7", "patient8"]
    assert Path(items[0]["image"]).is_dir()


def test_discover_pairs_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        discover_pairs(tmp_path / "nope")


def test_discover_pairs_no_subfolder_lists_found(tmp_path):
    _touch(tmp_path / "scans" / "a.png")
    _touch(tmp_path / "readme.txt")
    with pytest.raises(ValueError, match=r"no image sub-folder.*readme\.txt.*scans/"):
        discover_pairs(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="no label sub-folder"):
        discover_pairs(tmp_path)


def test_discover_pairs_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    _touch(tmp_path / "labels" / "a.png")
    with pytest.raises(ValueError, match=r"images is empty"):
        discover_pairs(tmp_path)


def test_discover_pairs_unpaired_lists_both_sides(tmp_path):
    _make_folder(tmp_path, ["a.png", "b.png", "only_image.png"], ["a.png", "b.png", "only_mask.png"], "images", "masks")
    with pytest.raises(ValueError) as err:
        discover_pairs(tmp_path)
    message = str(err.value)
    assert "Images without a mask" in message and "only_image.png" in message
    assert "Masks without an image" in message and "only_mask.png" in message
    assert "b.png" not in message  # paired files are not listed


def test_discover_pairs_unpaired_list_is_truncated(tmp_path):
    _make_folder(tmp_path, [f"img{i:02d}.png" for i in range(25)] + ["a.png"], ["a.png"])
    with pytest.raises(ValueError, match=r"\(25 in total\)"):
        discover_pairs(tmp_path)


def test_discover_pairs_skip_reports_unpaired(tmp_path):
    _make_folder(tmp_path, ["a.png", "b.png", "lonely.png"], ["a.png", "b.png", "orphan.png"])
    _touch(tmp_path / "images" / "notes.txt")
    report = SkipReport()
    items = discover_pairs(tmp_path, on_error="skip", report=report)
    assert [i["case_id"] for i in items] == ["a", "b"]
    skipped = {Path(p).name: entry["reason"] for p, entry in zip(report.paths(), report.skipped)}
    assert set(skipped) == {"lonely.png", "orphan.png", "notes.txt"}
    assert skipped["lonely.png"] == "image without a mask" and skipped["orphan.png"] == "mask without an image"
    written = json.loads(report.write(tmp_path / "out" / "skipped.json").read_text())
    assert len(written["skipped"]) == 3


def test_discover_pairs_nothing_left_after_skip(tmp_path):
    _make_folder(tmp_path, ["a.png"], ["b.png"])
    with pytest.raises(ValueError, match="No image/mask pairs"):
        discover_pairs(tmp_path, on_error="skip")


def test_discover_pairs_duplicate_stem(tmp_path):
    _make_folder(tmp_path, ["a.nii.gz", "a.png", "b.png"], ["a.png", "b.png"])
    with pytest.raises(ValueError, match=r"same name: a: a\.nii\.gz, a\.png"):
        discover_pairs(tmp_path)
    report = SkipReport()
    assert [i["case_id"] for i in discover_pairs(tmp_path, on_error="skip", report=report)] == ["b"]
    assert len(report) == 3  # both duplicated images, and the mask "a" that lost its image


def test_discover_pairs_non_image_files_raise(tmp_path):
    _make_folder(tmp_path, ["a.png", "README.txt"], ["a.png"])
    with pytest.raises(ValueError, match="not images.*README.txt"):
        discover_pairs(tmp_path)


def test_discover_pairs_mhd_data_files_are_not_cases(tmp_path):
    _make_folder(tmp_path, ["a.mhd", "a.raw"], ["a.mhd", "a.zraw"])
    assert [Path(i["image"]).name for i in discover_pairs(tmp_path)] == ["a.mhd"]


def test_discover_pairs_labels_and_masks(tmp_path):
    _make_folder(tmp_path, ["a.png"], ["a.png"], "images", "labels")
    _touch(tmp_path / "masks" / "a.png")  # same name and size: the same content
    assert Path(discover_pairs(tmp_path)[0]["label"]).parent.name == "labels"
    _touch(tmp_path / "masks" / "a.png", b"different")
    with pytest.raises(ValueError, match=r"both labels/ and masks/.*different file sizes: \[a\.png\]"):
        discover_pairs(tmp_path)
    assert Path(discover_pairs(tmp_path, label_dir="masks")[0]["label"]).parent.name == "masks"


def test_discover_pairs_bad_on_error(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        discover_pairs(tmp_path, on_error="ignore")


# ---------------------------------------------------------------- load_datalist


def _write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def datalist_dir(tmp_path):
    for case in ("c1", "c2"):
        _touch(tmp_path / "imgs" / f"{case}.nii.gz")
        _touch(tmp_path / "segs" / f"{case}.nii.gz")
    return tmp_path


def test_load_datalist_resolves_and_adds_case_id(datalist_dir):
    path = _write_json(
        datalist_dir / "lists" / "datalist.json",
        {
            "training": [
                {"image": "../imgs/c1.nii.gz", "label": "../segs/c1.nii.gz"},
                {"image": str(datalist_dir / "imgs" / "c2.nii.gz"), "label": "../segs/c2.nii.gz", "case_id": "imgs"},
            ],
            "validation": [],
        },
    )
    items = load_datalist(path)
    assert items[0]["image"] == str(datalist_dir / "imgs" / "c1.nii.gz")
    assert items[0]["label"] == str(datalist_dir / "segs" / "c1.nii.gz")
    assert items[0]["case_id"] == "c1"
    # an explicit case id is kept as written, even though MONAI would turn "imgs" into a path
    assert items[1]["case_id"] == "imgs"


def test_load_datalist_case_ids_of_same_named_files(tmp_path):
    entries = []
    for patient in ("p1", "p2"):
        _touch(tmp_path / patient / "image.nii.gz")
        _touch(tmp_path / patient / "label.nii.gz")
        entries.append({"image": f"{patient}/image.nii.gz", "label": f"{patient}/label.nii.gz"})
    items = load_datalist(_write_json(tmp_path / "d.json", {"training": entries}))
    assert [i["case_id"] for i in items] == ["p1/image", "p2/image"]


def test_load_datalist_modality_list(datalist_dir):
    path = _write_json(
        datalist_dir / "d.json",
        {"training": [{"image": ["imgs/c1.nii.gz", "imgs/c2.nii.gz"], "label": "segs/c1.nii.gz"}]},
    )
    (item,) = load_datalist(path)
    assert item["image"] == [str(datalist_dir / "imgs" / "c1.nii.gz"), str(datalist_dir / "imgs" / "c2.nii.gz")]
    assert item["case_id"] == "c1"


def test_load_datalist_base_dir(datalist_dir):
    entry = {"image": "imgs/c1.nii.gz", "label": "segs/c1.nii.gz"}
    path = _write_json(datalist_dir / "elsewhere" / "d.json", {"training": [entry]})
    assert load_datalist(path, base_dir=datalist_dir)[0]["image"] == str(datalist_dir / "imgs" / "c1.nii.gz")


def test_load_datalist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_datalist(tmp_path / "missing.json")


def test_load_datalist_corrupt_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"training": [')
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_datalist(path)


def test_load_datalist_missing_key_lists_keys(datalist_dir):
    path = _write_json(datalist_dir / "d.json", {"train": [], "validation": []})
    with pytest.raises(ValueError, match=r"no key 'training'; available keys: \['train', 'validation'\]"):
        load_datalist(path)


@pytest.mark.parametrize(
    "entries, bad",
    [
        ([{"image": "imgs/c1.nii.gz"}], "[0]"),
        ([{"image": "imgs/c1.nii.gz", "label": "segs/c1.nii.gz"}, {"label": "segs/c2.nii.gz"}], "[1]"),
        (["imgs/c1.nii.gz"], "[0]"),
    ],
)
def test_load_datalist_entries_without_image_or_label(datalist_dir, entries, bad):
    path = _write_json(datalist_dir / "d.json", {"training": entries})
    with pytest.raises(ValueError, match=r"without image and label: indices " + re.escape(bad)):
        load_datalist(path)


def test_load_datalist_unlabelled_test_list(datalist_dir):
    path = _write_json(datalist_dir / "d.json", {"test": ["imgs/c1.nii.gz", "imgs/c2.nii.gz"]})
    items = load_datalist(path, key="test", require_label=False)
    assert [i["case_id"] for i in items] == ["c1", "c2"] and "label" not in items[0]


def test_load_datalist_missing_referenced_files(datalist_dir):
    entries = [
        {"image": "imgs/c1.nii.gz", "label": "segs/c1.nii.gz"},
        {"image": "imgs/gone.nii.gz", "label": "segs/c2.nii.gz"},
        {"image": "imgs/c2.nii.gz", "label": "segs/gone_too.nii.gz"},
    ]
    path = _write_json(datalist_dir / "d.json", {"training": entries})
    with pytest.raises(FileNotFoundError, match=r"2 file\(s\) that do not exist.*gone\.nii\.gz.*gone_too\.nii\.gz"):
        load_datalist(path)
    report = SkipReport()
    items = load_datalist(path, on_error="skip", report=report)
    assert [i["case_id"] for i in items] == ["c1"]
    assert len(report) == 2 and "gone_too.nii.gz" in report.summary()


def test_load_datalist_empty_list(datalist_dir):
    with pytest.raises(ValueError, match="is empty"):
        load_datalist(_write_json(datalist_dir / "d.json", {"training": []}))


# ---------------------------------------------------------------- resolve_dataset


def test_resolve_dataset_rules(tmp_path):
    _make_folder(tmp_path, ["a.png", "b.png"], ["a.png", "b.png"])
    assert [i["case_id"] for i in resolve_dataset(tmp_path)] == ["a", "b"]  # folder -> discover_pairs
    # nnU-Net style dataset.json (no list under the key) does not hide the folder pairs
    _write_json(tmp_path / "dataset.json", {"labels": {"background": 0}, "file_ending": ".png"})
    assert len(resolve_dataset(tmp_path)) == 2
    # a decathlon dataset.json with the key is used
    _write_json(tmp_path / "dataset.json", {"training": [{"image": "images/b.png", "label": "labels/b.png"}]})
    assert [i["case_id"] for i in resolve_dataset(tmp_path)] == ["b"]
    # datalist.json wins over everything else
    _write_json(tmp_path / "datalist.json", {"training": [{"image": "images/a.png", "label": "labels/a.png"}]})
    assert [i["case_id"] for i in resolve_dataset(tmp_path)] == ["a"]
    # an explicit JSON path
    assert [i["case_id"] for i in resolve_dataset(tmp_path / "dataset.json")] == ["b"]


def test_resolve_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a datalist JSON"):
        resolve_dataset(_touch(tmp_path / "scan.nii.gz"))
