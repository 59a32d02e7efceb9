"""Tests of monai_synth.evaluation.tracking: one MLflow run per arm in a real local SQLite store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monai_synth.evaluation.arms import ArmSpec
from monai_synth.evaluation.segmentation import SCORE_NAMES
from monai_synth.evaluation.tracking import StudyTracker

mlflow = pytest.importorskip("mlflow")

ARMS = [ArmSpec("real", "real"), ArmSpec("hybrid_n4", "hybrid", "gan", 4)]


def _arm_result(name: str, dice: float) -> dict:
    summary = {score: {"mean": dice, "std": 0.1} for score in SCORE_NAMES}
    summary["hd95"] = {"mean": float("inf"), "std": float("nan")}  # non-finite values are not logged
    return {"name": name, "summary": {"test_R": summary}, "folds": [{"train_seconds": 1.5}, {"train_seconds": 2.0}]}


def test_one_fresh_run_per_arm_with_summary_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)  # e.g. left by mlflow.set_tracking_uri: the setting wins
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"  # the folder is created
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("study")
    stale = client.create_run(experiment, run_name="real").info.run_id  # left open by an interrupted study

    tracker = StudyTracker(uri, "study", study_tag=str(tmp_path))
    tracker.start(ARMS, {arm.name: {"kind": arm.kind, "network": "UNet"} for arm in ARMS})
    run_ids = tracker.finish([_arm_result("real", 0.5), _arm_result("hybrid_n4", 0.7)])

    assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere and not (tmp_path / "elsewhere.db").exists()
    assert stale not in run_ids and client.get_run(stale).info.status == "RUNNING"
    real = client.get_run(run_ids[0])
    assert real.info.run_name == "real" and real.info.status == "FINISHED"
    assert real.data.tags["monai_synth.study"] == str(tmp_path)
    assert real.data.metrics["test_R_dice_mean"] == pytest.approx(0.5)
    assert real.data.metrics["train_seconds"] == pytest.approx(3.5)
    assert "test_R_hd95_mean" not in real.data.metrics and "test_R_hd95_std" not in real.data.metrics
    assert client.get_run(run_ids[1]).data.metrics["test_R_dice_mean"] == pytest.approx(0.7)


def test_failed_study_marks_its_runs_failed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker(uri, "study", study_tag="x")
    tracker.start(ARMS[:1], {"real": {"kind": "real"}})
    run_id = tracker.handler(ARMS[0]).cur_run.info.run_id
    tracker.fail()
    assert mlflow.MlflowClient(uri).get_run(run_id).info.status == "FAILED"
