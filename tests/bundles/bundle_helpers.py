"""Run bundles the way a user does (``python -m monai.bundle ...`` in a subprocess) and check the outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "schemas" / "bundle_metadata_schema.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def with_overrides(args: list[str], **changes: str) -> list[str]:
    """``args`` with the values of the named ``--key value`` overrides replaced."""
    out = list(args)
    for key, value in changes.items():
        out[out.index(f"--{key}") + 1] = value
    return out


def bundle(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` with the repository importable and one OpenMP thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def failed_with(result: subprocess.CompletedProcess, *phrases: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-2000:]
    for phrase in phrases:
        assert phrase in out, f"{phrase!r} not in output:\n{out[-3000:]}"
