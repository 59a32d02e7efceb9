"""Atomic writes: stale temporary files cleaned, disk-full errors named, permissions from the umask."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from monai_synth.handlers import GANCheckpointHandler
from monai_synth.utils import io
from monai_synth.utils.io import DiskFullError, remove_stale_temp_files, torch_save_atomic, write_json_atomic


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint_last.pt"
    killed = tmp_path / f".checkpoint_last.pt.{_dead_pid()}-{io._HOST}.k1ll3d.tmp.pt"
    killed.write_bytes(b"x" * 1000)  # what kill -9 during torch.save leaves
    old_style = tmp_path / ".checkpoint_last.pt.abc12345.tmp.pt"  # naming before pids were recorded
    old_style.write_bytes(b"x")
    os.utime(old_style, (time.time() - 3600, time.time() - 3600))
    other_target = tmp_path / f".generator.pt.{_dead_pid()}-{io._HOST}.zz.tmp.pt"
    other_target.write_bytes(b"x")
    live = tmp_path / f".generator.pt.{os.getppid()}-{io._HOST}.yy.tmp.pt"  # being written right now
    live.write_bytes(b"x")
    user_file = tmp_path / ".notes.tmp.txt"
    user_file.write_text("not ours")

    torch_save_atomic({"a": 2}, target)
    assert _temps(tmp_path) == sorted([live.name, user_file.name])
    assert torch.load(target, weights_only=True) == {"a": 2}


def test_temp_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    live = tmp_path / f".data.json.{os.getppid()}-{io._HOST}.abc.tmp.json"  # a running process writing now
    mine = tmp_path / f".data.json.{os.getpid()}-{io._HOST}.def.tmp.json"  # another thread of this process
    fresh_other_host = tmp_path / ".data.json.123-elsewhere.ghi.tmp.json"  # written since this run started
    for p in (live, mine, fresh_other_host):
        p.write_text("{}")
    write_json_atomic(target, {"ok": True})
    assert _temps(tmp_path) == sorted(p.name for p in (live, mine, fresh_other_host))
    assert remove_stale_temp_files(target) == []


def test_checkpoint_handler_cleans_leftovers_at_startup(tmp_path: Path) -> None:
    killed = tmp_path / f".checkpoint_last.pt.{_dead_pid()}-{io._HOST}.abc.tmp.pt"
    killed.write_bytes(b"x" * 100)
    handler = GANCheckpointHandler(tmp_path, {"net": torch.nn.Linear(1, 1)}, save_interval=0)
    handler.load(Engine(lambda e, b: None))  # what runs on STARTED, before any save
    assert not killed.exists()


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6848 vs 6742"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
    ids=["torch_short_write", "enospc"],
)
def test_disk_full_during_a_checkpoint_write_names_the_path_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    target = tmp_path / "checkpoint_last.pt"
    torch_save_atomic({"good": 1}, target)

    def full_disk_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise error

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full_disk_save)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 0))
    with pytest.raises(DiskFullError, match="disk is full") as info:
        torch_save_atomic({"good": 2}, target)
    assert str(target) in str(info.value) and info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"good": 1}
    assert _temps(tmp_path) == []


def test_other_write_errors_are_not_called_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj, f, *args, **kwargs):
        raise RuntimeError("unexpected pos 1 vs 2")

    monkeypatch.setattr(torch, "save", broken)  # plenty of space left on tmp_path's disk
    monkeypatch.setattr(io, "_LOW_SPACE_BYTES", 0)
    with pytest.raises(RuntimeError, match="unexpected pos") as info:
        torch_save_atomic({}, tmp_path / "x.pt")
    assert not isinstance(info.value, DiskFullError)
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad object")))
    with pytest.raises(ValueError, match="bad object"):
        torch_save_atomic({}, tmp_path / "x.pt")
    assert _temps(tmp_path) == []


def test_written_files_follow_the_umask_like_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        torch_save_atomic({"a": 1}, tmp_path / "generator.pt")
        write_json_atomic(tmp_path / "datalist.json", [])
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        os.umask(0o002)
        write_json_atomic(tmp_path / "group.json", [])
        os.chmod(tmp_path / "datalist.json", 0o640)
        write_json_atomic(tmp_path / "datalist.json", [1])  # a replaced file keeps its mode, as with open()
    finally:
        os.umask(old)
    mode = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert mode == {"generator.pt": 0o644, "plain.txt": 0o644, "group.json": 0o664, "datalist.json": 0o640}
