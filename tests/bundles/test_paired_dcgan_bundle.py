"""The paired_dcgan bundle, started the way a user starts it: ``monai.bundle run ...`` (in-process, see
``bundle_helpers.bundle``; the command line itself is smoke-tested in ``test_cli_smoke.py``).

One tiny phantom training run (32 x 32, a few iterations) is shared by the module; the other tests
generate from it, resume it, and feed it bad input.
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
from bundle_helpers import PNG_MAGIC, REPO, SCHEMA
from bundle_helpers import bundle as _bundle
from bundle_helpers import failed_with as _failed_with
from bundle_helpers import ok as _ok
from bundle_helpers import with_overrides as _with
from monai.data import load_decathlon_datalist

CONFIGS = REPO / "bundles" / "paired_dcgan" / "configs"

TINY = [
    "--image_size", "32", "--latent_dim", "8", "--generator_channels", "[16, 8]",
    "--discriminator_channels", "[8, 16]", "--batch_size", "4", "--phantom_samples", "6",
    "--max_epochs", "2", "--iterations_per_epoch", "2", "--sample_interval", "2", "--checkpoint_interval", "2",
    "--log_interval", "1", "--num_grid_samples", "4", "--device", "cpu",
]  # fmt: skip


def _run(config: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return _bundle(["run", "--config_file", str(CONFIGS / config), *overrides], cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny phantom run with MLflow on a real local store."""
    run_dir = tmp_path_factory.mktemp("paired_dcgan") / "run"
    _ok(
        _run(
            "train.json",
            *TINY,
            "--output_dir",
            str(run_dir),
            "--mlflow_tracking_uri",
            f"sqlite:///{run_dir}/mlflow.db",
            cwd=run_dir.parent,
        )
    )
    return run_dir


def test_train_writes_checkpoint_generator_grids_summary_and_mlflow(trained: Path) -> None:
    checkpoint = torch.load(trained / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["iteration"] == 4
    # issue 16 changed the defaults: generator EMA (exported) and ADA are on, so their states are checkpointed too
    assert set(checkpoint["states"]) == {
        "generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", "generator_ema", "augment", "ada",
    }  # fmt: skip
    exported = torch.load(trained / "generator.pt", weights_only=True)
    for key, value in exported["state_dict"].items():  # the EMA generator is what is exported
        assert torch.equal(value, checkpoint["states"]["generator_ema"][key]), key
    assert any(
        not torch.equal(value, checkpoint["states"]["generator"][key]) for key, value in exported["state_dict"].items()
    )
    assert exported["config"]["generator"]["channels"] == [16, 8]
    assert exported["config"]["data"]["num_classes"] == 6  # phantom: background + 5 organs
    assert exported["config"]["generator"]["out_channels"] == 7  # 1 image + 6 one-hot mask channels
    grids = sorted(p.name for p in (trained / "samples").glob("*.png"))
    assert {"iteration_0000002.png", "iteration_0000004.png", "latest.png"} <= set(grids), grids
    assert (trained / "samples" / "latest.png").read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["iterations_total"] == 4 and summary["images_per_second"] > 0
    quality = summary["quality"]["history"][-1]  # evaluated at the end of training
    assert quality["iteration"] == 4 and 0 <= quality["dup_rate"] <= 1 and quality["diversity"] > 0
    assert (trained / "samples" / "quality.png").read_bytes()[:8] == PNG_MAGIC
    assert (trained / "mlflow.db").stat().st_size > 0


def test_mlflow_store_holds_the_run(trained: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{trained}/mlflow.db")
    experiment = client.get_experiment_by_name("paired_dcgan")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert runs[0].data.params["image_size"] == "32"
    assert {"g_loss", "d_loss"} <= set(runs[0].data.metrics)


def test_generate_writes_nifti_pairs_datalist_and_manifest(trained: Path) -> None:
    _ok(
        _run(
            "generate.json",
            "--output_dir",
            str(trained),
            "--num_samples",
            "6",
            "--shard_size",
            "4",
            "--batch_size",
            "4",
            "--device",
            "cpu",
            cwd=trained,
        )
    )
    generated = trained / "generated"
    items = load_decathlon_datalist(str(generated / "datalist.json"), data_list_key="training", base_dir=str(generated))
    manifest = json.loads((generated / "manifest.json").read_text())
    assert len(items) == manifest["summary"]["num_kept"] == sum(p["kept"] for p in manifest["pairs"])
    for item in items:
        image = nib.load(item["image"]).get_fdata()
        label = nib.load(item["label"]).get_fdata()
        assert image.shape[:2] == (32, 32) and label.shape[:2] == (32, 32)
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert set(np.unique(label)) <= set(range(6))
    assert [p["seed"] for p in manifest["pairs"]] == [0, 1, 2, 3, 4, 5]  # seed * 1e6 + index, seed 0
    assert all(0.0 <= p["postprocess_change"] <= 1.0 and "duplicate_of" in p for p in manifest["pairs"])

    # idempotent: running the same request again writes nothing new and changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in (generated / "pairs").iterdir()}
    _ok(
        _run(
            "generate.json",
            "--output_dir",
            str(trained),
            "--num_samples",
            "6",
            "--shard_size",
            "4",
            "--batch_size",
            "4",
            "--device",
            "cpu",
            cwd=trained,
        )
    )
    assert {p.name: p.stat().st_mtime_ns for p in (generated / "pairs").iterdir()} == before

    # a different generated set into the same folder is refused, nothing overwritten
    refused = _run(
        "generate.json",
        "--output_dir",
        str(trained),
        "--num_samples",
        "6",
        "--seed",
        "7",
        "--device",
        "cpu",
        cwd=trained,
    )
    _failed_with(refused, "generated")
    assert {p.name: p.stat().st_mtime_ns for p in (generated / "pairs").iterdir()} == before


def test_inference_evaluator_writes_one_pair_per_seed(trained: Path) -> None:
    out = trained / "infer"
    _ok(
        _run(
            "inference.json",
            "--output_dir",
            str(trained),
            "--inference_dir",
            str(out),
            "--first_seed",
            "3",
            "--num_samples",
            "3",
            "--batch_size",
            "2",
            "--device",
            "cpu",
            cwd=trained,
        )
    )
    labels = sorted(p.name for p in out.glob("*_label.nii.gz"))
    assert labels == [f"seed_{s:08d}_label.nii.gz" for s in (3, 4, 5)]
    assert len(list(out.glob("*.png"))) >= 3


def test_resume_extends_the_run_and_other_config_is_refused(trained: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained / "checkpoints", run_dir / "checkpoints")
    _ok(_run("train.json", *_with(TINY, max_epochs="3"), "--output_dir", str(run_dir), cwd=tmp_path))
    assert torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=True)["iteration"] == 6

    before = (run_dir / "checkpoints" / "checkpoint_last.pt").read_bytes()
    _failed_with(
        _run("train.json", *_with(TINY, generator_channels="[32, 8]"), "--output_dir", str(run_dir), cwd=tmp_path),
        "another configuration",
        "channels",
    )
    _failed_with(
        _run("train.json", *TINY, "--resume", "False", "--output_dir", str(run_dir), cwd=tmp_path),
        "refusing to overwrite",
    )
    assert (run_dir / "checkpoints" / "checkpoint_last.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("overrides", "phrases"),
    [
        (["--image_sise", "32"], ["image_sise"]),
        (["--max_epochs", "many"], ["max_epochs"]),
        (["--image_size", "48"], ["power of two"]),
    ],
)
def test_bad_overrides_are_refused_before_anything_is_written(tmp_path: Path, overrides, phrases) -> None:
    out = tmp_path / "run"
    _failed_with(_run("train.json", *TINY, *overrides, "--output_dir", str(out), cwd=tmp_path), *phrases)
    assert not (out / "checkpoints").exists()


def test_diffaugment_is_an_alternative_to_ada(tmp_path: Path) -> None:
    both = tmp_path / "both"
    _failed_with(
        _run("train.json", *TINY, "--diffaugment", "True", "--output_dir", str(both), cwd=tmp_path),
        "--ada False --diffaugment True",
    )
    run_dir = tmp_path / "diffaugment"
    _ok(
        _run("train.json", *TINY, "--ada", "False", "--diffaugment", "True", "--output_dir", str(run_dir), cwd=tmp_path)
    )
    checkpoint = torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["iteration"] == 4 and "ada" not in checkpoint["states"]  # no ADA controller, nothing to tune
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["last_output"]["ada_p"] == 0.0 and "real_sign" in summary["last_output"]  # D saw augmented pairs


def test_generate_refuses_a_constant_generator_unless_allowed(trained: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "constant"
    run_dir.mkdir()
    exported = torch.load(trained / "generator.pt", weights_only=True)
    exported["state_dict"]["project.weight"].zero_()  # no path from the latent: every sample is the same pair
    torch.save(exported, run_dir / "generator.pt")
    common = ["--output_dir", str(run_dir), "--num_samples", "8", "--device", "cpu"]
    _failed_with(_run("generate.json", *common, cwd=tmp_path), "collapsed", "--allow_duplicates True")
    assert not (run_dir / "generated").exists()
    _ok(_run("generate.json", *common, "--allow_duplicates", "True", cwd=tmp_path))
    manifest = json.loads((run_dir / "generated" / "manifest.json").read_text())
    assert manifest["summary"]["num_kept"] == 1  # what generating quietly would have given


def test_missing_generator_is_named(tmp_path: Path) -> None:
    _failed_with(
        _run("generate.json", "--output_dir", str(tmp_path / "nothing"), "--device", "cpu", cwd=tmp_path),
        "generator.pt",
    )


def test_metadata_verifies_against_the_bundle_schema(tmp_path: Path) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} is absent")
    _ok(
        _bundle(
            ["verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA)], cwd=tmp_path
        )
    )


def test_trains_on_shenzhen_as_is(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cxr"
    overrides = [a for a in TINY if a not in ("--phantom_samples", "6")]
    _ok(
        _run(
            "train.json",
            *overrides,
            "--dataset_dir",
            str(shared_data / "cxr_shenzhen"),
            "--max_items",
            "8",
            "--output_dir",
            str(out),
            cwd=tmp_path,
        )
    )
    exported = torch.load(out / "generator.pt", weights_only=True)
    assert exported["config"]["data"]["num_classes"] == 2  # anti-aliased 0..255 masks binarised to lung / background
    assert exported["config"]["generator"]["out_channels"] == 2  # grayscale image + one binary mask channel


@pytest.mark.slow
def test_quickstart_main_job_as_in_the_readme(tmp_path: Path) -> None:
    """The paired DCGAN quick-start overlay, unchanged except for the output folder (a few minutes on 2 CPU cores)."""
    out = tmp_path / "quickstart"
    config = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'quickstart.json'}']"
    args = ["run", "--config_file", config, "--output_dir", str(out), "--bundle_root", str(tmp_path)]  # models/ too
    _ok(_bundle(args, cwd=REPO, timeout=1800))
    assert (out / "samples" / "latest.png").read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations_total"] == 1000  # issue 18: 1000 iterations of batch 16 at 32 x 32, R1 5, lr 5e-4
    assert summary["quality"]["history"][-1]["diversity"] >= 0.5
    assert summary["quality"]["history"][-1]["dup_rate"] < 0.05 and summary["quality"]["collapsed"] is None
    manifest = json.loads((out / "generated" / "manifest.json").read_text())
    assert manifest["num_samples"] == 128
    assert manifest["summary"]["duplicate_rate"] < 0.5  # a fully collapsed generator would fail this
    items = load_decathlon_datalist(
        str(out / "generated" / "datalist.json"), data_list_key="training", base_dir=str(out / "generated")
    )
    assert len(items) == manifest["summary"]["num_kept"]
    labels = np.stack([nib.load(item["label"]).get_fdata() for item in items[:16]])
    assert set(np.unique(labels)) == set(range(6))  # every organ appears among the generated masks
