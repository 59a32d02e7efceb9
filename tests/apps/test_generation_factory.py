"""The generation factory's batch grid, shrinking a set in place and the one-run-per-folder lock."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_synth.apps.generation import PairedDatasetFactory
from monai_synth.networks.nets import PairedDCGANGenerator
from monai_synth.utils.io import torch_save_atomic
from monai_synth.utils.locking import LockHeldError, RunLock

SIZE, LATENT, CLASSES = 16, 8, 3  # 1 image channel + 3 one-hot mask channels


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    generator = PairedDCGANGenerator(SIZE, 1 + CLASSES, LATENT, channels=(16, 8))
    config = {
        "generator_class": "monai_synth.networks.nets.PairedDCGANGenerator",
        "generator": generator.get_config(),
        "data": {"image_channels": 1, "num_classes": CLASSES, "image_size": SIZE, "components_per_class": [1, 1]},
    }
    path = tmp_path / "generator.pt"
    torch_save_atomic({"state_dict": generator.state_dict(), "config": config}, path)
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "pairs").iterdir())}


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _nifti(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


# --- 1. generation is invariant to batch composition ----------------------------------------------------


def test_the_generator_runs_only_full_batches_on_a_fixed_grid(exported, tmp_path):
    factory = PairedDatasetFactory(exported, tmp_path / "gen", num_samples=10, shard_size=4, batch_size=3)
    draws: list[list[int]] = []
    draw = factory._draw
    factory._draw = lambda seeds: (draws.append(list(seeds)), draw(seeds))[1]
    factory.run()
    # shards [0, 4) [4, 8) [8, 10) need grid batches 0..3; batch 1 ([3, 6)) straddles shards 0 and 1, drawn once
    assert draws == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_sharding_and_resumption_never_change_a_pairs_bytes(exported, tmp_path):
    reference = tmp_path / "one_shard"
    PairedDatasetFactory(exported, reference, num_samples=9, shard_size=9, batch_size=3, dedup=False).run()
    for shard_size in (2, 4, 5):
        out = tmp_path / f"shards_{shard_size}"
        PairedDatasetFactory(exported, out, num_samples=9, shard_size=shard_size, batch_size=3, dedup=False).run()
        assert _digests(out) == _digests(reference), shard_size
    grown = tmp_path / "grown"
    for num_samples in (1, 5, 9):
        PairedDatasetFactory(exported, grown, num_samples=num_samples, shard_size=4, batch_size=3, dedup=False).run()
    assert _digests(grown) == _digests(reference)


def test_another_batch_size_gives_identical_labels_and_images_to_tolerance(exported, tmp_path):
    sets = {}
    for batch_size, shard_size in ((4, 4), (3, 5), (1, 7), (16, 16)):
        out = tmp_path / f"b{batch_size}"
        PairedDatasetFactory(exported, out, num_samples=10, shard_size=shard_size, batch_size=batch_size).run()
        sets[batch_size] = out
    reference = sets.pop(4)
    expected = json.loads((reference / "datalist.json").read_text())["training"]
    assert len(expected) >= 5
    for batch_size, out in sets.items():
        assert json.loads((out / "datalist.json").read_text())["training"] == expected, batch_size
        for item in expected:
            np.testing.assert_array_equal(_nifti(out / item["label"]), _nifti(reference / item["label"]))
            np.testing.assert_allclose(
                _nifti(out / item["image"]), _nifti(reference / item["image"]), atol=1e-5, rtol=0, err_msg=item["image"]
            )


class _NoisyGenerator(torch.nn.Module):
    """A generator that draws from the global RNG (like random noise injection or dropout in train mode)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.network(z)
        return out + 0.05 * torch.randn_like(out)


def test_per_batch_randomness_is_a_function_of_the_seeds(exported, tmp_path):
    out = tmp_path / "gen"

    def factory() -> PairedDatasetFactory:
        made = PairedDatasetFactory(exported, out, num_samples=10, shard_size=4, batch_size=4, dedup=False)
        made.network = _NoisyGenerator(made.network)
        return made

    torch.manual_seed(1)
    factory().run()
    first = _digests(out)
    (out / "shards" / "shard_00001.json").unlink()
    (out / "pairs" / "syn_000005_image.nii.gz").unlink()
    again = factory()
    torch.manual_seed(2)  # another global RNG state: the regenerated shard must not see it
    state = torch.random.get_rng_state()
    assert again.run()["shards_generated"] == 1
    assert _digests(out) == first
    assert torch.equal(torch.random.get_rng_state(), state)  # and the caller's stream is left alone


# --- 2. shrinking a set in place --------------------------------------------------------------------------


def test_shrinking_removes_the_pairs_and_shard_records_beyond_the_new_count(exported, tmp_path, caplog):
    out = tmp_path / "gen"
    kwargs = dict(shard_size=4, batch_size=4, save_png=True)
    PairedDatasetFactory(exported, out, num_samples=10, **kwargs).run()
    before = _digests(out)
    with caplog.at_level(logging.WARNING, logger="monai_synth.apps.generation.factory"):
        summary = PairedDatasetFactory(exported, out, num_samples=4, **kwargs).run()
    keep = {f"syn_{i:06d}_{kind}.{ext}" for i in range(4) for kind in ("image", "label") for ext in ("nii.gz", "png")}
    assert sorted(p.name for p in (out / "pairs").iterdir()) == sorted(keep)
    assert {k: v for k, v in before.items() if k in keep} == _digests(out)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard_00000.json"]
    assert summary["num_generated"] == 4 and summary["stale_pairs_removed"] == 6
    assert [d["case_id"] for d in json.loads((out / "datalist.json").read_text())["training"]] == sorted(
        {f"syn_{i:06d}" for i in range(4)}
    )
    message = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "removed the 6 pairs beyond the new count" in message and "held 10" in message, message
    assert not (out / ".lock").exists()
    # nothing left to remove: no message the second time
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="monai_synth.apps.generation.factory"):
        again = PairedDatasetFactory(exported, out, num_samples=4, **kwargs).run()
    assert "stale_pairs_removed" not in again and not [r for r in caplog.records if "removed" in r.getMessage()]


def test_shrinking_into_a_shard_keeps_its_first_pairs(exported, tmp_path):
    out = tmp_path / "gen"
    kwargs = dict(shard_size=4, batch_size=4, seed=3, dedup=False)
    PairedDatasetFactory(exported, out, num_samples=10, **kwargs).run()
    before = _digests(out)
    PairedDatasetFactory(exported, out, num_samples=6, **kwargs).run()
    keep = {f"syn_s3_{i:06d}_{kind}.nii.gz" for i in range(6) for kind in ("image", "label")}
    assert _digests(out) == {k: v for k, v in before.items() if k in keep}
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard_00000.json", "shard_00001.json"]
    assert len(json.loads((out / "shards" / "shard_00001.json").read_text())["pairs"]) == 2


def test_a_removal_cut_short_is_finished_by_the_rerun(exported, tmp_path, monkeypatch, caplog):
    out = tmp_path / "gen"
    kwargs = dict(shard_size=4, batch_size=4)
    PairedDatasetFactory(exported, out, num_samples=10, **kwargs).run()
    unlink, calls = Path.unlink, [0]

    def dies_on_the_fourth_unlink(path, missing_ok=False):
        if path.parent.name in ("pairs", "shards"):
            calls[0] += 1
            if calls[0] == 4:
                raise KeyboardInterrupt("killed")
        return unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", dies_on_the_fourth_unlink)
    with pytest.raises(KeyboardInterrupt):
        PairedDatasetFactory(exported, out, num_samples=4, **kwargs).run()
    monkeypatch.undo()
    # the datalist and manifest were written first: already the 4-pair set
    assert json.loads((out / "datalist.json").read_text())["numTraining"] == 4
    assert json.loads((out / "manifest.json").read_text())["num_samples"] == 4
    assert len(list((out / "pairs").iterdir())) > 8
    with caplog.at_level(logging.WARNING, logger="monai_synth.apps.generation.factory"):
        PairedDatasetFactory(exported, out, num_samples=4, **kwargs).run()
    assert sorted(p.name for p in (out / "pairs").iterdir()) == sorted(
        f"syn_{i:06d}_{kind}.nii.gz" for i in range(4) for kind in ("image", "label")
    )
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard_00000.json"]
    assert any("removed the 6 pairs" in r.getMessage() for r in caplog.records)


# --- 3. one run per output folder ---------------------------------------------------------------------------


def _held_message(out: Path, pid: int) -> str:
    return (
        f"{out} is being written by another generate run (pid {pid} on host {platform.node()}); wait for it or "
        "use another --output_dir."
    )


def test_a_second_run_on_a_locked_folder_stops_at_once_without_writing(exported, tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    with RunLock(out / ".lock"):
        before = _files(out)
        with pytest.raises(LockHeldError) as err:
            PairedDatasetFactory(exported, out, num_samples=4).run()
        assert str(err.value) == _held_message(out, os.getpid())
        assert _files(out) == before and sorted(_files(out)) == [".lock"]
    assert not (out / ".lock").exists()
    summary = PairedDatasetFactory(exported, out, num_samples=4).run()  # released: it runs
    assert summary["num_generated"] == 4 and not (out / ".lock").exists()
    # the same while a finished set is there: nothing of it is touched
    with RunLock(out / ".lock"):
        before = _files(out)
        with pytest.raises(LockHeldError, match="being written by another generate run"):
            PairedDatasetFactory(exported, out, num_samples=8).run()
        assert _files(out) == before


_HOLDER = """
import sys, time
from monai_synth.utils.locking import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_lock_held_by_a_killed_process_does_not_block(exported, tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out / ".lock")], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeldError) as err:
            PairedDatasetFactory(exported, out, num_samples=4).run()
        assert str(err.value) == _held_message(out, holder.pid)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    assert (out / ".lock").exists()  # kill -9 left the file, but not the lock
    assert PairedDatasetFactory(exported, out, num_samples=4).run()["num_generated"] == 4


def test_a_foreign_folder_is_refused_before_any_lock_file_is_made(exported, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        PairedDatasetFactory(exported, foreign, num_samples=2).run()
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
