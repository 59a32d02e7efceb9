"""What a run ran on: package versions, git commit, hardware and device, recorded next to its results.

Used by the downstream study (``results.json``) and by the training summary
(:class:`~monai_synth.handlers.TrainingSummaryWriter`, ``summary.json``), so both record the same facts
under the same names.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["DISTRIBUTIONS", "package_versions", "git_commit", "hardware_info", "environment_info"]

#: Distributions whose versions are recorded (besides Python and monai_synth itself).
DISTRIBUTIONS = ("torch", "monai", "pytorch-ignite", "numpy", "scipy", "scikit-posthocs", "mlflow", "matplotlib")


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """Commit of the git checkout ``path`` lives in, with ``+dirty`` when tracked files are modified.

    Args:
        path: a folder of the checkout; default: the one monai_synth is imported from. Only a checkout
            whose top level holds this ``monai_synth`` package counts (an installed copy inside some other
            repository does not).

    Returns:
        The commit hash (``"<sha>+dirty"`` with uncommitted changes), or ``None`` outside a checkout or
        without git.
    """
    package = Path(__file__).resolve().parents[1]
    folder = Path(path) if path is not None else package.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout

    try:
        top = git("rev-parse", "--show-toplevel", "HEAD").split()
        if path is None and (len(top) != 2 or Path(top[0]).resolve() != package.parent):
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return top[-1] + ("+dirty" if dirty else "")


def package_versions(distributions: Sequence[str] = DISTRIBUTIONS) -> dict[str, str]:
    """Versions of Python, monai_synth and ``distributions`` (``"not installed"`` when missing).

    Returns:
        ``{"python": ..., "monai_synth": ..., "torch": ..., ...}``, plus ``"git_commit"`` when monai_synth
        runs from a git checkout.
    """
    import monai_synth

    versions = {"python": platform.python_version(), "monai_synth": monai_synth.__version__}
    for distribution in distributions:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    commit = git_commit()
    if commit is not None:
        versions["git_commit"] = commit
    return versions


def hardware_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Platform, CPUs, torch threads and the device a run used (with the GPU name on CUDA).

    Args:
        device: the run's device; ``None`` when unknown.

    Returns:
        ``{"platform", "machine", "processor", "cpu_count", "cpus_available" (Linux), "torch_threads",
        "device", "gpu" (CUDA only)}``.
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": None if device is None else str(device),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def environment_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """``{"versions": package_versions(), "hardware": hardware_info(device)}``: what a run records."""
    return {"versions": package_versions(), "hardware": hardware_info(device)}
