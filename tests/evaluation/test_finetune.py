"""The ``finetune`` arm: pre-training on generated pairs (the matching synthetic arm), then fine-tuning on the
matching real arm's cases with the real arm's budget."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.evaluation import segmentation
from monai_synth.evaluation.arms import ArmSpec, arm_training_items, plan_arms
from monai_synth.evaluation.report import render_markdown
from monai_synth.evaluation.study import SyntheticEvaluationStudy

TINY = {"image_size": 32, "max_epochs": 1, "batch_size": 4, "compute_fid": False, "figures": False, "device": "cpu"}
COMMON = {"phantom_samples": 12, "phantom_generated_samples": 10, "num_synthetic": [6], "num_real": [3]}


def test_plan_arms_expands_finetune_like_hybrid() -> None:
    arms = plan_arms(["real", "synthetic", "hybrid", "finetune"], [4, 8], {"gan": 20}, (False, True), num_real=[3])
    names = [a.name for a in arms]
    assert names == [
        "real_r3", "synthetic_n4", "synthetic_n8", "hybrid_r3_n4", "hybrid_r3_n8", "finetune_r3_n4", "finetune_r3_n8",
        "real_r3+aug", "synthetic_n4+aug", "synthetic_n8+aug", "hybrid_r3_n4+aug", "hybrid_r3_n8+aug",
        "finetune_r3_n4+aug", "finetune_r3_n8+aug",
    ]  # fmt: skip
    finetune = {a.name: a for a in arms if a.kind == "finetune"}
    assert finetune["finetune_r3_n8+aug"].pretrain_arm == "synthetic_n8+aug"
    assert finetune["finetune_r3_n8+aug"].real_arm == "real_r3+aug"
    assert finetune["finetune_r3_n4"].pretraining() == ArmSpec("synthetic_n4", "synthetic", "gan", 4, False)
    assert finetune["finetune_r3_n4"].finetuning() == ArmSpec("real_r3", "real", None, 0, False, 3)
    # every stage name is an arm name of the full plan: the study can reuse a trained synthetic arm
    assert {a.pretrain_arm for a in finetune.values()} | {a.real_arm for a in finetune.values()} <= set(names)
    # several generated sets are named; without num_real the names carry no R
    several = plan_arms(["finetune"], [5], {"dcgan": 10, "sg2": 10}, num_real=[3, None])
    assert [(a.name, a.pretrain_arm, a.real_arm) for a in several] == [
        ("finetune-dcgan_r3_n5", "synthetic-dcgan_n5", "real_r3"),
        ("finetune-sg2_r3_n5", "synthetic-sg2_n5", "real_r3"),
        ("finetune-dcgan_rall_n5", "synthetic-dcgan_n5", "real_rall"),
        ("finetune-sg2_rall_n5", "synthetic-sg2_n5", "real_rall"),
    ]
    assert [a.name for a in plan_arms(["finetune"], [5], {"gan": 10})] == ["finetune_n5"]
    # oversampling is a hybrid setting: finetune arms are not repeated with _rf
    assert [a.name for a in plan_arms(["finetune"], [5], {"gan": 10}, hybrid_real_fraction=0.5)] == ["finetune_n5"]
    with pytest.raises(ValueError, match="only finetune arms"):
        arms[0].pretraining()


def test_finetune_training_items_are_the_real_arms_cases_plus_the_synthetic_arms_pairs() -> None:
    real = [{"case_id": f"c{i}"} for i in range(10)]
    pools = {"gan": [{"case_id": f"g{i}"} for i in range(8)]}
    (arm,) = plan_arms(["finetune"], [5], {"gan": 8}, num_real=[4])
    real_items, generated = arm_training_items(arm, real, pools, seed=1)  # what the leakage check sees
    assert real_items == arm_training_items(arm.finetuning(), real, pools, seed=1)[0]
    assert generated == arm_training_items(arm.pretraining(), real, pools, seed=1)[1] == pools["gan"][:5]
    assert len(real_items) == 4


def test_finetune_without_a_generated_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"arms \['finetune'\] need a generated set: give `synthetic_datalist`"):
        plan_arms(["real", "finetune"], [5], {})
    real = write_phantom_dataset(tmp_path / "real", 8, image_size=32, seed=0)
    study = SyntheticEvaluationStudy(tmp_path / "out", real_dataset_dir=real, arms=["real", "finetune"], **TINY)
    with pytest.raises(ValueError, match=r"arms \['finetune'\].*`synthetic_datalist`.*arms=\['real'\]"):
        study.run()
    with pytest.raises(ValueError, match="arms"):
        SyntheticEvaluationStudy(tmp_path / "out", arms=["fine-tune"], **TINY)


def _items_digest(items) -> list[str]:
    return sorted(hashlib.sha1(np.ascontiguousarray(i["image"]).tobytes()).hexdigest() for i in items)


@pytest.fixture
def recorded(monkeypatch):
    """Every training of the study: its log prefix, starting and final weights, and its training images."""
    import monai_synth.evaluation.study as study_module

    calls = []

    def spy(network, train_items, val_items, num_classes, **kwargs):
        start = {k: v.detach().clone() for k, v in network.state_dict().items()}
        result = segmentation.train_segmentation_network(network, train_items, val_items, num_classes, **kwargs)
        end = {k: v.detach().clone() for k, v in network.state_dict().items()}
        calls.append({"prefix": kwargs["log_prefix"], "start": start, "end": end, "train": _items_digest(train_items),
                      "val": _items_digest(val_items), "kwargs": kwargs, "iterations": result.iterations})  # fmt: skip
        return result

    monkeypatch.setattr(study_module, "train_segmentation_network", spy)
    return calls


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("with_synthetic_arm", [True, False])
def test_finetune_starts_from_the_synthetic_arms_best_weights(tmp_path: Path, recorded, with_synthetic_arm) -> None:
    arms = ["real", "synthetic", "finetune"] if with_synthetic_arm else ["real", "finetune"]
    settings = {**TINY, "max_epochs": 2, "epoch_length": 2}
    results = SyntheticEvaluationStudy(tmp_path / "out", arms=arms, **COMMON, **settings).run()
    by_prefix = {c["prefix"].split(" ", 2)[2]: c for c in recorded}
    real, finetune = by_prefix["real_r3"], by_prefix["finetune_r3_n6 stage 2 (as real_r3)"]
    if with_synthetic_arm:  # the synthetic arm of this fold is stage 1: not trained again
        stage1 = by_prefix["synthetic_n6"]
        assert len(recorded) == 3
    else:
        stage1 = by_prefix["finetune_r3_n6 stage 1 (synthetic_n6)"]
        assert len(recorded) == 3
    assert _same(finetune["start"], stage1["end"])  # stage 2 starts from stage 1's best weights
    assert not _same(finetune["start"], real["start"])  # ... not from the fold's initial weights
    assert _same(stage1["start"], real["start"])  # stage 1 starts like every arm of the fold
    # stage 2 = the real arm's training: same images, validation, budget and optimiser settings
    assert finetune["train"] == real["train"] and finetune["val"] == real["val"]
    assert finetune["kwargs"] | {"log_prefix": ""} == real["kwargs"] | {"log_prefix": ""}
    assert stage1["train"] != real["train"] and len(stage1["train"]) == 6

    record = next(a for a in results["arms"] if a["kind"] == "finetune")
    assert record["pretrain_arm"] == "synthetic_n6" and record["real_arm"] == "real_r3"
    (fold,) = record["folds"]
    assert fold["pretraining"]["arm"] == "synthetic_n6" and fold["pretraining"]["reused"] is with_synthetic_arm
    assert fold["optimizer_steps"] == {
        "pretraining": stage1["iterations"],
        "finetuning": real["iterations"],
        "total": stage1["iterations"] + real["iterations"],
    }
    assert fold["optimizer_steps"]["finetuning"] == 4  # 2 epochs x epoch_length 2, as the real arm
    # from results.json: the fine-tune stage used exactly the real arm's real cases
    real_record = next(a for a in results["arms"] if a["name"] == "real_r3")
    assert fold["real_cases"] == results["data"]["real_subsets"][0]["3"]
    assert fold["num_real_cases"] == real_record["folds"][0]["num_real_cases"] == 3
    assert fold["num_synthetic_train"] == 6
    assert not set(fold["real_cases"]) & set(results["data"]["splits"][0]["test"])


def test_tiny_study_with_finetune_writes_results_report_and_statistics(tmp_path: Path) -> None:
    from monai_synth.utils.io import read_json

    out = tmp_path / "out"
    SyntheticEvaluationStudy(out, arms=["real", "synthetic", "finetune"], **COMMON, **TINY).run()
    results = read_json(out / "results.json")
    assert [a["name"] for a in results["arms"]] == ["real_r3", "synthetic_n6", "finetune_r3_n6"]
    stats = results["statistics"]["test_R"]["dice"]
    assert stats["test"] == "friedman" and "finetune_r3_n6" in stats["methods"]
    finetune = results["arms"][2]
    assert finetune["summary"]["test_R"]["num_cases"] == results["arms"][0]["summary"]["test_R"]["num_cases"] > 0
    report = (out / "report.md").read_text()
    assert "| finetune_r3_n6 | 6 generated, then 3 real |" in report
    assert "the fine-tune stage had the same budget as real_r3" in report
    assert "pre-training steps came on top" in report
    assert "finetune_r3_n6" in render_markdown(results)  # the report renders again from results.json
