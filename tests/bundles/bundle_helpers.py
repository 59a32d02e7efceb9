"""Run bundles the way a user does and check the outcome.

:func:`bundle` runs ``monai.bundle <args>`` in this process (the command line parsed by Python Fire
exactly as ``python -m monai.bundle`` parses it) and returns what a subprocess would have printed;
:func:`bundle_cli` is the real ``python -m monai.bundle`` subprocess, kept for one smoke run per config
file (``test_cli_smoke.py``) and for what only a process shows (its exit status, its last line).
A subprocess costs 5-6 s of imports; the in-process run costs only the run itself.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "schemas" / "bundle_metadata_schema.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def with_overrides(args: list[str], **changes: str) -> list[str]:
    """``args`` with the values of the named ``--key value`` overrides replaced."""
    out = list(args)
    for key, value in changes.items():
        out[out.index(f"--{key}") + 1] = value
    return out


def bundle_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in a subprocess, the repository importable and one OpenMP thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


class _Capture(logging.Handler):
    """Collects every log record of the run, formatted like the bundles' ``logging.conf``."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")


def _loggers() -> list[logging.Logger]:
    return [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]


@contextlib.contextmanager
def _isolated(cwd: Path, stdout: io.StringIO, stderr: io.StringIO):
    """What a subprocess would not leak into the test process: undone when the run ends.

    The working directory, ``sys.path`` (``ConfigWorkflow.run`` inserts the bundle root), environment
    variables (``mlflow.set_tracking_uri`` sets ``MLFLOW_TRACKING_URI``), logging (``logging.conf`` replaces
    the root handlers; its console handler writes to the ``sys.stdout`` of the run), torch's thread count
    (one, as ``OMP_NUM_THREADS=1`` gives the subprocess), grad mode and the random generators
    (``set_determinism`` seeds them), and an MLflow run or tracking URI left active.
    """
    saved_cwd, saved_path, saved_env = os.getcwd(), list(sys.path), dict(os.environ)
    saved_loggers = {lg: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in _loggers()}
    saved_threads, saved_grad = torch.get_num_threads(), torch.is_grad_enabled()
    saved_rng = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    capture = _Capture(stderr)
    for lg, (_, _, propagate, _) in saved_loggers.items():
        if lg is logging.getLogger() or not propagate:
            lg.addHandler(capture)  # records of loggers with their own stdout handler (MONAI's) included
    mlflow_uri = None
    if "mlflow" in sys.modules:
        from mlflow.tracking._tracking_service import utils as mlflow_utils

        mlflow_uri = mlflow_utils._tracking_uri
    try:
        os.chdir(cwd)
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)
        for lg in _loggers():
            if lg in saved_loggers:
                level, lg.handlers[:], lg.propagate, lg.disabled = saved_loggers[lg]
                lg.setLevel(level)
            else:
                lg.removeHandler(capture)
            for handler in lg.handlers:  # a handler created during the run must not keep writing to its capture
                if isinstance(handler, logging.StreamHandler) and handler.stream in (stdout, stderr):
                    handler.setStream(sys.stdout if handler.stream is stdout else sys.stderr)
        torch.set_num_threads(saved_threads)
        torch.set_grad_enabled(saved_grad)
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        torch.random.set_rng_state(saved_rng[2])
        if "mlflow" in sys.modules:
            import mlflow
            from mlflow.tracking._tracking_service import utils as mlflow_utils

            while mlflow.active_run() is not None:
                mlflow.end_run()
            mlflow_utils._tracking_uri = mlflow_uri


def bundle(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` run in this process; the result reads like the subprocess's.

    The arguments go through Python Fire as on the command line (``"[16, 8]"`` -> a list, ``"False"`` ->
    a bool, ``"many"`` -> a string) to the same ``monai.bundle`` function, in ``cwd``. A failure gives
    return code 1 and, on stderr after the captured output, the whole exception chain as the
    interpreter prints it (plus the ``monai_synth:`` root-cause line when the project's hook is installed).

    Args:
        args: the command line after ``python -m monai.bundle``, e.g. ``["run", "--config_file", ...]``.
        cwd: working directory of the run.
        timeout: unused (kept so call sites read like :func:`bundle_cli`'s).

    Returns:
        ``CompletedProcess`` with ``returncode``, ``stdout`` (printed output and the bundle's console log)
        and ``stderr`` (warnings, progress bars, every log record, the traceback of a failure).
    """
    import fire
    import monai.bundle.__main__ as cli

    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            with _isolated(Path(cwd), stdout, stderr):
                fire.Fire(cli, command=[str(a) for a in args], name="monai.bundle")
        except SystemExit as e:  # Fire's usage errors (code 2)
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # noqa: BLE001 - reported as the interpreter would report it
            code = 1
            hook = sys.excepthook if getattr(sys.excepthook, "monai_synth", False) else traceback.print_exception
            with contextlib.redirect_stderr(stderr):
                hook(type(e), e, e.__traceback__)
    warned = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return subprocess.CompletedProcess(
        ["monai.bundle", *map(str, args)], code, stdout.getvalue(), warned + stderr.getvalue()
    )


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def failed_with(result: subprocess.CompletedProcess, *phrases: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-2000:]
    for phrase in phrases:
        assert phrase in out, f"{phrase!r} not in output:\n{out[-3000:]}"
