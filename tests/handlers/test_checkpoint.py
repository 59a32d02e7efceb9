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


def _run_with_adam(
    tmp_path: Path, lr: float, betas: tuple[float, float], epochs: int = 1
) -> tuple[GANCheckpointHandler, torch.optim.Adam]:
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)

    def step(engine: Engine, batch: int) -> dict:
        opt.zero_grad()
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
        return {"loss": 0.0}

    engine = Engine(step)
    engine.state.max_epochs = None
    handler = GANCheckpointHandler(tmp_path, {"net": net, "opt": opt}, save_interval=2)
    handler.attach(engine)
    engine.run(range(2), max_epochs=epochs)
    return handler, opt


def test_changed_learning_rate_and_betas_are_applied_after_resume_with_a_warning(tmp_path: Path, caplog) -> None:
    _run_with_adam(tmp_path, 1e-3, (0.5, 0.999))
    saved_moments = load_checkpoint(tmp_path / "checkpoint_last.pt")["states"]["opt"]["state"]
    with caplog.at_level("WARNING", logger="monai_synth.handlers.checkpoint"):
        handler, opt = _run_with_adam(tmp_path, 5e-4, (0.0, 0.99), epochs=2)
    assert handler.resumed_from == 2
    assert opt.param_groups[0]["lr"] == 5e-4 and tuple(opt.param_groups[0]["betas"]) == (0.0, 0.99)
    assert opt.state_dict()["state"][0]["step"] == saved_moments[0]["step"] + 2  # the moments were restored
    assert handler.applied_optimizer_changes == ["opt lr 0.001 -> 0.0005", "opt betas [0.5, 0.999] -> [0.0, 0.99]"]
    assert "changed optimiser settings" in caplog.text and "checkpoint_last.pt" in caplog.text
    assert "lr 0.001 -> 0.0005" in caplog.text


def test_unchanged_optimiser_settings_resume_silently(tmp_path: Path, caplog) -> None:
    _run_with_adam(tmp_path, 1e-3, (0.5, 0.999))
    with caplog.at_level("WARNING", logger="monai_synth.handlers.checkpoint"):
        handler, opt = _run_with_adam(tmp_path, 1e-3, (0.5, 0.999))
    assert handler.applied_optimizer_changes == [] and "optimiser" not in caplog.text
