"""RunLock: flock on POSIX, O_EXCL + pid liveness where fcntl is missing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from monai_synth.utils import locking
from monai_synth.utils.locking import LockHeldError, RunLock


@pytest.fixture(params=["flock", "exclusive"])
def mechanism(request, monkeypatch) -> str:
    if request.param == "exclusive":
        monkeypatch.setattr(locking, "fcntl", None)
    elif locking.fcntl is None:
        pytest.skip("no fcntl on this platform")
    return request.param


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path, mechanism):
    path = tmp_path / ".lock"
    with RunLock(path) as lock:
        assert lock.held and json.loads(path.read_text()) == {"pid": os.getpid(), "host": platform.node()}
        with pytest.raises(LockHeldError, match=f"held by pid {os.getpid()} on host") as err:
            RunLock(path).acquire()
        assert (err.value.pid, err.value.host, err.value.path) == (os.getpid(), platform.node(), path)
    assert not path.exists()
    with RunLock(path):  # released: taken again
        pass


def test_a_lock_file_of_a_dead_process_is_taken_over(tmp_path, mechanism):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": platform.node()}))
    with RunLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_without_fcntl_a_lock_of_another_host_is_never_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(locking, "fcntl", None)
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(LockHeldError, match="pid 1 on host elsewhere"):
        RunLock(path).acquire()
    assert json.loads(path.read_text())["host"] == "elsewhere"
