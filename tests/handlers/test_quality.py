"""GeneratorQualityHandler on constructed generators: collapse stops training, variety passes, best snapshot export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from torch import nn

from monai_synth.handlers import GeneratorQualityHandler, TrainingSummaryWriter
from monai_synth.metrics import (
    GeneratorCollapseError,
    class_area_range,
    diversity_ratio,
    generated_duplicate_rate,
    mask_sanity,
)

SIZE = 32


def _blobs(n: int, seed: int) -> torch.Tensor:
    """``(n, 2, SIZE, SIZE)`` pairs: an image with one bright disc of varying place/size, its binary mask channel."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    pairs = []
    for _ in range(n):
        cy, cx = torch.randint(6, SIZE - 6, (2,), generator=g).tolist()
        r = int(torch.randint(3, 7, (1,), generator=g))
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
        texture = torch.rand(SIZE, SIZE, generator=g) * 0.6
        image = (disc * 1.4 + texture) - 1.0
        pairs.append(torch.stack([image.clamp(-1, 1), disc * 2 - 1]))
    return torch.stack(pairs)


class ConstantGenerator(nn.Module):
    """Returns one fixed pair whatever the latent (a fully collapsed generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pair", _blobs(1, 99)[0])
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.pair * self.scale).expand(z.shape[0], -1, -1, -1)


class VariedGenerator(nn.Module):
    """Returns a different real-like pair for each latent (indexed by the first latent coordinate)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", _blobs(256, 7))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = ((z[:, 0] + 1) / 2 * 255).round().long().clamp(0, 255)
        return self.bank[index] * self.scale


def _latents(n: int = 32) -> torch.Tensor:
    return torch.linspace(-1, 1, n)[:, None].repeat(1, 4)


def _engine(iterations: int, handler: GeneratorQualityHandler, tmp_path) -> Engine:
    engine = Engine(lambda e, b: {"g_loss": 0.0})
    handler.attach(engine)
    TrainingSummaryWriter(tmp_path / "summary.json", batch_size=1, extra={"quality": handler.report}).attach(engine)
    return engine


def test_figures_on_constructed_sets():
    real = _blobs(32, 1)
    assert generated_duplicate_rate(real, image_channels=1) < 0.1
    constant = real[:1].repeat(32, 1, 1, 1)
    assert generated_duplicate_rate(constant, image_channels=1) == pytest.approx(31 / 32)
    assert diversity_ratio(constant[:, :1], real[:, :1]) == pytest.approx(0.0, abs=1e-6)
    assert diversity_ratio(_blobs(32, 2)[:, :1], real[:, :1]) == pytest.approx(1.0, abs=0.3)
    labels = (real[:, 1:] > 0).long()
    area = class_area_range(labels, 2)
    assert area.shape == (1, 2) and area[0, 0] < area[0, 1]
    assert mask_sanity(labels, area, 2) == 1.0
    full = torch.ones_like(labels)  # every pixel foreground: outside any real range
    assert mask_sanity(full, area, 2) == 0.0


def test_constant_generator_is_flagged_and_stops_training(tmp_path):
    handler = GeneratorQualityHandler(
        ConstantGenerator(), _latents(), _blobs(32, 1), image_channels=1, num_classes=2, output_dir=tmp_path,
        interval=2, collapse_threshold=0.5, collapse_patience=2,
    )  # fmt: skip
    engine = _engine(20, handler, tmp_path)
    with pytest.raises(GeneratorCollapseError, match="collapsed.*ada True"):
        engine.run(range(20), max_epochs=1)
    assert engine.state.iteration == 4  # stopped at the second collapsed evaluation, not at 20
    assert [h["iteration"] for h in handler.history] == [2, 4]
    assert handler.history[-1]["dup_rate"] > 0.9 and handler.history[-1]["diversity"] < 1e-6
    summary = json.loads((tmp_path / "summary.json").read_text())  # written before the error
    assert summary["quality"]["collapsed"]["iteration"] == 4
    assert summary["last_output"]["dup_rate"] > 0.9
    assert (tmp_path / "quality.png").read_bytes()[:4] == b"\x89PNG"


def test_varied_generator_is_not_flagged(tmp_path):
    handler = GeneratorQualityHandler(
        VariedGenerator(), _latents(), _blobs(32, 1), image_channels=1, num_classes=2, output_dir=tmp_path,
        interval=3, collapse_patience=1,
    )  # fmt: skip
    engine = _engine(10, handler, tmp_path)
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(dict(e.state.output)))
    engine.run(range(10), max_epochs=1)
    assert engine.state.iteration == 10
    assert [h["iteration"] for h in handler.history] == [3, 6, 9, 10]  # plus a last one at the end
    last = handler.history[-1]
    assert last["dup_rate"] < 0.2 and 0.5 < last["diversity"] < 1.5 and last["mask_sanity"] > 0.8
    assert "dup_rate" not in seen[0] and seen[4]["dup_rate"] == pytest.approx(last["dup_rate"])  # published
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quality"]["collapsed"] is None and len(summary["quality"]["history"]) == 4


class _Features:
    """Stand-in feature extractor (the Inception network is too slow for a unit test): flattened pixels."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, ::8].double()


def test_best_snapshot_export_picks_the_lowest_kid(tmp_path):
    generator = VariedGenerator()
    path = tmp_path / "generator.pt"
    handler = GeneratorQualityHandler(
        generator, _latents(), _blobs(32, 1), image_channels=1, num_classes=2, output_dir=tmp_path, interval=1,
        compute_kid=True, select_by="kid", export={"path": path, "config": {"a": 1}}, feature_extractor=_Features(),
        collapse_patience=0,
    )  # fmt: skip
    scales = [0.3, 1.0, 0.5, 0.2]  # the generator is closest to the data at iteration 2

    def step(engine, batch):
        with torch.no_grad():
            generator.scale.fill_(scales[engine.state.iteration - 1])
        return {}

    engine = Engine(step)
    handler.attach(engine)
    # the checkpoint handler's export of the last weights, attached after: the best snapshot must win
    engine.add_event_handler(
        Events.COMPLETED, lambda e: torch.save({"state_dict": generator.state_dict(), "config": {}}, path)
    )
    engine.run(range(4), max_epochs=1)
    kids = [h["kid"] for h in handler.history]
    assert int(np.argmin(kids)) == 1
    saved = torch.load(path, weights_only=True)
    assert saved["iteration"] == 2 and saved["config"] == {"a": 1}
    assert float(saved["state_dict"]["scale"]) == pytest.approx(1.0)
    assert handler.report["best"]["iteration"] == 2


def test_select_by_needs_its_score(tmp_path):
    with pytest.raises(ValueError, match="eval_kid"):
        GeneratorQualityHandler(
            VariedGenerator(), _latents(), _blobs(4, 1), 1, 2, tmp_path, select_by="kid", export={"path": "x"}
        )
    with pytest.raises(ValueError, match="select_by"):
        GeneratorQualityHandler(VariedGenerator(), _latents(), _blobs(4, 1), 1, 2, tmp_path, select_by="lpips")
