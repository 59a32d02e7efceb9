"""Bad input through the real bundle entry points: each case is refused, names the file or setting,
and leaves what the output folder already held untouched.

Bundles run in-process with ``monai.bundle.run(config_file=..., **overrides)`` (one command-line
smoke test checks the same refusal through ``python -m monai.bundle run``). The cases for issue 15
items 5-8 failed before their fixes.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from reliability_helpers import (
    DCGAN_TINY,
    REPO,
    bundle_env,
    bundle_error,
    cli_args,
    config_file,
    error_text,
    run_bundle,
    snapshot,
    unchanged,
)

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file")

TRAIN = config_file("paired_dcgan", "train")
# one iteration on the given dataset (no phantom)
TRAIN_ONE = {k: v for k, v in DCGAN_TINY.items() if k != "phantom_samples"} | {
    "max_epochs": 1,
    "iterations_per_epoch": 1,
}


def _previous_output(folder: Path) -> dict:
    """Give ``folder`` earlier results and return their snapshot."""
    (folder / "generated").mkdir(parents=True)
    (folder / "notes.txt").write_text("results of an earlier run\n")
    (folder / "generated" / "datalist.json").write_text('{"training": []}\n')
    return snapshot(folder)


def _dataset(root: Path, fmt: str = "png", n: int = 6, size: int = 40) -> Path:
    """``root/images`` + ``root/labels``: ``case_<i>`` pairs, random 8-bit images, one square label 1."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 256, (size, size), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        label[10:30, 10:30] = 1
        if fmt == "png":
            Image.fromarray(image).save(root / "images" / f"case_{i}.png")
            Image.fromarray(label).save(root / "labels" / f"case_{i}.png")
        else:
            nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), str(root / "images" / f"case_{i}.nii.gz"))
            nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labels" / f"case_{i}.nii.gz"))
    return root


# --- each spoiler builds a dataset with one fault and returns the phrases the error must contain --------


def _empty_folder(root: Path) -> list[str]:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    return [str(root / "images")]


def _shape_mismatch(root: Path) -> list[str]:
    _dataset(root)
    Image.fromarray(np.zeros((36, 40), np.uint8)).save(root / "labels" / "case_3.png")
    return ["labels/case_3.png"]


def _truncated_png(root: Path) -> list[str]:
    _dataset(root)
    path = root / "images" / "case_2.png"
    path.write_bytes(path.read_bytes()[:60])
    return ["images/case_2.png"]


def _zero_byte_png(root: Path) -> list[str]:
    _dataset(root)
    (root / "images" / "case_2.png").write_bytes(b"")
    return ["images/case_2.png"]


def _truncated_nifti(root: Path) -> list[str]:
    _dataset(root, fmt="nii")
    path = root / "images" / "case_2.nii.gz"
    path.write_bytes(path.read_bytes()[:100])
    return ["images/case_2.nii.gz"]


def _zero_byte_nifti(root: Path) -> list[str]:
    _dataset(root, fmt="nii")
    (root / "labels" / "case_2.nii.gz").write_bytes(b"")
    return ["labels/case_2.nii.gz"]


def _wrong_channel_count(root: Path) -> list[str]:
    _dataset(root)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "images" / "case_1.png")  # RGB among grayscale
    return ["images/case_1.png"]


BAD_DATA = [
    pytest.param(_empty_folder, id="empty_dataset_folder", marks=pytest.mark.slow),
    pytest.param(_shape_mismatch, id="image_label_shape_mismatch", marks=pytest.mark.slow),
    pytest.param(_truncated_png, id="truncated_png"),
    pytest.param(_zero_byte_png, id="zero_byte_png", marks=pytest.mark.slow),
    pytest.param(_truncated_nifti, id="truncated_nifti", marks=pytest.mark.slow),
    pytest.param(_zero_byte_nifti, id="zero_byte_nifti", marks=pytest.mark.slow),
    pytest.param(_wrong_channel_count, id="wrong_channel_count", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spoil", BAD_DATA)
def test_bad_dataset_is_refused_naming_the_file(spoil: Callable[[Path], list[str]], tmp_path: Path) -> None:
    phrases = spoil(tmp_path / "data")
    out = tmp_path / "out"
    before = _previous_output(out)
    message = bundle_error(TRAIN, dataset_dir=str(tmp_path / "data"), output_dir=str(out), **TRAIN_ONE)
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in:\n{message}"
    assert unchanged(before, out) == [] and not (out / "checkpoints").exists()


@pytest.mark.slow
def test_nan_in_an_image_names_the_image_file_not_the_label(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data", fmt="nii")
    image = np.asarray(nib.load(str(data / "images" / "case_2.nii.gz")).dataobj).copy()
    image[5, 5] = np.nan
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(data / "images" / "case_2.nii.gz"))
    out = tmp_path / "out"
    before = _previous_output(out)
    message = bundle_error(TRAIN, dataset_dir=str(data), output_dir=str(out), **TRAIN_ONE)
    assert "NaN" in message and "images/case_2.nii.gz" in message and "labels/case_2.nii.gz" not in message, message
    assert unchanged(before, out) == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _error_or_warnings(config: str, **overrides) -> str:
    """The exception text of a run, or (when it completes) every warning it logged or issued."""
    records = _Records()
    package_logger = logging.getLogger("monai_synth")  # not replaced by the bundle's logging.conf
    package_logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as issued:
            warnings.simplefilter("always")
            try:
                run_bundle(config, **overrides)
            except Exception as e:  # noqa: BLE001 - an error is one accepted outcome
                return error_text(e)
        return "\n".join(records.messages + [str(w.message) for w in issued])
    finally:
        package_logger.removeHandler(records)


@pytest.mark.slow
def test_mask_with_a_stray_value_is_named_with_its_values(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    label = np.zeros((40, 40), np.uint8)
    label[10:30, 10:30] = 1
    label[0, 0] = 7
    Image.fromarray(label).save(data / "labels" / "case_4.png")
    out = tmp_path / "out"
    before = _previous_output(out)
    message = _error_or_warnings(TRAIN, dataset_dir=str(data), output_dir=str(out), **TRAIN_ONE)
    named = [line for line in message.splitlines() if "labels/case_4.png" in line]
    assert named and any("7" in line.replace("labels/case_4.png", "") for line in named), message
    assert unchanged(before, out) == []


@pytest.mark.slow
def test_a_1x1_image_among_normal_ones_is_refused_naming_file_and_size(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    Image.fromarray(np.full((1, 1), 100, np.uint8)).save(data / "images" / "case_5.png")
    Image.fromarray(np.ones((1, 1), np.uint8)).save(data / "labels" / "case_5.png")
    out = tmp_path / "out"
    before = _previous_output(out)
    message = bundle_error(TRAIN, dataset_dir=str(data), output_dir=str(out), **TRAIN_ONE)
    assert "images/case_5.png" in message and re.search(r"\b1\s*(x|×|,)\s*1\b", message), message
    assert unchanged(before, out) == [] and not (out / "checkpoints").exists()


# --- a generator.pt from the other bundle --------------------------------------------------------------


def _generator(request: pytest.FixtureRequest, family: str) -> Path:
    run_dir = request.getfixturevalue("dcgan_run" if family == "paired_dcgan" else "datasetgan_run")
    return run_dir / "generator.pt"


@pytest.mark.slow
@pytest.mark.parametrize(("bundle", "trained_by"), [("datasetgan", "paired_dcgan"), ("paired_dcgan", "datasetgan")])
def test_inference_refuses_a_generator_of_the_other_bundle_naming_it(
    bundle: str, trained_by: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    generator = _generator(request, trained_by)
    out = tmp_path / "out"
    before = _previous_output(out)
    args = {"output_dir": str(out), "generator_path": str(generator), "num_samples": 2, "device": "cpu"}
    message = bundle_error(config_file(bundle, "inference"), **args)
    naming = [line for line in message.splitlines() if str(generator) in line]
    assert naming and not any(line.startswith("KeyError") for line in naming), message
    assert unchanged(before, out) == [] and not (out / "inference").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("bundle", "trained_by"), [("datasetgan", "paired_dcgan"), ("paired_dcgan", "datasetgan")])
def test_generate_serves_a_generator_of_the_other_bundle_or_names_it(
    bundle: str, trained_by: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The pair factory is generator-agnostic by design: a paired generator of either family works;
    a refusal would have to name the file, never end in a bare KeyError."""
    generator = _generator(request, trained_by)
    out = tmp_path / "out"
    before = _previous_output(out)
    args = {"output_dir": str(out), "generator_path": str(generator), "generated_dir": str(out / "set")}
    args |= {"num_samples": 2, "device": "cpu"}
    try:
        run_bundle(config_file(bundle, "generate"), **args)
    except Exception as e:  # noqa: BLE001
        message = error_text(e)
        assert str(generator) in message and "KeyError" not in message, message
    else:
        assert (out / "set" / "datalist.json").is_file()
    assert unchanged(before, out) == []


# --- overrides ------------------------------------------------------------------------------------------

OVERRIDES = [
    pytest.param("paired_dcgan", "train", {"image_sise": 32}, "image_sise", id="train-unknown_key"),
    pytest.param("paired_dcgan", "train", {"max_epochs": "many"}, "max_epochs", id="train-wrong_type"),
    pytest.param("paired_dcgan", "generate", {"num_sample": 4}, "num_sample", id="generate-unknown_key"),
    pytest.param("paired_dcgan", "generate", {"num_samples": "lots"}, "num_samples", id="generate-wrong_type"),
    pytest.param("datasetgan", "train", {"r1_gama": 1.0}, "r1_gama", id="datasetgan_train-unknown_key"),
    pytest.param("datasetgan", "train", {"kimg": "lots"}, "kimg", id="datasetgan_train-wrong_type"),
    pytest.param("synthetic_evaluation", "evaluate", {"max_epoch": 1}, "max_epoch", id="evaluate-unknown_key"),
    pytest.param("synthetic_evaluation", "evaluate", {"max_epochs": "many"}, "max_epochs", id="evaluate-wrong_type"),
]


@pytest.mark.parametrize("previous", [False, True], ids=["new_output_dir", "previous_run_in_output_dir"])
@pytest.mark.parametrize(("bundle", "config", "override", "phrase"), OVERRIDES)
def test_bad_override_is_refused_before_anything_is_written(
    bundle: str, config: str, override: dict, phrase: str, previous: bool, dcgan_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    if previous:  # a finished run (checkpoint, generator, grids, summary) the refused command must not touch
        shutil.copytree(dcgan_run, out)
    before = snapshot(out)
    message = bundle_error(config_file(bundle, config), output_dir=str(out), device="cpu", **override)
    assert phrase in message, message
    if previous:
        assert snapshot(out) == before
    else:
        assert not out.exists()


@pytest.mark.slow
def test_bad_override_on_the_command_line_exits_non_zero_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--config_file", TRAIN, *cli_args({"output_dir": str(out), "image_sise": 32})]
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args],
        cwd=REPO,
        env=bundle_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "image_sise" in result.stderr.strip().splitlines()[-1], result.stderr[-3000:]
    assert not out.exists()
