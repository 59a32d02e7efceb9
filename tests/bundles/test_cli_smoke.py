"""One real ``python -m monai.bundle run`` per bundle config file, the way a user starts it.

Every other bundle test runs the same ``monai.bundle`` entry point in-process (``bundle_helpers.bundle``);
this is what only a process shows: the command line imports the package, an unknown setting ends the
process with a non-zero status and the project's own message as the last line, nothing is written.
paired_dcgan's ``train.json`` and synthetic_evaluation's ``pipeline.json`` do the smallest real run instead (exit
status 0, a generator written; a pipeline report). A config without ``imports`` is an overlay (``quickstart.json``,
``split.json``) and runs merged over its bundle's ``train.json`` (or ``pipeline.json`` for synthetic_evaluation's
quick-start, else ``evaluate.json``).
The processes run side by side, as many as there are CPUs: most of their time is importing torch and MONAI.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from bundle_helpers import REPO, bundle_cli

CONFIGS = sorted(p for p in REPO.glob("bundles/*/configs/*.json") if p.name != "metadata.json")
REAL_RUN = ("paired_dcgan", "train.json")  # the configs that do the smallest real run
PIPELINE_RUN = ("synthetic_evaluation", "pipeline.json")
TINY = ["--image_size", "32", "--latent_dim", "8", "--generator_channels", "[16, 8]"]
TINY += ["--discriminator_channels", "[8, 16]", "--batch_size", "4", "--phantom_samples", "4"]
TINY += ["--max_epochs", "1", "--iterations_per_epoch", "1", "--num_grid_samples", "4", "--device", "cpu"]
_TINY_DCGAN = {
    "latent_dim": 8, "generator_channels": [16, 8], "discriminator_channels": [8, 16], "batch_size": 4,
    "max_epochs": 1, "iterations_per_epoch": 1, "num_grid_samples": 4, "eval_samples": 8,
}  # fmt: skip
TINY_PIPELINE = ["--folds", "1", "--num_real", "[null]", "--num_synthetic", "4", "--image_size", "32"]
TINY_PIPELINE += ["--phantom_samples", "10", "--study", "{'max_epochs': 1, 'batch_size': 4}", "--compute_fid", "False"]
TINY_PIPELINE += ["--diversity_samples", "4", "--mlflow_tracking_uri", "None", "--generators"]
TINY_PIPELINE += [repr({"dcgan": {"bundle": "paired_dcgan", "overrides": _TINY_DCGAN,
                                  "generate_overrides": {"allow_duplicates": True}}})]  # fmt: skip


def _id(config: Path) -> str:
    return f"{config.parent.parent.name}/{config.stem}"


def _config_file(config: Path) -> str:
    if "imports" in json.loads(config.read_text()):
        return str(config)
    # an overlay, run merged over its bundle's main config as the docs run it
    bases = ("pipeline.json",) if config.name == "quickstart.json" else ()
    base = next(config.parent / n for n in (*bases, "train.json", "evaluate.json") if (config.parent / n).is_file())
    return f"['{base}','{config}']"


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[Path, Future]]:
    """Every config's command line, started together (one per CPU at a time: each spends seconds importing)."""
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    runs = {}
    for config in CONFIGS:
        cwd = tmp_path_factory.mktemp("cli")
        out = cwd / "out"
        if (config.parent.parent.name, config.name) == REAL_RUN:
            args = ["run", "--config_file", str(config), *TINY, "--output_dir", str(out)]
        elif (config.parent.parent.name, config.name) == PIPELINE_RUN:
            args = ["run", "--config_file", str(config), *TINY_PIPELINE, "--output_dir", str(out)]
        else:
            args = ["run", "--config_file", _config_file(config), "--output_dir", str(out), "--no_such_setting", "1"]
        runs[_id(config)] = (out, pool.submit(bundle_cli, args, cwd))
    yield runs
    pool.shutdown(wait=True)


def test_every_bundle_config_is_smoke_tested() -> None:
    names = {_id(p) for p in CONFIGS}
    assert {
        "paired_dcgan/train",
        "datasetgan/train",
        "semanticgan/train",
        "synthetic_evaluation/evaluate",
        "synthetic_evaluation/pipeline",
    } <= names


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_command_line_run(config: Path, cli_runs: dict[str, tuple[Path, Future]]) -> None:
    out, future = cli_runs[_id(config)]
    result = future.result()
    if (config.parent.parent.name, config.name) == REAL_RUN:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert torch.load(out / "generator.pt", weights_only=True)["config"]["generator"]["channels"] == [16, 8]
        return
    if (config.parent.parent.name, config.name) == PIPELINE_RUN:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        results = json.loads((out / "results.json").read_text())
        assert sorted(results["arms"]) == [
            "finetune-dcgan_rall_n4",
            "hybrid-dcgan_rall_n4",
            "real_rall",
        ]  # default arms
        assert results["leakage_check"]["ok"]
        assert (out / "report.md").read_text().startswith("# Does synthetic data help?")
        return
    assert result.returncode != 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("monai_synth: ValueError: Unknown setting(s) --no_such_setting"), result.stderr[-3000:]
    assert not out.exists()
