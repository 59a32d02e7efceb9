"""Tiny trained generators shared by the fault-injection tests (trained in-process with ``monai.bundle.run``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import DATASETGAN_TINY, DCGAN_TINY, config_file, run_bundle


@pytest.fixture(scope="session")
def dcgan_run(tmp_path_factory) -> Path:
    """A finished tiny paired_dcgan phantom run (4 iterations): ``generator.pt``, ``checkpoints/``."""
    run_dir = tmp_path_factory.mktemp("reliability_dcgan") / "run"
    run_bundle(config_file("paired_dcgan", "train"), output_dir=str(run_dir), **DCGAN_TINY)
    return run_dir


@pytest.fixture(scope="session")
def datasetgan_run(tmp_path_factory) -> Path:
    """A finished tiny datasetgan paired-mode (B-SG) phantom run (one iteration)."""
    run_dir = tmp_path_factory.mktemp("reliability_datasetgan") / "run"
    run_bundle(config_file("datasetgan", "train"), output_dir=str(run_dir), **DATASETGAN_TINY)
    return run_dir
