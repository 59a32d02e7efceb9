"""Annotation round-trip and interpreter generation on a tiny exported generator: bad inputs are named."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_synth.apps.datasetgan import (
    InterpreterDatasetFactory,
    export_for_annotation,
    load_annotations,
    resolve_label_source,
    train_interpreter_from_annotations,
)
from monai_synth.networks.nets import StyleGAN2Generator
from monai_synth.utils.export import load_interpreter
from monai_synth.utils.io import torch_save_atomic


def _export_generator(path: Path, mode: str = "paired") -> Path:
    torch.manual_seed(0)
    g = StyleGAN2Generator(16, 1, 1 if mode == "paired" else 0, mode, z_dim=8, w_dim=8, mapping_layers=1,
                           channel_base=64, channel_max=8)  # fmt: skip
    config = {
        "generator_class": "monai_synth.networks.nets.StyleGAN2Generator",
        "generator": g.get_config(),
        "latent": {"dim": 8, "distribution": "normal"},
        "data": {"image_size": 16, "image_channels": 1, "num_classes": 2, "label_names": {"0": "bg", "1": "fg"}},
    }
    torch_save_atomic({"state_dict": g.state_dict(), "config": config}, path)
    return path


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path]:
    generator = _export_generator(tmp_path / "generator.pt")
    export_for_annotation(generator, tmp_path / "annotation", num_samples=4, batch_size=3, save_png=False)
    return generator, tmp_path / "annotation"


def _label(path: Path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))


def test_export_writes_images_latents_and_auto_labels(exported) -> None:
    generator, export = exported
    manifest = json.loads((export / "manifest.json").read_text())
    assert len(manifest["ids"]) == 4 and manifest["auto_labels"] and manifest["latent"]["kind"] == "z"
    ids, z, masks = load_annotations(export, export / "auto_labels", generator)
    assert ids == manifest["ids"] and z.shape == (4, 8) and masks.shape == (4, 16, 16)
    saved = torch.load(export / "latents.pt", weights_only=True)
    torch.testing.assert_close(saved["z"], z)


def test_missing_unknown_and_bad_masks_are_named(exported, tmp_path: Path) -> None:
    generator, export = exported
    labels = tmp_path / "labels"
    labels.mkdir()
    with pytest.raises(ValueError, match="No <id>_label.nii.gz masks"):
        load_annotations(export, labels, generator)  # zero annotated images
    ids = json.loads((export / "manifest.json").read_text())["ids"]
    for i in ids[:3]:
        _label(labels / f"{i}_label.nii.gz", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match=f"{ids[3]}_label.nii.gz") as error:
        load_annotations(export, labels, generator)
    assert "require_all_labels" in str(error.value)
    assert load_annotations(export, labels, generator, require_all=False)[0] == ids[:3]
    _label(labels / f"{ids[3]}_label.nii.gz", np.full((16, 16), 3, np.uint8))
    with pytest.raises(ValueError, match=rf"{ids[3]}_label.nii.gz holds values \[3\]; expected integers 0..1"):
        load_annotations(export, labels, generator)
    _label(labels / f"{ids[3]}_label.nii.gz", np.full((16, 16), 0.5, np.float32))
    with pytest.raises(ValueError, match=f"{ids[3]}_label.nii.gz holds values"):
        load_annotations(export, labels, generator)
    _label(labels / f"{ids[3]}_label.nii.gz", np.zeros((16, 16), np.uint8))
    assert len(load_annotations(export, labels, generator)[0]) == 4
    other = _export_generator(tmp_path / "other.pt", mode="image")
    with pytest.raises(ValueError, match="sha256 differs"):
        load_annotations(export, labels, other)


def test_interpreter_checkpoint_and_label_source_checks(exported, tmp_path: Path) -> None:
    generator, export = exported
    path = tmp_path / "interpreter.pt"
    summary = train_interpreter_from_annotations(
        generator, export, export / "auto_labels", path, num_members=2, hidden_channels=(8, 4), epochs=1,
        pixels_per_image=32,
    )  # fmt: skip
    assert summary["num_train"] == 3 and summary["num_held_out"] == 1
    ensemble, checkpoint = load_interpreter(path, generator)
    assert ensemble.num_members == 2 and not ensemble.training
    assert checkpoint["label_names"] == {"0": "bg", "1": "fg"}
    other = _export_generator(tmp_path / "other.pt", mode="image")
    with pytest.raises(ValueError, match="another generator"):
        load_interpreter(path, other)
    with pytest.raises(ValueError, match="not a style-interpreter checkpoint"):
        load_interpreter(generator)
    assert resolve_label_source("auto", path) == "interpreter"
    assert resolve_label_source("auto", tmp_path / "none.pt") == "generator"
    with pytest.raises(FileNotFoundError, match="none.pt"):
        resolve_label_source("interpreter", tmp_path / "none.pt")
    with pytest.raises(ValueError, match="label_source"):
        resolve_label_source("person", path)
    with pytest.raises(ValueError, match="drop_fraction"):
        InterpreterDatasetFactory(generator, path, tmp_path / "out", drop_fraction=1.0)


def test_interpreter_factory_labels_image_mode_generators(tmp_path: Path) -> None:
    """An image-mode generator has no masks of its own: the interpreter is its only label source."""
    image_only = _export_generator(tmp_path / "image.pt", mode="image")
    manifest = export_for_annotation(image_only, tmp_path / "annotation", num_samples=3, save_png=False)
    assert not manifest["auto_labels"]
    labels = tmp_path / "annotation" / "labels"
    labels.mkdir()
    for i in manifest["ids"]:  # an "annotator" who labels the bright half of each image
        image = np.asarray(nib.load(str(tmp_path / "annotation" / "images" / f"{i}_image.nii.gz")).dataobj)
        _label(labels / f"{i}_label.nii.gz", (image > np.median(image)).astype(np.uint8))
    path = tmp_path / "interpreter.pt"
    train_interpreter_from_annotations(
        image_only, tmp_path / "annotation", labels, path, num_members=2, hidden_channels=(8, 4), epochs=1,
        pixels_per_image=32,
    )  # fmt: skip
    factory = InterpreterDatasetFactory(image_only, path, tmp_path / "out", num_samples=5, batch_size=2,
                                        shard_size=2, drop_fraction=0.2, dedup=False)  # fmt: skip
    summary = factory.run()
    assert summary["num_generated"] == 5 and summary["num_dropped_uncertain"] == 1 and summary["num_kept"] == 4
    datalist = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert datalist["labels"] == {"0": "bg", "1": "fg"} and datalist["numTraining"] == 4
    image = np.asarray(nib.load(str(tmp_path / "out" / datalist["training"][0]["image"])).dataobj)
    assert image.shape == (16, 16) and np.abs(image).max() <= 1.0  # the image channel only, clamped
