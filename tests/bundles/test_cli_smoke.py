"""One real ``python -m monai.bundle run`` per bundle config file, the way a user starts it.

Every other bundle test runs the same ``monai.bundle`` entry point in-process (``bundle_helpers.bundle``);
this is what only a process shows: the command line imports the package, an unknown setting ends the
process with a non-zero status and the project's own message as the last line, nothing is written.
paired_dcgan's ``train.json`` does the smallest real run instead (exit status 0, a generator written).
A config without ``imports`` is an overlay (``quickstart.json``) and runs merged over its ``train.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bundle_helpers import REPO, bundle_cli

CONFIGS = sorted(p for p in REPO.glob("bundles/*/configs/*.json") if p.name != "metadata.json")


def _config_file(config: Path) -> str:
    if "imports" in json.loads(config.read_text()):
        return str(config)
    return f"['{config.parent / 'train.json'}','{config}']"  # an overlay, as the README runs it


def test_every_bundle_config_is_smoke_tested() -> None:
    names = {f"{p.parent.parent.name}/{p.stem}" for p in CONFIGS}
    assert {"paired_dcgan/train", "datasetgan/train", "synthetic_evaluation/evaluate"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_command_line_run(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    if (config.parent.parent.name, config.name) == ("paired_dcgan", "train.json"):
        tiny = ["--image_size", "32", "--latent_dim", "8", "--generator_channels", "[16, 8]"]
        tiny += ["--discriminator_channels", "[8, 16]", "--batch_size", "4", "--phantom_samples", "4"]
        tiny += ["--max_epochs", "1", "--iterations_per_epoch", "1", "--num_grid_samples", "4", "--device", "cpu"]
        result = bundle_cli(["run", "--config_file", str(config), *tiny, "--output_dir", str(out)], cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert torch.load(out / "generator.pt", weights_only=True)["config"]["generator"]["channels"] == [16, 8]
        return
    args = ["run", "--config_file", _config_file(config), "--output_dir", str(out), "--no_such_setting", "1"]
    result = bundle_cli(args, cwd=tmp_path)
    assert result.returncode != 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("monai_synth: ValueError: Unknown setting(s) --no_such_setting"), result.stderr[-3000:]
    assert not out.exists()
