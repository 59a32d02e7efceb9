"""Atomic file writing: a killed run never leaves a half-written file behind.

Every writer here writes to a temporary file in the destination folder and renames it into place
with :func:`os.replace`, which is atomic on POSIX and Windows for files on the same file system.
Temporary files are named ``.<name>.<pid>-<host>.<random>.tmp<suffix>``: a later write into the same
folder removes those whose writer is gone (so a ``kill -9`` mid-write does not leak disk), while
a live concurrent writer's file is left alone. Final files get the permissions a plain ``open()``
would give them (the process umask, or the mode of the file they replace), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DiskFullError",
    "atomic_path",
    "remove_stale_temp_files",
    "write_json_atomic",
    "read_json",
    "save_nifti_atomic",
    "save_png_atomic",
    "torch_save_atomic",
]

logger = logging.getLogger(__name__)

#: when this process started writing: temp files of the old (pid-less) naming older than this are stale
_RUN_STARTED = time.time()
_HOST = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()) or "host"
# torch.save reports a short write (disk full, quota) as a RuntimeError from its zip writer
_WRITE_FAILURE = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed writing", re.IGNORECASE)
_LOW_SPACE_BYTES = 16 * 2**20
_ABANDONED_SECONDS = 600.0


class DiskFullError(OSError):
    """Writing a file failed because its file system is full (or the quota is used up)."""


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _is_stale(candidate: Path, owner: re.Match | None) -> bool:
    if owner is not None and owner.group(2) == _HOST:
        pid = int(owner.group(1))
        return pid != os.getpid() and not _pid_alive(pid)
    # another host's writer (or the pid-less naming): its pid cannot be checked here, so only a file
    # untouched since before this process started, and for 10 minutes, counts as abandoned
    return candidate.stat().st_mtime < min(_RUN_STARTED, time.time() - _ABANDONED_SECONDS)


def _remove_stale(folder: Path, match: Any) -> list[Path]:
    """Remove files of ``folder`` for which ``match(name)`` returns an owner match (or ``True``) and are stale."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = match(entry.name)
        if found is None or found is False:
            continue
        candidate = Path(entry.path)
        try:
            if _is_stale(candidate, found if isinstance(found, re.Match) else None):
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:  # another writer cleaned or renamed it meanwhile
            continue
    if removed:
        logger.info("Removed %d temporary file(s) left by interrupted writes in %s.", len(removed), folder)
    return removed


def remove_stale_temp_files(path: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Remove temporary files of :func:`atomic_path` for ``path`` whose writer is gone; return them.

    A temporary file is stale when its writer's pid (encoded in its name) no longer runs on this host,
    or, for files of another host or of the older pid-less naming, when it was last modified before this
    process started and more than 10 minutes ago.
    Files of live writers (another process writing the same destination now) are kept.

    Args:
        path: the destination whose leftovers to remove.
        suffix: the temporary files' suffix (as for :func:`atomic_path`); defaults to the destination's.

    Returns:
        The removed files.
    """
    path = Path(path)
    if suffix is None:
        suffix = "".join(path.suffixes)
    prefix, tail = _temp_prefix(path), f".tmp{suffix}"

    def match(name: str) -> re.Match | bool | None:
        if not (name.startswith(prefix) and name.endswith(tail)) or len(name) <= len(prefix) + len(tail):
            return None
        owner = re.fullmatch(r"(\d+)-([A-Za-z0-9-]+)\.[^.]+", name[len(prefix) : -len(tail)])
        return owner if owner is not None else True

    return _remove_stale(path.parent, match)


# any destination's temporary file: ".<name>.<pid>-<host>.<random>.tmp<suffix>"
_ANY_TEMP = re.compile(r"\..+\.(\d+)-([A-Za-z0-9-]+)\.[A-Za-z0-9_]+\.tmp(\.[^.]+)*")
# the same before pids were recorded (mkstemp's 8 random characters); removed only when older than this run
_OLD_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)*")
_RESCAN_SECONDS = 30.0
_last_scan: dict[str, float] = {}


def _clean_folder_now_and_then(folder: Path) -> None:
    """Remove stale temporary files of every destination in ``folder``, at most every 30 s per process.

    Listing a folder of 20,000 generated files takes ~20 ms, so a scan at every write would dominate
    writing a large dataset; the checkpoint handler also cleans its own files at startup.
    """
    key, now = str(folder), time.monotonic()
    if now - _last_scan.get(key, -_RESCAN_SECONDS) < _RESCAN_SECONDS:
        return
    _last_scan[key] = now
    _remove_stale(folder, lambda name: _ANY_TEMP.fullmatch(name) or _OLD_TEMP.fullmatch(name) is not None or None)


def _process_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the replaced file's, else ``0o666 & ~umask``."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_process_umask()


def _disk_full_error(path: Path, error: BaseException) -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``path`` when ``error`` is a failed write on a full disk."""
    is_nospace = isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
    short_write = isinstance(error, RuntimeError) and _WRITE_FAILURE.search(str(error)) is not None
    if not (is_nospace or short_write):
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if not is_nospace and free is not None and free > _LOW_SPACE_BYTES:
        return None  # a write failure with room left: not a full disk, keep the original error
    room = "no space" if free is None else f"{free / 2**20:.1f} MiB free"
    return DiskFullError(
        errno.ENOSPC,
        f"Writing {path} failed: the disk is full ({room} on the file system of {path.parent}; "
        f"{type(error).__name__}: {error}). The previous {path.name} is intact and the partial file was removed. "
        "Free some disk space (or choose an output folder on another disk) and run again.",
        str(path),
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    Temporary files left by earlier interrupted writes into the same folder are removed first (at most
    every 30 s per folder; :func:`remove_stale_temp_files` does it for one destination at once). The
    final file gets the permissions of a plain ``open()``.

    Args:
        path: final destination. Its parent folder is created if needed.
        suffix: suffix of the temporary file (some writers pick the format from it); defaults to the
            destination's full suffix (``.nii.gz`` stays ``.nii.gz``).

    Raises:
        DiskFullError: the block failed writing because the disk is full; ``path`` keeps its old content.

    Example::

        with atomic_path("out/model.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    _clean_folder_now_and_then(path.parent)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{_temp_prefix(path)}{os.getpid()}-{_HOST}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except (OSError, RuntimeError) as e:
            full = _disk_full_error(path, e)
            if full is not None:
                raise full from e
            raise
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, default=_json_default)
            f.write("\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising a :class:`ValueError` that names the file when it is corrupt."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or delete the file.") from e


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # 0-d torch tensors
        return obj.item()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def save_nifti_atomic(
    path: str | os.PathLike, array: np.ndarray, affine: np.ndarray | None = None, dtype: Any = None
) -> Path:
    """Save a 2D or 3D array as NIfTI (``.nii`` or ``.nii.gz``) atomically.

    Args:
        path: destination ending in ``.nii`` or ``.nii.gz``.
        array: spatial array ``(H, W)`` / ``(H, W, D)``, or channel-first ``(C, H, W)`` with ``C > 1``
            which is stored channel-last as NIfTI expects for vector images.
        affine: 4x4 affine; identity (1 mm spacing) when omitted.
        dtype: on-disk data type; defaults to the array's own.
    """
    import nibabel as nib

    array = np.asarray(array)
    if dtype is not None:
        array = array.astype(dtype)
    if array.ndim == 3 and array.shape[0] > 1 and array.shape[0] <= 8:
        array = np.moveaxis(array, 0, -1)[:, :, None, :]  # (H, W, 1, C): NIfTI vector image
    elif array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    image = nib.Nifti1Image(array, np.eye(4) if affine is None else affine)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return Path(path)


def save_png_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save a ``(H, W)`` or ``(H, W, 3)`` uint8 array as PNG atomically."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"save_png_atomic expects uint8, got {array.dtype} for {path}")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically: an interrupted save keeps the previous checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
