"""Utilities: atomic file writing, the one-writer run lock (`locking`), pictures of pairs."""

from __future__ import annotations

from .io import atomic_path, read_json, save_nifti_atomic, save_png_atomic, torch_save_atomic, write_json_atomic
from .visualize import LABEL_PALETTE, pair_grid

__all__ = [
    "LABEL_PALETTE",
    "atomic_path",
    "pair_grid",
    "read_json",
    "save_nifti_atomic",
    "save_png_atomic",
    "torch_save_atomic",
    "write_json_atomic",
]
