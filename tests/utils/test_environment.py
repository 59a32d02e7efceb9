"""Tests of monai_synth.utils.environment: versions, git commit and hardware recorded by runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from monai_synth.utils.environment import environment_info, git_commit, hardware_info, package_versions


def test_versions_and_hardware() -> None:
    versions = package_versions(("torch", "no-such-distribution-xyz"))
    assert {"python", "monai_synth", "torch"} <= set(versions)
    assert versions["no-such-distribution-xyz"] == "not installed"
    info = hardware_info("cpu")
    assert info["device"] == "cpu" and info["cpu_count"] >= 1 and info["torch_threads"] >= 1 and "gpu" not in info
    assert hardware_info()["device"] is None
    environment = environment_info("cpu")
    assert set(environment) == {"versions", "hardware"} and environment["hardware"]["device"] == "cpu"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_of_a_checkout(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    assert git_commit(tmp_path) is None  # not a checkout
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    sha = git("rev-parse", "HEAD").strip()
    assert git_commit(tmp_path) == sha
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path) == sha + "+dirty"
