"""Tests of monai_synth.evaluation.study: arms, bad input, summaries, statistics, a tiny study with MLflow."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.evaluation.arms import plan_arms
from monai_synth.evaluation.config import StudyConfig
from monai_synth.evaluation.statistics import compare_arms, summarize_cases
from monai_synth.evaluation.study import SyntheticEvaluationStudy, _generated_intensity
from monai_synth.utils.io import read_json, save_nifti_atomic, write_json_atomic

_INIT_FIELDS = {f.name for f in fields(StudyConfig) if f.init}
TINY = {"image_size": 32, "max_epochs": 1, "batch_size": 4, "compute_fid": False, "figures": False, "device": "cpu"}


class PooledFeatures:
    """Stand-in for the Inception extractor: 16-d average-pooled pixels (fast, deterministic)."""

    def __call__(self, images):
        images = torch.as_tensor(images, dtype=torch.float32)
        return torch.nn.functional.adaptive_avg_pool2d(images[:, :1], 4).flatten(1).double()

    def preprocessing_info(self) -> dict:
        return {"network": "4 x 4 average pooling (test stand-in)"}


# ---------------------------------------------------------------------------------------------------
# arms
# ---------------------------------------------------------------------------------------------------
def test_plan_arms_names_and_order() -> None:
    arms = plan_arms(["hybrid", "real", "synthetic"], [20, 5], {"gan": 30}, augmentation=[False, True])
    names = [a.name for a in arms]
    assert names == [
        "real", "synthetic_n5", "synthetic_n20", "hybrid_n5", "hybrid_n20",
        "real+aug", "synthetic_n5+aug", "synthetic_n20+aug", "hybrid_n5+aug", "hybrid_n20+aug",
    ]  # fmt: skip
    assert arms[3].kind == "hybrid" and arms[3].num_synthetic == 5 and arms[3].synthetic_set == "gan"


def test_plan_arms_several_sets_and_whole_pool() -> None:
    arms = plan_arms(["synthetic"], [], {"a": 7, "b": 9})
    assert [(a.name, a.num_synthetic) for a in arms] == [("synthetic-a_n7", 7), ("synthetic-b_n9", 9)]


@pytest.mark.parametrize(
    "arms,sizes,pools,message",
    [
        (["real", "gan"], [], {}, "subset of"),
        (["hybrid"], [10], {}, "need a generated set"),
        (["hybrid"], [50], {"gan": 40}, "has only 40 pair"),
        (["hybrid"], [0], {"gan": 40}, "num_synthetic"),
    ],
)
def test_plan_arms_errors(arms, sizes, pools, message) -> None:
    with pytest.raises(ValueError, match=message):
        plan_arms(arms, sizes, pools)


# ---------------------------------------------------------------------------------------------------
# settings: typed values, checked by StudyConfig
# ---------------------------------------------------------------------------------------------------
def test_settings_are_typed_and_recorded_as_given(tmp_path: Path) -> None:
    study = SyntheticEvaluationStudy(
        tmp_path, compute_fid=False, augmentation=True, num_synthetic=[50], arms=["real", "hybrid"], image_size=32
    )
    config = study.config
    assert config.compute_fid is False and config.augmentation == [True] and config.num_synthetic == [50]
    assert (
        config.arms == ["real", "hybrid"] and config.synthetic_datalist is None and config.output_dir == str(tmp_path)
    )
    recorded = asdict(config)
    assert recorded["hausdorff_units"].startswith("pixels at 32 x 32, or mm") and recorded["optimizer"] == "Adam"
    assert StudyConfig(**{k: v for k, v in recorded.items() if k in _INIT_FIELDS}) == config
    # a StudyConfig, with or without changes, builds the same study
    assert SyntheticEvaluationStudy(config).config is config
    assert SyntheticEvaluationStudy(config, folds=3).config.folds == 3 and config.folds == 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"compute_fid": "false"}, r"--compute_fid must be true or false, got 'false' \(str\)"),
        ({"augmentation": "[false, true]"}, "--augmentation must be true, false or a list of them"),
        ({"arms": "real,hybrid"}, "--arms must be a non-empty list"),
        ({"arms": ["real", "gan"]}, "--arms must be a non-empty subset"),
        ({"num_synthetic": "50"}, "--num_synthetic must be a list of integers"),
        ({"num_synthetic": [0, 5]}, "--num_synthetic must hold sizes >= 1"),
        ({"folds": 0}, "--folds must be >= 1, got 0"),
        ({"folds": "3"}, "--folds must be an integer"),
        ({"max_epochs": True}, "--max_epochs must be an integer"),
        ({"val_fraction": -0.1}, r"--val_fraction must be in \[0, 1\)"),
        ({"network_kwargs": "{}"}, "--network_kwargs must be a mapping"),
        ({"synthetic_datalist": 3}, "--synthetic_datalist must be a path"),
        ({"folds": 2, "fold": 2}, r"--fold must be null or an integer in \[0, folds=2\)"),
    ],
)
def test_settings_of_the_wrong_type_or_range_are_refused_by_name(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudyConfig(output_dir=str(tmp_path), **kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"compute_fid": "maybe"}, "compute_fid"),
        ({"folds": 0}, "folds"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"loss": "focal"}, "loss"),
        ({"learning_rate": 0}, "learning_rate"),
    ],
)
def test_bad_settings_raise(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticEvaluationStudy(tmp_path, **kwargs)


# ---------------------------------------------------------------------------------------------------
# bad data
# ---------------------------------------------------------------------------------------------------
def test_too_few_cases_for_the_folds(tmp_path: Path) -> None:
    study = SyntheticEvaluationStudy(tmp_path, arms=["real"], phantom_samples=3, folds=5, **TINY)
    with pytest.raises(ValueError, match=r"3 case\(s\)\) with folds=5"):
        study.run()
    assert not (tmp_path / "results.json").exists()


def test_leakage_between_generated_training_pairs_and_real_test_is_refused(tmp_path: Path) -> None:
    real = write_phantom_dataset(tmp_path / "real", 8, image_size=32, seed=0)
    study = SyntheticEvaluationStudy(
        tmp_path / "out", real_dataset_dir=real, synthetic_datalist=real, arms=["real", "hybrid"], num_synthetic=[6],
        synthetic_test_fraction=0.0, **TINY,
    )  # fmt: skip
    with pytest.raises(ValueError, match="Data leakage"):
        study.run()
    assert not (tmp_path / "out" / "results.json").exists()


def test_generated_sets_are_named_by_a_mapping_or_their_folders(tmp_path: Path) -> None:
    from monai_synth.data import PairedSliceDataset

    a = write_phantom_dataset(tmp_path / "a" / "generated", 4, image_size=32, seed=500)
    b = write_phantom_dataset(tmp_path / "b" / "generated", 4, image_size=32, seed=600)
    real = PairedSliceDataset(None, 32, phantom_samples=6)
    named = SyntheticEvaluationStudy(tmp_path / "o1", synthetic_datalist={"dcgan": a, "stylegan2": b}, **TINY)
    assert list(named._load_generated(real)) == ["dcgan", "stylegan2"]
    unnamed = SyntheticEvaluationStudy(tmp_path / "o2", synthetic_datalist=[a, b], **TINY)
    assert list(unnamed._load_generated(real)) == ["generated", "generated_2"]


def test_generated_label_set_must_match(tmp_path: Path) -> None:
    binary = write_phantom_dataset(tmp_path / "binary", 4, image_size=32, seed=500, binary=True)
    study = SyntheticEvaluationStudy(tmp_path / "out", synthetic_datalist=binary, phantom_samples=6, **TINY)
    with pytest.raises(ValueError, match=r"2 classes .* 6 \(.*mask_mapping"):
        study.run()


def test_generated_label_names_must_match(tmp_path: Path) -> None:
    path = write_phantom_dataset(tmp_path / "renamed", 4, image_size=32, seed=500)
    datalist = read_json(path)
    datalist["labels"] = {"0": "background", "1": "liver", "2": "spleen", "3": "kidney", "4": "aorta", "5": "trachea"}
    write_json_atomic(tmp_path / "renamed" / "named.json", datalist)
    study = SyntheticEvaluationStudy(
        tmp_path / "out", synthetic_datalist=tmp_path / "renamed" / "named.json", phantom_samples=6, **TINY
    )
    with pytest.raises(ValueError, match="names its labels"):
        study.run()


def _write_generated(folder: Path, count: int, channels: int) -> Path:
    """A generated-style set: NIfTI images already in [-1, 1], phantom-like labels 0..5."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(count):
        label = np.zeros((32, 32), dtype=np.uint8)
        for c in range(1, 6):
            label[4 * c : 4 * c + 3, 4:28] = c
        image = rng.uniform(-1, 1, (channels, 32, 32)).astype(np.float32)
        save_nifti_atomic(folder / "pairs" / f"gen{i}_image.nii.gz", image if channels > 1 else image[0])
        save_nifti_atomic(folder / "pairs" / f"gen{i}_label.nii.gz", label[:, :, None] if channels > 1 else label)
        entries.append(
            {
                "image": f"pairs/gen{i}_image.nii.gz",
                "label": f"pairs/gen{i}_label.nii.gz",
                "case_id": f"gen{i}",
                "seed": i,
            }
        )
    return write_json_atomic(folder / "datalist.json", {"training": entries})


def test_generated_channel_count_must_match(tmp_path: Path) -> None:
    generated = _write_generated(tmp_path / "gen", 4, channels=2)
    study = SyntheticEvaluationStudy(tmp_path / "out", synthetic_datalist=generated, phantom_samples=6, **TINY)
    with pytest.raises(ValueError, match=r"2 image channel\(s\) but the real data .* has 1"):
        study.run()


def test_generated_intensity_rule(tmp_path: Path) -> None:
    assert _generated_intensity(str(_write_generated(tmp_path / "gen", 2, channels=1))) == {
        "mode": "fixed",
        "input_range": (-1.0, 1.0),
    }
    assert _generated_intensity(str(write_phantom_dataset(tmp_path / "hu", 2, image_size=32))) == "auto"


# ---------------------------------------------------------------------------------------------------
# summaries and statistics
# ---------------------------------------------------------------------------------------------------
def _records(dice: list[float], hd95: list[float], folds: list[int] | None = None) -> list[dict]:
    folds = folds or [0] * len(dice)
    return [
        {"fold": f, "item_id": f"c{i}", "dice": {"a": d, "b": d}, "dice_mean": d, "iou": {"a": d, "b": d}, "iou_mean": d,
         "hd": {"a": h, "b": h}, "hd_mean": h, "hd95": {"a": h, "b": h}, "hd95_mean": h}
        for i, (d, h, f) in enumerate(zip(dice, hd95, folds))
    ]  # fmt: skip


def test_summarize_cases_over_cases_and_folds() -> None:
    summary = summarize_cases(
        _records([0.5, 0.7, 0.9, 0.9], [1.0, math.inf, 3.0, math.nan], folds=[0, 0, 1, 1]), ["a", "b"]
    )
    assert summary["num_cases"] == 4 and summary["num_folds"] == 2
    assert summary["dice"]["mean"] == pytest.approx(0.75)
    assert summary["dice"]["std"] == pytest.approx(np.std([0.5, 0.7, 0.9, 0.9], ddof=1))
    assert summary["dice"]["over_folds"]["mean"] == pytest.approx(0.75)  # fold means 0.6 and 0.9
    assert summary["dice"]["over_folds"]["std"] == pytest.approx(np.std([0.6, 0.9], ddof=1))
    assert (
        summary["hd95"]["mean"] == pytest.approx(2.0)
        and summary["hd95"]["n_inf"] == 1
        and summary["hd95"]["n_nan"] == 1
    )
    assert summary["dice_per_class"]["b"]["mean"] == pytest.approx(0.75)


def test_compare_arms_friedman_and_wilcoxon() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.7, 12)
    arms = {"good": _records(list(base + 0.2), list(1 + rng.random(12))), "mid": _records(list(base + 0.1), list(2 + rng.random(12))),
            "bad": _records(list(base), list(3 + rng.random(12)))}  # fmt: skip
    dice = compare_arms(arms, "dice")
    # 12 cases ranked good > mid > bad every time: mean ranks 1, 2, 3, Nemenyi critical difference 0.96
    assert dice["test"] == "friedman" and dice["mean_ranks"] == {"good": 1.0, "mid": 2.0, "bad": 3.0}
    assert dice["outcome"]["good"] == {"mid": "better", "bad": "better"} and dice["score"] == {
        "good": 2,
        "mid": 0,
        "bad": -2,
    }
    hd95 = compare_arms(arms, "hd95")
    assert hd95["higher_is_better"] is False and hd95["outcome"]["good"]["bad"] == "better"
    two = compare_arms({"good": arms["good"], "bad": arms["bad"]}, "dice")
    assert two["test"] == "wilcoxon" and two["outcome"]["good"]["bad"] == "better"


def test_compare_arms_drops_undefined_cases_and_single_arm() -> None:
    arms = {"x": _records([0.1, 0.2, 0.3], [1.0, math.nan, 2.0]), "y": _records([0.2, 0.3, 0.4], [1.5, 2.5, 2.5])}
    result = compare_arms(arms, "hd95")
    assert result["dropped_cases"] == 1 and result["n_cases"] == 2
    assert compare_arms({"x": arms["x"]}, "dice")["test"] is None


# ---------------------------------------------------------------------------------------------------
# a tiny study, end to end, with a real local MLflow store
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("study")
    study = SyntheticEvaluationStudy(
        output_dir, phantom_samples=10, phantom_generated_samples=10, num_synthetic=[2, 4], folds=2, val_fraction=0.2,
        compute_fid=True, feature_extractor=PooledFeatures(), mlflow_tracking_uri=f"sqlite:///{output_dir}/mlflow.db",
        **{k: v for k, v in TINY.items() if k != "compute_fid"},
    )  # fmt: skip
    return output_dir, study.run()


def test_tiny_study_results(tiny_study) -> None:
    output_dir, results = tiny_study
    names = [a["name"] for a in results["arms"]]
    assert names == ["real", "synthetic_n2", "synthetic_n4", "hybrid_n2", "hybrid_n4"]
    assert results["test_sets"] == ["test_R", "test_G:phantom_generated"]
    real_cases = {c for s in results["data"]["splits"] for c in s["test"]}
    assert len(real_cases) == 10  # 2 folds: every real case tested exactly once
    for arm in results["arms"]:
        assert len(arm["folds"]) == 2
        assert len(arm["cases"]["test_R"]) == 10 and {c["case_id"] for c in arm["cases"]["test_R"]} == real_cases
        assert len(arm["cases"]["test_G:phantom_generated"]) == 2 * 2  # 2 held-out generated pairs x 2 folds
        case = arm["cases"]["test_R"][0]
        assert set(case["dice"]) == {"left_lung", "right_lung", "heart", "aorta", "trachea"}
        assert 0.0 <= case["dice_mean"] <= 1.0
        assert arm["summary"]["test_R"]["dice"]["n"] + arm["summary"]["test_R"]["dice"]["n_nan"] == 10
    hybrid = results["arms"][4]["folds"][0]
    assert hybrid["num_synthetic_train"] == 4 and hybrid["num_real_train"] > 0
    assert results["arms"][1]["folds"][0]["num_real_train"] == 0
    assert results["statistics"]["test_R"]["dice"]["test"] == "friedman"
    assert results["generative_metrics"]["phantom_generated"]["n_real"] == 10
    assert math.isfinite(results["generative_metrics"]["phantom_generated"]["fid"])
    assert {"torch", "monai", "monai_synth"} <= set(results["versions"]) and results["hardware"]["cpu_count"] >= 1
    report = (output_dir / "report.md").read_text()
    assert "2-fold" in report and "Mean ± std over fold means" in report and "| hybrid_n4 |" in report
    assert (output_dir / "results.json").is_file()


def test_tiny_study_mlflow_runs_are_readable(tiny_study) -> None:
    mlflow = pytest.importorskip("mlflow")
    output_dir, results = tiny_study
    uri = results["mlflow"]["tracking_uri"]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["synthetic_evaluation"])
    finally:
        mlflow.set_tracking_uri(previous)
    assert sorted(runs["tags.mlflow.runName"]) == sorted(a["name"] for a in results["arms"])
    real_run = runs[runs["tags.mlflow.runName"] == "real"].iloc[0]
    expected = results["arms"][0]["summary"]["test_R"]["dice"]["mean"]
    assert real_run["metrics.test_R_dice_mean"] == pytest.approx(expected)
    assert real_run["params.kind"] == "real" and real_run["params.network"] == "UNet"
    assert real_run["status"] == "FINISHED"


def test_tiny_study_mlflow_learning_curves_per_fold(tiny_study) -> None:
    mlflow = pytest.importorskip("mlflow")
    _, results = tiny_study
    client = mlflow.MlflowClient(results["mlflow"]["tracking_uri"])
    for arm, run_id in zip(results["arms"], results["mlflow"]["run_ids"]):
        run = client.get_run(run_id)
        assert run.info.run_name == arm["name"] and run.data.params["arm"] == arm["name"]
        assert run.data.params["num_real_train"] == str(arm["folds"][0]["num_real_train"])
        for fold in arm["folds"]:
            losses = client.get_metric_history(run_id, f"fold{fold['fold']}_train_loss")
            assert [m.step for m in losses] == list(range(1, fold["training"]["epochs_run"] + 1))
            assert [m.value for m in losses] == pytest.approx(fold["training"]["train_loss"])
            dice = client.get_metric_history(run_id, f"fold{fold['fold']}_val_dice")
            assert [(m.step, m.value) for m in dice] == [(e, pytest.approx(d)) for e, d in fold["training"]["val_dice"]]
