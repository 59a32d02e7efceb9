"""``training_seed``: repeat a study with other initialisations on exactly the same cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monai_synth.evaluation.config import StudyConfig
from monai_synth.evaluation.study import SyntheticEvaluationStudy

TINY = {"image_size": 32, "max_epochs": 1, "batch_size": 4, "compute_fid": False, "figures": False, "device": "cpu"}


def _run(out: Path, **kwargs) -> tuple[dict, dict[str, torch.Tensor]]:
    study = SyntheticEvaluationStudy(out, arms=["real"], phantom_samples=12, num_real=[3], save_models=True,
                                     **TINY, **kwargs)  # fmt: skip
    results = study.run()
    model = torch.load(out / "models" / "real_r3" / "fold0" / "model.pt", weights_only=True)
    return results, model


def test_training_seed_changes_the_weights_not_the_cases(tmp_path: Path) -> None:
    base, base_model = _run(tmp_path / "base")
    again, again_model = _run(tmp_path / "again", training_seed=0)  # the default: training_seed = seed
    other, other_model = _run(tmp_path / "other", training_seed=7)
    assert base["seeds"]["weights_and_shuffling"] == [0] and other["seeds"]["weights_and_shuffling"] == [7]
    assert base["seeds"]["split"] == other["seeds"]["split"] == 0
    # same split and the same real_r3 cases ...
    assert base["data"]["real_subsets"] == other["data"]["real_subsets"]
    case_ids = lambda r: sorted(c["case_id"] for c in r["arms"][0]["cases"]["test_R"])  # noqa: E731
    assert case_ids(base) == case_ids(other)
    # ... but other initial weights and shuffling: the trained network differs
    state = lambda m: m["state_dict"] if "state_dict" in m else m["network"]  # noqa: E731
    key = next(k for k, v in state(base_model).items() if v.is_floating_point() and v.numel() > 8)
    torch.testing.assert_close(state(base_model)[key], state(again_model)[key], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(state(base_model)[key], state(other_model)[key], atol=1e-3)


def test_training_seed_must_be_an_integer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training_seed"):
        StudyConfig(tmp_path, training_seed="one")
    assert StudyConfig(tmp_path, seed=3).training_seed == 3
