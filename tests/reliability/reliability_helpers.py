"""Fault-injection helpers: run bundles in-process or as real subprocesses, kill them, compare what is on disk."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monai.bundle
import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
KILL_SWITCH = Path(__file__).resolve().parent / "kill_switch.py"

# tiny paired_dcgan training on the phantom (the smallest set that trains, from tests/bundles)
DCGAN_TINY: dict[str, Any] = {
    "image_size": 32,
    "latent_dim": 8,
    "generator_channels": [16, 8],
    "discriminator_channels": [8, 16],
    "batch_size": 4,
    "phantom_samples": 8,
    "max_epochs": 2,
    "iterations_per_epoch": 2,
    "sample_interval": 2,
    "checkpoint_interval": 2,
    "log_interval": 1,
    "num_grid_samples": 4,
    "device": "cpu",
}

# tiny datasetgan (StyleGAN2) training in paired mode: 4 phantoms, batch 4, one iteration
DATASETGAN_TINY: dict[str, Any] = {
    "image_size": 32,
    "z_dim": 16,
    "w_dim": 16,
    "channel_base": 256,
    "channel_max": 16,
    "batch_size": 4,
    # an expression: main's override check takes the type of "kimg": 20 (int) and refuses 0.004 (see report)
    "kimg": "$0.004",
    "phantom_samples": 4,
    "phantom_binary": True,
    "sample_interval": 1,
    "checkpoint_interval": 1,
    "num_grid_samples": 4,
    "mode": "paired",
    "device": "cpu",
}


def config_file(bundle: str, name: str) -> str:
    """``bundles/<bundle>/configs/<name>.json`` of this repository."""
    return str(REPO / "bundles" / bundle / "configs" / f"{name}.json")


def cli_args(overrides: dict[str, Any]) -> list[str]:
    """``--key value`` arguments as a user types them (Python literals for lists, dicts, booleans, None)."""
    args: list[str] = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return args


def run_bundle(config: str, **overrides: Any) -> None:
    """``monai.bundle.run(config_file=config, **overrides)`` in this process (raises what the run raises).

    The bundle root defaults to the output folder, so the published ``models/`` does not land in the
    working directory (the repository, when pytest runs from it).
    """
    if "output_dir" in overrides:
        overrides.setdefault("bundle_root", overrides["output_dir"])
    monai.bundle.run(config_file=config, **overrides)


def error_text(error: BaseException) -> str:
    """Every message of an exception chain, outermost first (what the traceback shows a user)."""
    lines, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        lines.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(lines)


def bundle_error(config: str, **overrides: Any) -> str:
    """Run a bundle in-process that must fail; return the text of its exception chain."""
    try:
        run_bundle(config, **overrides)
    except Exception as e:  # noqa: BLE001 - any exception is the expected outcome here
        return error_text(e)
    pytest.fail(f"{Path(config).name} with {overrides} ran to completion; it should have been refused")


def bundle_env() -> dict[str, str]:
    """Environment of a bundle subprocess: this repository importable, one OpenMP thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def spawn(config: str, overrides: dict[str, Any], log: Path, cwd: Path, kill_switch: dict[str, str] | None = None):
    """Start ``python -m monai.bundle run --config_file <config> --key value ...`` (stdout and stderr to ``log``).

    With ``kill_switch`` (environment variables of ``kill_switch.py``) the same command runs through
    ``tests/reliability/kill_switch.py``, which kills the process in the middle of a chosen file write.
    """
    entry = [str(KILL_SWITCH)] if kill_switch else ["-m", "monai.bundle"]
    env = bundle_env() | (kill_switch or {})
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, *entry, "run", "--config_file", config, *cli_args(overrides)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_killed(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Wait for a process that kills itself (kill switch); fail if it ends any other way."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"not killed within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
    assert code == -signal.SIGKILL, f"exit code {code}, expected SIGKILL:\n{log.read_text(errors='replace')[-3000:]}"


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout: float = 300) -> None:
    """Poll ``ready()`` every 10 ms while ``process`` runs; when it holds, ``kill -9`` the process.

    Fails when the process ends on its own first (the kill point was never reached) or on timeout.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(
                f"process ended (code {process.returncode}) before the kill point:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"kill point not reached within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    code = process.wait(timeout=60)
    assert code == -signal.SIGKILL, f"process ended with {code} before the kill landed"


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """``{relative path: (mtime_ns, sha256)}`` of every file under ``folder`` ({} when it does not exist)."""
    if not folder.exists():
        return {}
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out[str(path.relative_to(folder))] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def unchanged(before: dict[str, tuple[int, str]], folder: Path) -> list[str]:
    """Files of ``before`` that are now missing or changed under ``folder``."""
    after = snapshot(folder)
    return sorted(name for name, state in before.items() if after.get(name) != state)


def temp_files(folder: Path) -> list[str]:
    """Hidden temporary files left by the atomic writers (``.<name>.<random>.tmp<suffix>``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp*"))


def _assert_close_records(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            _assert_close_records(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close_records(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_generated_set(resumed: Path, reference: Path) -> None:
    """Two ``generate.json`` folders hold the same set: datalist equal, manifest pairs equal (floats to
    1e-5), every label byte-equal after loading, every image equal to 1e-5 (never bit-equality)."""
    datalist = json.loads((resumed / "datalist.json").read_text())
    assert datalist == json.loads((reference / "datalist.json").read_text())
    manifest = json.loads((resumed / "manifest.json").read_text())
    expected = json.loads((reference / "manifest.json").read_text())
    assert manifest["fingerprint"] == expected["fingerprint"] and manifest["num_samples"] == expected["num_samples"]
    _assert_close_records(manifest["pairs"], expected["pairs"], "manifest.pairs")

    def pair_files(folder: Path) -> list[str]:  # temporary files are item 1's test, not this comparison's
        return sorted(p.name for p in (folder / "pairs").iterdir() if not p.name.startswith("."))

    assert pair_files(resumed) == pair_files(reference)
    assert datalist["training"], "empty datalist"
    for item in datalist["training"]:
        label = np.asarray(nib.load(str(resumed / item["label"])).dataobj)
        label_ref = np.asarray(nib.load(str(reference / item["label"])).dataobj)
        assert label.dtype == label_ref.dtype and label.tobytes() == label_ref.tobytes(), item["label"]
        image = np.asarray(nib.load(str(resumed / item["image"])).dataobj)
        image_ref = np.asarray(nib.load(str(reference / item["image"])).dataobj)
        np.testing.assert_allclose(image, image_ref, atol=1e-5, rtol=0, err_msg=item["image"])
