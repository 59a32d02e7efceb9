"""``synthetic_evaluation/configs/pipeline.json``: the resumable pipeline from a labelled dataset to a verdict,
run the way a user runs it (``monai.bundle run``, in-process; the kill -9 test starts a real process).

Tiny phantom settings: 2 folds x 2 ``num_real`` x one small paired DCGAN, one-epoch segmentation arms."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bundle_helpers import PNG_MAGIC, REPO, bundle, ok, with_overrides

from monai_synth.data.phantom import write_phantom_dataset

CONFIG = REPO / "bundles" / "synthetic_evaluation" / "configs" / "pipeline.json"
GENERATORS = {
    "dcgan": {
        "bundle": "paired_dcgan",
        "overrides": {
            "latent_dim": 8, "generator_channels": [16, 8], "discriminator_channels": [8, 16], "batch_size": 4,
            "max_epochs": 1, "iterations_per_epoch": 2, "num_grid_samples": 4, "eval_samples": 8, "sample_interval": 2,
        },
        "generate_overrides": {"allow_duplicates": True, "batch_size": 8},
    }
}  # fmt: skip
TINY = [
    "--folds", "2", "--num_real", "[3, null]", "--num_synthetic", "6", "--image_size", "32", "--phantom_samples", "12",
    "--study", "{'max_epochs': 1, 'batch_size': 4}", "--compute_fid", "False", "--diversity_samples", "8",
    "--generators", repr(GENERATORS), "--bundles_dir", str(REPO / "bundles"), "--arms", "['real', 'hybrid']",
]  # fmt: skip


def _args(output_dir: Path, *extra: str) -> list[str]:
    return ["run", "--config_file", str(CONFIG), *TINY, "--output_dir", str(output_dir), *extra]


def _external(first_run: Path) -> list[str]:
    """``--test_datasets``: 4 phantom slices of other seeds beside the first run, standing in for another site."""
    return ["--test_datasets", repr({"site_b": str(first_run.parent / "site_b" / "datalist.json")})]


def _stages(output_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in (output_dir / "stages").iterdir()}


def _ran(output_dir: Path) -> list[str]:
    return [s["stage"] for s in json.loads((output_dir / "summary.json").read_text())["stages"] if s["ran"]]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    """One uninterrupted tiny pipeline run, with MLflow on (its local SQLite store)."""
    cwd = tmp_path_factory.mktemp("pipeline")
    output_dir = cwd / "run"
    write_phantom_dataset(cwd / "site_b", 4, 32, seed=5000)
    mlflow = ["--mlflow_tracking_uri", f"sqlite:///{output_dir}/mlflow.db"]
    ok(bundle(_args(output_dir, *mlflow, *_external(output_dir)), cwd=cwd))
    return output_dir


def test_stages_results_and_report(first_run: Path) -> None:
    stages = _stages(first_run)
    kinds = sorted(name.split("-", 1)[0] for name in stages)
    # data once; per fold x num_real: split, train, generate, diversity, real arm, hybrid arm
    assert kinds.count("data") == 1
    assert all(kinds.count(k) == 4 for k in ("split", "train", "generate", "diversity")), kinds
    assert kinds.count("arm") == 8
    for folder in stages.values():
        content = json.loads((folder / "complete.json").read_text())
        assert folder.name.endswith("-" + content["fingerprint"]) and len(content["fingerprint"]) == 12
    results = json.loads((first_run / "results.json").read_text())
    assert sorted(results["arms"]) == ["hybrid-dcgan_r3_n6", "hybrid-dcgan_rall_n6", "real_r3", "real_rall"]
    for arm in results["arms"].values():
        assert sorted({c["fold"] for c in arm["cases"]["test_R"]}) == [0, 1]
        assert arm["summary"]["test_R"]["num_cases"] == 12  # every phantom case tested once over the 2 folds
    assert results["test_sets"] == ["test_R", "test_R:site_b"]
    for arm in results["arms"].values():  # the external site: its 4 slices scored by each fold's model
        assert arm["summary"]["test_R:site_b"]["num_cases"] == 8
    assert results["statistics"]["test_R"]["3"]["dice"]["test"] == "wilcoxon"
    # the phantom's pixel spacing is known: distances in mm, and the report's tables say so
    assert results["distance_units"]["test_R"] == "mm"
    assert {r["num_real"] for r in results["generators"]["dcgan"]["runs"]} == {3, None}
    for run in results["generators"]["dcgan"]["runs"]:
        assert 0.0 <= run["duplicate_rate"] <= 1.0 and run["diversity_ratio"] >= 0.0
    report = (first_run / "report.md").read_text()
    assert "| Dice | HD95 (mm) | cases |" in report
    # arms are compared at equal optimiser budgets unless --study asks otherwise, and the report says which
    assert results["settings"]["study"]["epoch_length"] == 20
    assert "Equal training budgets: every arm ran 1 epochs of 20 iterations" in report
    first_paragraph = report.split("\n\n")[1]
    assert (
        first_paragraph.startswith("On test_R, ")
        and "synthetic data" in first_paragraph
        and "With 3 real training cases" in first_paragraph
    )
    assert "Wilcoxon" in first_paragraph and "No leakage, by construction" in report
    assert report.split("\n\n")[2].startswith("On test_R:site_b, ")  # one verdict paragraph per test set
    for figure in ("dice_vs_num_real_test_R.png", "paired_cases_test_R.png", "samples_dcgan_f1_r3.png"):
        assert (first_run / "figures" / figure).read_bytes()[:8] == PNG_MAGIC
        assert f"figures/{figure}" in report
    generated = next(p for n, p in stages.items() if n.startswith("generate-dcgan-f0-r3"))
    assert len(json.loads((generated / "generated" / "datalist.json").read_text())["training"]) == 6


def test_leakage_guarantee_from_written_files(first_run: Path) -> None:
    """Each generator read only its fold's first R training cases: never a validation or test case."""
    stages = _stages(first_run)
    checked = 0
    for name, folder in stages.items():
        if not name.startswith("train-"):
            continue
        _, _, fold, r = name.split("-")[:4]
        source = Path(json.loads((folder / "summary.json").read_text())["data"]["source"])
        generator_ids = {i["case_id"] for i in json.loads(source.read_text())["training"]}
        # the study arm of the same fold and R wrote the fold's split (as the study drew it) in its stage
        arm = next(p for n, p in stages.items() if n.startswith(f"arm-real_{r}-{fold}-"))
        split = json.loads((arm / "complete.json").read_text())["outputs"]["fold_split"]
        assert generator_ids <= set(split["training"])
        assert not generator_ids & (set(split["validation"]) | set(split["test"]))
        assert len(generator_ids) == (3 if r == "r3" else len(split["training"]))
        checked += 1
    assert checked == 4
    results = json.loads((first_run / "results.json").read_text())
    assert results["leakage_check"]["ok"] and len(results["leakage_check"]["checks"]) == 4


def test_mlflow_parent_run_with_nested_stage_runs(first_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{first_run}/mlflow.db")
    experiment = client.get_experiment_by_name("synthetic_evaluation_pipeline")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in nested) == sorted(_stages(first_run))


def test_rerun_skips_every_stage_and_gives_the_same_results(first_run: Path, tmp_path: Path) -> None:
    before = (first_run / "results.json").read_bytes()
    ok(bundle(_args(first_run, "--mlflow_tracking_uri", "None", *_external(first_run)), cwd=tmp_path))
    assert _ran(first_run) == []
    assert (first_run / "results.json").read_bytes() == before


def test_interrupted_stages_are_redone_and_give_the_same_results(first_run: Path, tmp_path: Path) -> None:
    """A run killed inside a generator's training and inside an arm: no complete.json, a half-written file."""
    output_dir = tmp_path / "copy"
    shutil.copytree(first_run, output_dir)
    stages = _stages(output_dir)
    train = next(p for n, p in stages.items() if n.startswith("train-dcgan-f1-rall"))
    arm = next(p for n, p in stages.items() if n.startswith("arm-hybrid-dcgan_rall_n6-f1"))
    for folder in (train, arm):
        (folder / "complete.json").unlink()
    (train / "generator.pt").write_bytes(b"half a file")
    ok(bundle(_args(output_dir, "--mlflow_tracking_uri", "None", *_external(first_run)), cwd=tmp_path))
    assert sorted(_ran(output_dir)) == sorted([train.name, arm.name])
    assert (output_dir / "results.json").read_bytes() == (first_run / "results.json").read_bytes()


def test_changed_num_synthetic_reruns_only_generation_and_arms(first_run: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "copy"
    shutil.copytree(first_run, output_dir)
    args = with_overrides(_args(output_dir, "--mlflow_tracking_uri", "None", *_external(first_run)), num_synthetic="8")
    ok(bundle(args, cwd=tmp_path))
    ran = _ran(output_dir)
    assert sorted({name.split("-", 1)[0] for name in ran}) == ["arm", "generate"]
    assert len(ran) == 8 and all(name.startswith(("generate-", "arm-hybrid-")) for name in ran)
    results = json.loads((output_dir / "results.json").read_text())
    assert sorted(results["arms"]) == ["hybrid-dcgan_r3_n8", "hybrid-dcgan_rall_n8", "real_r3", "real_rall"]
    old = json.loads((first_run / "results.json").read_text())
    assert results["arms"]["real_r3"]["cases"] == old["arms"]["real_r3"]["cases"]  # the real arms were kept


def test_bad_generator_recipe_is_refused_before_anything_runs(tmp_path: Path) -> None:
    recipe = {"sg2": {"bundle": "datasetgan", "overrides": {"kimg": 1.0}}}
    result = bundle(with_overrides(_args(tmp_path / "out"), generators=repr(recipe)), cwd=tmp_path)
    assert result.returncode != 0 and "'mode': 'paired'" in result.stdout + result.stderr
    assert not (tmp_path / "out" / "stages").exists()


@pytest.mark.slow
def test_kill_9_during_generator_training_then_rerun_gives_the_same_results(tmp_path: Path) -> None:
    """A real process killed (SIGKILL) while a generator trains; the same command then finishes the run."""
    slow = json.loads(json.dumps(GENERATORS))
    slow["dcgan"]["overrides"]["iterations_per_epoch"] = 400  # seconds per generator: time to kill it
    args = with_overrides(_args(tmp_path / "killed", "--mlflow_tracking_uri", "None"), generators=repr(slow))
    reference = with_overrides(_args(tmp_path / "reference", "--mlflow_tracking_uri", "None"), generators=repr(slow))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "monai.bundle", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    target = None
    while time.monotonic() < deadline and target is None:
        stages = (tmp_path / "killed" / "stages").glob("train-dcgan-f0-rall-*")
        target = next((p for p in stages if (p / "samples").is_dir() and not (p / "complete.json").exists()), None)
        time.sleep(0.2)
    assert target is not None, "the pipeline never reached the second generator's training"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (target / "complete.json").exists()
    ok(bundle(args, cwd=tmp_path))
    assert target.name in _ran(tmp_path / "killed")
    ok(bundle(reference, cwd=tmp_path))
    killed = (tmp_path / "killed" / "results.json").read_bytes()
    assert killed == (tmp_path / "reference" / "results.json").read_bytes()


@pytest.mark.slow
def test_quickstart_generators_are_not_collapsed(tmp_path: Path) -> None:
    """README command 1 (the pipeline quick-start on the phantom): varied generators, pairs, grids, report."""
    quickstart = REPO / "bundles" / "synthetic_evaluation" / "configs" / "quickstart.json"
    output_dir = tmp_path / "quickstart"
    ok(bundle(["run", "--config_file", f"['{CONFIG}','{quickstart}']", "--output_dir", str(output_dir)], cwd=tmp_path))
    summary = json.loads((output_dir / "summary.json").read_text())
    runs = summary["diversity"]["dcgan"]["runs"]
    assert len(runs) == 2
    for run in runs:
        assert run["num_generated_images"] == 64 and run["num_real_images"] == 64
        assert run["diversity_ratio"] >= 0.5 and run["duplicate_rate"] <= 0.05, run
    report = (output_dir / "report.md").read_text()
    assert "samples_dcgan_f0_r10.png" in report and "dice_vs_num_real_test_R.png" in report
    generated = list((output_dir / "stages").glob("generate-dcgan-f0-r10-*/generated/datalist.json"))
    assert len(json.loads(generated[0].read_text())["training"]) == 200


def test_finetune_arm_through_the_pipeline(tmp_path: Path) -> None:
    """``--arms "['real','finetune']"``: one fold, one R; the verdict compares the finetune arm with real_r3."""
    output_dir = tmp_path / "finetune"
    args = with_overrides(_args(output_dir), folds="1", num_real="[3]", arms="['real','finetune']")
    ok(bundle(args, cwd=tmp_path))
    results = json.loads((output_dir / "results.json").read_text())
    assert sorted(results["arms"]) == ["finetune-dcgan_r3_n6", "real_r3"]
    finetune, real = results["arms"]["finetune-dcgan_r3_n6"], results["arms"]["real_r3"]
    assert finetune["kind"] == "finetune" and finetune["num_synthetic"] == 6
    assert finetune["summary"]["test_R"]["num_cases"] == real["summary"]["test_R"]["num_cases"] > 0
    (steps,) = finetune["optimizer_steps"]
    (real_steps,) = real["optimizer_steps"]
    # equal budgets: 1 epoch of 20 iterations for the fine-tune stage and for real_r3; pre-training on top
    assert steps == {"pretraining": 20, "finetuning": 20, "total": 40} and real_steps == {"total": 20}
    assert "finetune-dcgan_r3_n6" in results["statistics"]["test_R"]["3"]["dice"]["methods"]
    verdict = results["verdict"]["test_R"]
    assert "pre-training on 6 dcgan pairs, then fine-tuning on the real cases" in verdict
    assert "With 3 real training cases" in verdict
    report = (output_dir / "report.md").read_text()
    assert "Finetune arms: the fine-tune stage had the same budget as the real arm of the same R" in report
    assert "pre-training steps on the generated pairs (the synthetic arm's training) came on top" in report
    assert (output_dir / "figures" / "paired_cases_test_R.png").read_bytes()[:8] == PNG_MAGIC


def test_verdict_counts_a_finetune_arm_like_a_hybrid_arm() -> None:
    from monai_synth.evaluation.pipeline_report import verdicts

    def arm(kind: str, dice: float) -> dict:
        steps = [{"pretraining": 40, "finetuning": 20, "total": 60}] if kind == "finetune" else [{"total": 20}]
        summary = {"test_R": {"dice": {"mean": dice}}}
        return {"kind": kind, "generator": "dcgan", "num_real": 30, "num_synthetic": 500, "summary": summary,
                "optimizer_steps": steps}  # fmt: skip

    stats = {"test": "wilcoxon", "n_cases": 40, "pairwise_p": {"finetune-dcgan_r30_n500": {"real_r30": 0.001}},
             "outcome": {"finetune-dcgan_r30_n500": {"real_r30": "better"}}}  # fmt: skip
    results = {
        "arms": {"real_r30": arm("real", 0.80), "finetune-dcgan_r30_n500": arm("finetune", 0.85)},
        "statistics": {"test_R": {"30": {"dice": stats}}},
        "settings": {"folds": 1},
        "test_sets": ["test_R"],
    }
    text = verdicts(results)["test_R"]
    assert text.startswith("On test_R, synthetic data helps: dcgan as pre-training with 30 real training cases (+0.050")
    assert "the pre-training steps (40 per fold) on top" in text
    stats["outcome"]["finetune-dcgan_r30_n500"]["real_r30"] = "worse"
    assert verdicts(results)["test_R"].startswith("On test_R, synthetic data does not help; it hurts: dcgan as")
