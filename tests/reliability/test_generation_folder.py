"""Two ``generate.json`` runs on one folder, and a killed run's folder shrunk: through the real bundle entry points.

A first run is started as a real subprocess and frozen (``SIGSTOP``) once its first shard record exists,
so it holds the folder's lock at a known point; a second run on the same folder must stop at once with
the project's message and write nothing. The frozen run is then killed (``kill -9``): its lock must not
outlive it, and a rerun asking for fewer pairs than the killed run wrote must leave only its own.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import time
from pathlib import Path

import pytest
from reliability_helpers import config_file, error_text, run_bundle, snapshot, spawn

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:parsing config_file")]

GENERATE = config_file("paired_dcgan", "generate")


def test_generation_refuses_a_folder_another_run_writes_and_a_killed_runs_lock_does_not_block(
    dcgan_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "generated"
    settings = {"output_dir": str(dcgan_run), "generated_dir": str(out), "shard_size": 8, "batch_size": 8}
    log = tmp_path / "first.log"
    first = spawn(GENERATE, {**settings, "num_samples": 400, "device": "cpu"}, log, cwd=tmp_path)
    try:
        while not (out / "shards" / "shard_00000.json").is_file():
            assert first.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock, writes nothing more
        before = snapshot(out)
        with pytest.raises(Exception) as refused:
            run_bundle(GENERATE, **settings, num_samples=400, device="cpu")
        expected = (
            f"{out} is being written by another generate run (pid {first.pid} on host {platform.node()}); "
            "wait for it or use another --output_dir."
        )
        assert expected in error_text(refused.value), error_text(refused.value)
        assert snapshot(out) == before
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert (out / ".lock").is_file() and not (out / "manifest.json").exists()

    # the dead run's lock does not block; asking for fewer pairs than it wrote leaves only the new set
    run_bundle(GENERATE, **settings, num_samples=4, device="cpu")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 4 and manifest["summary"]["num_generated"] == 4
    assert manifest["summary"]["stale_pairs_removed"] >= 4  # at least pairs 4..7 of the killed run's shard 0
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard_00000.json"]
    pairs = {p.name for p in (out / "pairs").iterdir() if not p.name.startswith(".")}
    assert pairs == {
        f"syn_{e['index']:06d}_{kind}.nii.gz" for e in manifest["pairs"] if e["kept"] for kind in ("image", "label")
    }
    assert not (out / ".lock").exists()
