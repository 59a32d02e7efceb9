from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from monai_synth.handlers import GANCheckpointHandler
from monai_synth.handlers.checkpoint import config_differences, load_checkpoint


def _engine() -> Engine:
    engine = Engine(lambda e, b: {"loss": 0.0})
    engine.state.max_epochs = None
    return engine


def _run(
    tmp_path: Path, net: torch.nn.Module, config: dict, resume: bool = True, iterations: int = 3
) -> GANCheckpointHandler:
    engine = _engine()
    handler = GANCheckpointHandler(tmp_path, {"net": net}, config=config, save_interval=2, resume=resume,
                                   export={"path": tmp_path / "net.pt", "network": net})  # fmt: skip
    handler.attach(engine)
    engine.run(range(iterations), max_epochs=1)
    return handler


def test_saves_atomically_exports_and_resumes(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    _run(tmp_path, net, {"size": 8})
    checkpoint = load_checkpoint(tmp_path / "checkpoint_last.pt")
    assert checkpoint["iteration"] == 3 and checkpoint["config"] == {"size": 8}
    assert torch.equal(checkpoint["states"]["net"]["weight"], net.weight)
    assert torch.load(tmp_path / "net.pt", weights_only=True)["iteration"] == 3
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary files left behind

    other = torch.nn.Linear(2, 2)
    handler = _run(tmp_path, other, {"size": 8}, iterations=3)
    assert handler.resumed_from == 3
    assert torch.equal(other.weight, net.weight)  # weights came from the checkpoint


def test_other_configuration_and_resume_off_are_refused_without_overwriting(tmp_path: Path) -> None:
    _run(tmp_path, torch.nn.Linear(2, 2), {"size": 8, "channels": [4]})
    before = (tmp_path / "checkpoint_last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"another configuration \(.*channels"):
        _run(tmp_path, torch.nn.Linear(2, 2), {"size": 8, "channels": [8]})
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        _run(tmp_path, torch.nn.Linear(2, 2), {"size": 8, "channels": [4]}, resume=False)
    assert (tmp_path / "checkpoint_last.pt").read_bytes() == before


def test_corrupt_and_missing_checkpoints_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoint_last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint_last.pt cannot be read"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_differences_lists_each_changed_path() -> None:
    diffs = config_differences({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 3]}, "d": 0})
    assert len(diffs) == 2 and any("b.c" in d for d in diffs) and any("d" in d for d in diffs)
    assert config_differences({"a": 1}, {"a": 1}) == []
