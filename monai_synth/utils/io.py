"""Atomic file writing: a killed run never leaves a half-written file behind.

Every writer here writes to a temporary file in the destination folder and renames it into place
with :func:`os.replace`, which is atomic on POSIX and Windows for files on the same file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "write_json_atomic",
    "read_json",
    "save_nifti_atomic",
    "save_png_atomic",
    "torch_save_atomic",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    Args:
        path: final destination. Its parent folder is created if needed.
        suffix: suffix of the temporary file (some writers pick the format from it); defaults to the
            destination's full suffix (``.nii.gz`` stays ``.nii.gz``).

    Example::

        with atomic_path("out/model.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
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
