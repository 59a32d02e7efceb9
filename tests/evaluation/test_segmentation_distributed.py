"""The study's segmentation training under ``torchrun`` (gloo on CPU): DistributedDataParallel, sharded data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("segmentation_worker.py")


@pytest.mark.slow
def test_two_ranks_train_one_segmenter_on_shares_of_the_data(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]
    done = subprocess.run([*command, str(tmp_path / "seg")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"seg.rank{r}", weights_only=True) for r in range(2)]
    # 8 training items, 2 per rank and step: 2 iterations per epoch (one process would need 4)
    assert ranks[0]["iterations"] == ranks[1]["iterations"] == 4
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"]
    for name, value in ranks[0]["network"].items():
        assert torch.equal(value, ranks[1]["network"][name]), name
