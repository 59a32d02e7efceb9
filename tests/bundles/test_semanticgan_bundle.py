"""The semanticgan bundle through ``monai.bundle run`` (in-process, see ``bundle_helpers.bundle``): semi-supervised
training with resume and MLflow, encoder training, segmentation of real images with scores, generated pairs.

One tiny run on PNG folders (6 labelled pairs, 8 unlabelled images, 32 x 32) is shared by the module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import PNG_MAGIC, REPO, SCHEMA, bundle, failed_with, ok, with_overrides
from PIL import Image

CONFIGS = REPO / "bundles" / "semanticgan" / "configs"

# 14 real images, batch 4: 3 iterations per epoch; 0.024 kimg -> 2 epochs = 6 iterations
TINY = [
    "--image_size", "32", "--z_dim", "16", "--w_dim", "16", "--channel_base", "256", "--channel_max", "16",
    "--batch_size", "4", "--labelled_batch_size", "2", "--kimg", "0.024", "--r1_interval", "2", "--pl_interval", "2",
    "--ada_interval", "1", "--ada_kimg", "0.1", "--sample_interval", "3", "--checkpoint_interval", "3",
    "--log_interval", "1", "--num_grid_samples", "4", "--device", "cpu",
]  # fmt: skip


def _run(config: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return bundle(["run", "--config_file", str(CONFIGS / config), *overrides], cwd=cwd)


def _write(folder: Path, n: int, masks: bool, seed: int = 0) -> Path:
    """Disc-on-noise pictures (40 x 40 PNG), with their disc masks when ``masks``."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    if masks:
        (folder / "masks").mkdir()
    yy, xx = np.mgrid[:40, :40]
    for i in range(n):
        cy, cx, r = rng.integers(14, 26), rng.integers(14, 26), rng.integers(6, 12)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        image = np.clip(rng.normal(60, 20, (40, 40)) + 140 * disc, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"case_{seed}_{i}.png")
        if masks:
            Image.fromarray((disc * 255).astype(np.uint8)).save(folder / "masks" / f"case_{seed}_{i}.png")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("semanticgan_data")
    return _write(root / "labelled", 6, masks=True), _write(root / "unlabelled", 8, masks=False, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    """A finished tiny semi-supervised run with MLflow on a real local store."""
    labelled, unlabelled = data
    run_dir = tmp_path_factory.mktemp("semanticgan") / "run"
    uri = f"sqlite:///{run_dir}/mlflow.db"
    ok(_run("train.json", *TINY, "--dataset_dir", str(labelled), "--unlabelled_dir", str(unlabelled),
            "--output_dir", str(run_dir), "--mlflow_tracking_uri", uri, cwd=run_dir.parent))  # fmt: skip
    return run_dir


def test_train_uses_both_halves_and_writes_checkpoint_export_grids(trained: Path) -> None:
    checkpoint = torch.load(trained / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["iteration"] == 6
    assert {"generator", "discriminator", "mask_discriminator", "generator_ema", "mask_optimizer", "augment",
            "mask_augment", "ada", "mask_ada", "trainer"} <= set(checkpoint["states"])  # fmt: skip
    assert 0 < float(checkpoint["states"]["mask_augment"]["p"]) <= 1  # paired ADA for D_m ran
    exported = torch.load(trained / "generator.pt", weights_only=True)
    config = exported["config"]
    assert config["generator_class"].endswith("SemanticStyleGAN2Generator")
    assert config["generator"]["num_classes"] == 2 and config["discriminator"]["mode"] == "image"
    assert config["mask_discriminator"]["mode"] == "paired" and config["detach_mask_input"] is True
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["data"]["num_labelled"] == 6 and summary["data"]["num_unlabelled"] == 8
    assert {"g_loss", "g_mask_loss", "d_loss", "mask_d_loss", "mask_real_sign"} <= set(summary["last_output"])
    assert (trained / "samples" / "latest.png").read_bytes()[:8] == PNG_MAGIC


def test_mlflow_store_holds_the_run(trained: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{trained}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("semanticgan").experiment_id])
    assert len(runs) == 1 and runs[0].data.params["num_unlabelled"] == "8"
    assert {"g_loss", "g_mask_loss", "d_loss", "mask_d_loss"} <= set(runs[0].data.metrics)


def test_resume_continues_the_run_and_other_config_is_refused(trained: Path, data, tmp_path: Path) -> None:
    labelled, unlabelled = data
    run_dir = tmp_path / "run"
    shutil.copytree(trained / "checkpoints", run_dir / "checkpoints")
    common = ["--dataset_dir", str(labelled), "--unlabelled_dir", str(unlabelled), "--output_dir", str(run_dir)]
    ok(_run("train.json", *with_overrides(TINY, kimg="0.036"), *common, cwd=tmp_path))
    assert torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=True)["iteration"] == 9
    before = (run_dir / "checkpoints" / "checkpoint_last.pt").read_bytes()
    failed_with(_run("train.json", *with_overrides(TINY, channel_max="32"), *common, cwd=tmp_path),
                "another configuration")  # fmt: skip
    assert (run_dir / "checkpoints" / "checkpoint_last.pt").read_bytes() == before


def test_encoder_segment_and_generate(trained: Path, data, tmp_path: Path) -> None:
    labelled, unlabelled = data
    run = ["--output_dir", str(trained), "--device", "cpu"]
    ok(_run("train_encoder.json", *run, "--dataset_dir", str(labelled), "--unlabelled_dir", str(unlabelled),
            "--encoder_steps", "4", "--encoder_batch_size", "2", cwd=tmp_path))  # fmt: skip
    encoder_summary = json.loads((trained / "encoder_summary.json").read_text())
    assert encoder_summary["num_unlabelled"] == 8 and encoder_summary["perceptual"] is True
    test_images = _write(tmp_path / "test", 3, masks=True, seed=2)
    out = tmp_path / "segmentation"
    ok(_run("segment.json", *run, "--dataset_dir", str(test_images), "--segmentation_dir", str(out),
            "--projection_steps", "3", cwd=tmp_path))  # fmt: skip
    result = json.loads((out / "segmentation.json").read_text())
    assert result["num_images"] == 3 and result["encoder"] is True and 0.0 <= result["dice"] <= 1.0
    assert len(result["images"]) == 3 and all({"dice", "hd95"} <= set(r) for r in result["images"])
    finite = [r["hd95"] for r in result["images"] if np.isfinite(r["hd95"])]
    assert result["hd95_missing"] == 3 - len(finite)
    assert (np.isnan(result["hd95"]) and not finite) or result["hd95"] == pytest.approx(np.mean(finite), abs=1e-4)
    label = nib.load(sorted(out.glob("*_label.nii.gz"))[0]).get_fdata()
    assert label.shape[:2] == (32, 32) and set(np.unique(label)) <= {0.0, 1.0}
    # unlabelled images segment too, without scores
    unlabelled_out = tmp_path / "unlabelled_segmentation"
    ok(_run("segment.json", *run, "--dataset_dir", str(unlabelled), "--segmentation_dir", str(unlabelled_out),
            "--projection_steps", "0", cwd=tmp_path))  # fmt: skip
    assert "dice" not in json.loads((unlabelled_out / "segmentation.json").read_text())
    generated = tmp_path / "generated"
    ok(_run("generate.json", *run, "--generated_dir", str(generated), "--num_samples", "4", "--batch_size", "4",
            "--allow_duplicates", "True", cwd=tmp_path))  # fmt: skip
    datalist = json.loads((generated / "datalist.json").read_text())["training"]
    assert len(datalist) >= 1 and all((generated / d["label"]).is_file() for d in datalist)


def test_empty_or_mismatched_unlabelled_data_is_named(data, tmp_path: Path) -> None:
    labelled, _ = data
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    out = tmp_path / "o"
    failed_with(_run("train.json", *TINY, "--dataset_dir", str(labelled), "--unlabelled_dir", str(empty),
                     "--output_dir", str(out), cwd=tmp_path), "unlabelled_dir", str(empty), "no image files")  # fmt: skip
    rgb = tmp_path / "rgb"
    (rgb / "images").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(rgb / "images" / f"c{i}.png")
    failed_with(_run("train.json", *TINY, "--dataset_dir", str(labelled), "--unlabelled_dir", str(rgb),
                     "--output_dir", str(out), cwd=tmp_path), "unlabelled_dir", "3-channel", "1-channel")  # fmt: skip
    assert not (out / "checkpoints").exists()


def test_metadata_verifies_against_the_bundle_schema(tmp_path: Path) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} is absent")
    ok(bundle(["verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA)],
              cwd=tmp_path))  # fmt: skip
