"""Tests of monai_synth.handlers.progress: the training summary records the shared environment."""

from __future__ import annotations

import json
from pathlib import Path

from ignite.engine import Engine

from monai_synth.handlers import TrainingSummaryWriter


def test_training_summary_records_iterations_and_environment(tmp_path: Path) -> None:
    engine = Engine(lambda e, b: {"loss": 0.5})
    TrainingSummaryWriter(tmp_path / "summary.json", batch_size=4, extra={"config": {"size": 8}}).attach(engine)
    engine.run(range(3), max_epochs=2)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["iterations_total"] == 6 and summary["iterations_this_run"] == 6
    assert summary["last_output"] == {"loss": 0.5} and summary["config"] == {"size": 8}
    assert {"torch", "monai", "monai_synth"} <= set(summary["versions"])
    assert summary["hardware"]["cpu_count"] >= 1 and summary["hardware"]["torch_threads"] >= 1
