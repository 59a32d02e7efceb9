"""Tests of monai_synth.evaluation.report: strict JSON, markdown tables, figures, atomic writing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from monai_synth.evaluation.report import (
    from_json_safe,
    load_results,
    plot_score_vs_num_synthetic,
    render_markdown,
    to_json_safe,
    write_report,
)
from monai_synth.evaluation.statistics import compare_arms, summarize_cases

CLASSES = ["lung", "heart"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cases(dice: list[float], hd95: list[float]) -> list[dict]:
    cases = []
    for i, (d, h) in enumerate(zip(dice, hd95)):
        per_class = {c: d for c in CLASSES}
        distance = {c: h for c in CLASSES}
        cases.append({"fold": 0, "item_id": f"case{i}", "case_id": f"case{i}", "dice": per_class, "dice_mean": d,
                      "iou": per_class, "iou_mean": d, "hd": distance, "hd_mean": h, "hd95": distance, "hd95_mean": h})  # fmt: skip
    return cases


def _arm(name: str, kind: str, n: int, dice: list[float], hd95: list[float]) -> dict:
    cases = {"test_R": _cases(dice, hd95)}
    training = {"epochs_run": 3, "best_epoch": 2, "best_val_dice": 0.8, "stopped_early": False, "train_loss": [0.9, 0.5, 0.4], "val_dice": [[1, 0.5], [2, 0.8], [3, 0.7]], "seconds": 1.5}  # fmt: skip
    return {
        "name": name, "kind": kind, "synthetic_set": None if kind == "real" else "gan", "num_synthetic": n, "augment": False,
        "folds": [{"fold": 0, "num_real_train": 0 if kind == "synthetic" else 10, "num_synthetic_train": n, "num_validation": 2,
                   "training": training, "train_seconds": 1.5, "eval_seconds": 0.25}],
        "cases": cases, "summary": {k: summarize_cases(v, CLASSES) for k, v in cases.items()},
    }  # fmt: skip


def _results() -> dict:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.8, 8)
    arms = [
        _arm("real", "real", 0, list(base + 0.1), list(2 + rng.random(8))),
        _arm("synthetic_n20", "synthetic", 20, list(base), [math.inf] + list(4 + rng.random(7))),
        _arm("hybrid_n20", "hybrid", 20, list(base + 0.12), list(1.5 + rng.random(8))),
        _arm("hybrid_n80", "hybrid", 80, list(base + 0.15), [math.nan] + list(1 + rng.random(7))),
    ]
    statistics = {
        "test_R": {s: compare_arms({a["name"]: a["cases"]["test_R"] for a in arms}, s) for s in ("dice", "hd95")}
    }
    real = {"source": "phantom", "num_items": 10, "num_cases": 10, "image_channels": 1, "num_classes": 3,
            "label_names": {"0": "background", "1": "lung", "2": "heart"}}  # fmt: skip
    config = {"image_size": 32, "network": "UNet", "network_kwargs": {}, "loss": "dice", "learning_rate": 1e-4, "batch_size": 4,
              "max_epochs": 3, "patience": 10, "model_selection": "best validation Dice", "seed": 0, "hausdorff_units": "pixels",
              "compute_fid": True}  # fmt: skip
    return {
        "config": config,
        "data": {"real": real, "class_names": CLASSES, "splits": [{"training": ["a"] * 10, "validation": ["b"] * 2, "test": ["c"] * 8}],
                 "generated": {"gan": {"source": "gen/datalist.json", "summary": {"num_items": 100}, "num_pool": 80, "num_test_G": 20}}},
        "test_sets": ["test_R"],
        "arms": arms,
        "statistics": statistics,
        "generative_metrics": {"gan": {"fid": 12.5, "kid_mean": 0.0123, "kid_std": 0.001, "n_real": 10, "n_fake": 100,
                                       "preprocessing": {"network": "TF-Inception", "input_scaling": "x", "resize_mode": "tf_bilinear"}}},
        "wall_time_seconds": {"training_seconds": 6.0, "total_seconds": 9.0},
        "hardware": {"platform": "test", "cpu_count": 2, "torch_threads": 1, "device": "cpu"},
        "versions": {"torch": "x", "monai": "y", "monai_synth": "z"},
        "mlflow": None,
    }  # fmt: skip


def test_json_safe_round_trip() -> None:
    data = {
        "a": [1.0, math.nan, math.inf, -math.inf],
        "b": np.float32(0.5),
        "c": np.arange(2),
        "d": (np.int64(3), True),
    }
    safe = to_json_safe(data)
    assert safe == {"a": [1.0, None, "inf", "-inf"], "b": 0.5, "c": [0, 1], "d": [3, True]}
    text = json.dumps(safe, allow_nan=False)  # strict JSON
    back = from_json_safe(json.loads(text))
    assert back["a"][2] == math.inf and back["a"][3] == -math.inf and back["a"][1] is None


def test_write_report_files(tmp_path: Path) -> None:
    results = _results()
    samples = {
        "real": (np.zeros((4, 1, 16, 16)), np.ones((4, 1, 16, 16))),
        "gan": (np.zeros((4, 1, 16, 16)), np.zeros((4, 1, 16, 16))),
    }
    written = write_report(results, tmp_path, samples=samples)

    # strict JSON (no NaN/Infinity tokens) that parses back, with the figures listed
    def _refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    parsed = json.loads((tmp_path / "results.json").read_text(), parse_constant=_refuse)
    assert parsed["arms"][1]["cases"]["test_R"][0]["hd95_mean"] == "inf"
    assert parsed["arms"][3]["cases"]["test_R"][0]["hd95_mean"] is None
    assert sorted(parsed["figures"]) == sorted(
        ["figures/score_vs_num_synthetic.png", "figures/boxplots_test_R.png", "figures/real_vs_synthetic_pairs.png"]
    )
    for figure in parsed["figures"]:
        assert (tmp_path / figure).read_bytes()[:8] == PNG_MAGIC
    assert load_results(tmp_path)["arms"][1]["cases"]["test_R"][0]["hd95_mean"] == math.inf
    assert set(written) >= {"results", "report", "real_vs_synthetic_pairs"}
    assert not [p for p in tmp_path.rglob("*.tmp*")]  # no temporary file left behind


def test_markdown_tables(tmp_path: Path) -> None:
    results = _results()
    text = render_markdown(results, ["figures/boxplots_test_R.png"])
    real_dice = results["arms"][0]["summary"]["test_R"]["dice"]
    assert f"| real | 10 + 0 | {real_dice['mean']:.3f} ± {real_dice['std']:.3f} |" in text
    assert "| synthetic_n20 | 0 + 20 |" in text and "(1 inf)" in text and "(1 undef.)" in text
    assert "| lung | heart |" in text  # per-class table
    assert "**friedman**" in text and "| hybrid_n80 |" in text
    assert "| gan | 10 | 100 | 12.500 | 0.01230 ± 0.00100 |" in text
    assert "![boxplots_test_R](figures/boxplots_test_R.png)" in text


def test_score_plot_needs_synthetic_arms(tmp_path: Path) -> None:
    results = _results()
    results["arms"] = results["arms"][:1]
    assert plot_score_vs_num_synthetic(results, tmp_path / "score.png") is None
    assert not (tmp_path / "score.png").exists()


def test_load_results_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the study first"):
        load_results(tmp_path)
