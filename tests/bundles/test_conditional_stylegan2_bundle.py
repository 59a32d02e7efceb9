"""C-SG and MC-SG through the datasetgan bundle (in-process ``monai.bundle run``, see ``bundle_helpers``).

A tiny conditional (C-SG) and a tiny mask-mode (M-SG) run on the 6-class phantom at 32 x 32 are shared
by the module; generation writes M-SG masks alone, MC-SG pairs, and images for the phantom's own masks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import PNG_MAGIC, REPO, bundle, failed_with, ok, with_overrides

from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.utils.export import file_sha256, load_generator

CONFIGS = REPO / "bundles" / "datasetgan" / "configs"

# 12 six-class phantoms, batch 4: 3 iterations per epoch; 0.024 kimg -> 6 iterations
TINY = [
    "--image_size", "32", "--z_dim", "16", "--w_dim", "16", "--channel_base", "256", "--channel_max", "16",
    "--batch_size", "4", "--kimg", "0.024", "--phantom_samples", "12",
    "--r1_interval", "2", "--pl_weight", "2", "--pl_interval", "2", "--ada_interval", "1", "--ada_kimg", "0.1",
    "--sample_interval", "3", "--checkpoint_interval", "3", "--log_interval", "1", "--num_grid_samples", "4",
    "--device", "cpu",
]  # fmt: skip


def _run(config: str, *overrides: str, cwd: Path):
    return bundle(["run", "--config_file", str(CONFIGS / config), *overrides], cwd=cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("csg")
    ok(_run("train.json", *TINY, "--mode", "conditional", "--output_dir", str(root / "csg"), cwd=root))
    ok(_run("train.json", *with_overrides(TINY, kimg="0.012"), "--mode", "mask", "--output_dir", str(root / "msg"),
            cwd=root))  # fmt: skip
    return {"root": root, "csg": root / "csg", "msg": root / "msg"}


def _generate(*overrides: str, cwd: Path):
    return _run("generate.json", "--device", "cpu", "--allow_duplicates", "True", *overrides, cwd=cwd)


def test_conditional_training_exports_grids_and_resumes(runs, tmp_path: Path) -> None:
    csg = runs["csg"]
    exported = torch.load(csg / "generator.pt", weights_only=True)
    assert exported["config"]["generator"]["mode"] == "conditional"
    assert exported["config"]["discriminator"]["mode"] == "conditional"
    assert exported["config"]["generator"]["mask_channels"] == 6 and exported["config"]["data"]["num_classes"] == 6
    summary = json.loads((csg / "summary.json").read_text())
    assert summary["quality"]["history"] and "mask_sanity" not in summary["quality"]["history"][-1]
    grid = csg / "samples" / "latest.png"
    assert grid.read_bytes()[:8] == PNG_MAGIC
    from PIL import Image

    picture = np.asarray(Image.open(grid))
    assert picture.shape == (4 * 32, 5 * 32, 3)  # 4 fixed real masks | 4 latents each
    assert picture[:, :32].std() > 0 and len({picture[:32, k * 32 : (k + 1) * 32].tobytes() for k in range(5)}) == 5
    run_dir = tmp_path / "resumed"
    shutil.copytree(csg / "checkpoints", run_dir / "checkpoints")
    ok(_run("train.json", *with_overrides(TINY, kimg="0.036"), "--mode", "conditional", "--output_dir", str(run_dir),
            cwd=tmp_path))  # fmt: skip
    assert torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=True)["iteration"] == 9


def test_mask_generator_alone_writes_post_processed_masks(runs, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    ok(_generate("--output_dir", str(runs["msg"]), "--generated_dir", str(out), "--num_samples", "3", cwd=tmp_path))
    datalist = json.loads((out / "datalist.json").read_text())
    assert len(datalist["training"]) == 3 and all(set(e) == {"label", "case_id", "seed"} for e in datalist["training"])
    label = nib.load(out / datalist["training"][0]["label"]).get_fdata()
    assert label.shape[:2] == (32, 32) and set(np.unique(label)) <= set(range(6))
    assert not list((out / "pairs").glob("*_image.nii.gz"))


def test_mcsg_writes_pairs_with_both_hashes_and_mask_fidelity(runs, tmp_path: Path) -> None:
    out = tmp_path / "mcsg"
    args = ["--generator", str(runs["csg"] / "generator.pt"), "--mask_generator", str(runs["msg"] / "generator.pt"),
            "--generated_dir", str(out), "--num_samples", "4", "--fidelity_data", "phantom", "--fidelity_epochs", "1"]  # fmt: skip
    ok(_generate(*args, cwd=tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"]["generator_sha256"] == file_sha256(runs["csg"] / "generator.pt")
    assert manifest["fingerprint"]["mask_generator_sha256"] == file_sha256(runs["msg"] / "generator.pt")
    fidelity = [p["mask_fidelity"] for p in manifest["pairs"]]
    assert len(fidelity) == 4 and all(0 <= v <= 1 for v in fidelity)
    assert manifest["summary"]["mask_fidelity"]["num_pairs"] == 4
    for entry in json.loads((out / "datalist.json").read_text())["training"]:
        image, label = nib.load(out / entry["image"]).get_fdata(), nib.load(out / entry["label"]).get_fdata()
        assert image.shape == label.shape == (32, 32) and -1 <= image.min() and image.max() <= 1
        assert set(np.unique(label)) <= set(range(6))
    # a fidelity floor is a run-level choice: the pairs are reused, those below it leave the datalist
    ok(_generate(*args, "--min_mask_fidelity", "1.01", cwd=tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["shards_resumed"] == 1 and manifest["summary"]["num_kept"] == 0
    assert all("below min_mask_fidelity" in p["reason"] for p in manifest["pairs"])


def test_images_for_the_phantoms_own_masks(runs, tmp_path: Path) -> None:
    datalist = write_phantom_dataset(tmp_path / "phantom", 2, image_size=32, seed=5)
    out = tmp_path / "own"
    ok(_generate("--generator", str(runs["csg"] / "generator.pt"), "--masks_from", str(datalist),
                 "--latents_per_mask", "2", "--generated_dir", str(out), cwd=tmp_path))  # fmt: skip
    written = json.loads((out / "datalist.json").read_text())["training"]
    assert len(written) == 4
    given = [
        nib.load(tmp_path / "phantom" / e["label"]).get_fdata() for e in json.loads(datalist.read_text())["training"]
    ]
    labels = [nib.load(out / e["label"]).get_fdata() for e in written]
    images = [nib.load(out / e["image"]).get_fdata() for e in written]
    for k in range(4):  # k latents per mask, the mask written as given
        np.testing.assert_array_equal(labels[k], given[k // 2])
    assert not np.allclose(images[0], images[1])  # two latents, one mask: two images


def test_wrong_generators_and_bad_masks_are_named(runs, tmp_path: Path) -> None:
    csg, msg = runs["csg"] / "generator.pt", runs["msg"] / "generator.pt"
    failed_with(_generate("--generator", str(csg), "--generated_dir", str(tmp_path / "a"), cwd=tmp_path),
                str(csg), "conditional (C-SG)", "--mask_generator")  # fmt: skip
    failed_with(_generate("--generator", str(msg), "--mask_generator", str(msg), "--generated_dir",
                          str(tmp_path / "b"), cwd=tmp_path), str(msg), "not a conditional")  # fmt: skip
    failed_with(_generate("--generator", str(csg), "--mask_generator", str(csg), "--generated_dir",
                          str(tmp_path / "c"), cwd=tmp_path), str(csg), "mask_generator must be a mask-mode")  # fmt: skip
    # a C-SG where a latent-only generator is expected (inference, annotation export), and the reverse
    failed_with(_run("inference.json", "--output_dir", str(runs["csg"]), "--num_samples", "2", "--device", "cpu",
                     cwd=tmp_path), str(csg), "conditional (C-SG)", "unconditional")  # fmt: skip
    with pytest.raises(ValueError, match="is a mask-mode generator, not a conditional"):
        load_generator(msg, conditional=True)
    assert load_generator(csg, conditional=True)[1]["generator"]["mode"] == "conditional"
    folder = tmp_path / "masks"
    folder.mkdir()
    eye = np.eye(4)
    nib.save(nib.Nifti1Image(np.full((32, 32), 7, np.uint8), eye), folder / "seven_label.nii.gz")
    failed_with(_generate("--generator", str(csg), "--masks_from", str(folder), "--generated_dir",
                          str(tmp_path / "d"), cwd=tmp_path), "seven_label.nii.gz", "6 classes")  # fmt: skip
    (folder / "seven_label.nii.gz").unlink()
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.uint8), eye), folder / "big_label.nii.gz")
    failed_with(_generate("--generator", str(csg), "--masks_from", str(folder), "--generated_dir",
                          str(tmp_path / "e"), cwd=tmp_path), "big_label.nii.gz", "64 x 64", "32 x 32")  # fmt: skip
