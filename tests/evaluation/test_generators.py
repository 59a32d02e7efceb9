"""fid.json's GeneratorComparison (issue 17 item 6): FID / KID / precision / recall of sets and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from monai_synth.evaluation.generators import GeneratorComparison, precision_recall
from monai_synth.networks.nets import PairedDCGANGenerator
from monai_synth.utils.io import read_json, torch_save_atomic

SIZE, LATENT, CLASSES = 16, 8, 3


class PooledFeatures:
    """Stand-in for the Inception extractor: 16-d average-pooled pixels (fast, deterministic)."""

    def __call__(self, images):
        images = torch.as_tensor(images, dtype=torch.float32)
        return torch.nn.functional.adaptive_avg_pool2d(images[:, :1], 4).flatten(1).double()

    def preprocessing_info(self) -> dict:
        return {"network": "4 x 4 average pooling (test stand-in)"}


def _export(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    generator = PairedDCGANGenerator(SIZE, 1 + CLASSES, LATENT, channels=(16, 8))
    config = {
        "generator_class": "monai_synth.networks.nets.PairedDCGANGenerator",
        "generator": generator.get_config(),
        "data": {"image_channels": 1, "num_classes": CLASSES, "image_size": SIZE, "components_per_class": [1, 1]},
    }
    torch_save_atomic({"state_dict": generator.state_dict(), "config": config}, path)
    return path


def test_precision_recall_hand_made_sets() -> None:
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    # k = 1 radii of the real points: 0.5 * sqrt(2) for the corners, same for the centre
    inside = np.array([[0.1, 0.1], [0.9, 0.9], [0.5, 0.6], [0.2, 0.9]])
    far = inside + 10.0
    assert precision_recall(real, inside, k=1)["precision"] == 1.0
    assert precision_recall(real, far, k=1) == {"precision": 0.0, "recall": 0.0, "k": 1}
    same = precision_recall(real, real, k=1)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    with pytest.raises(ValueError, match="more than 3 points"):
        precision_recall(real[:3], inside, k=3)


def test_fid_json_on_two_generator_checkpoints(tmp_path: Path) -> None:
    a, b = _export(tmp_path / "a.pt", 0), _export(tmp_path / "b.pt", 1)
    results = GeneratorComparison(
        None, tmp_path / "fid", generators={"epoch10": str(a), "epoch20": str(b)}, num_samples=12, image_size=16,
        real_dataset_kwargs={"phantom_samples": 12}, kid_subset_size=8, feature_extractor=PooledFeatures(),
    ).run()  # fmt: skip
    assert list(results["sets"]) == ["epoch10", "epoch20"]
    for name, s in results["sets"].items():
        assert s["num_images"] >= 6 and s["fid"] > 0 and 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1
        assert (tmp_path / "fid" / "samples" / name / "datalist.json").is_file()
        assert len(s["per_channel"]) == 1 and s["per_channel"][0]["fid"] == pytest.approx(s["fid"])
    assert results["sets"]["epoch10"]["fid"] != results["sets"]["epoch20"]["fid"]
    assert read_json(tmp_path / "fid" / "fid.json")["sets"]["epoch20"]["checkpoint"] == str(b)
    assert "| epoch10 |" in (tmp_path / "fid" / "fid.md").read_text()


def test_fid_json_needs_something_to_compare(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--generated"):
        GeneratorComparison(None, tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        GeneratorComparison(None, tmp_path, generators={"g": str(tmp_path / "missing.pt")})
