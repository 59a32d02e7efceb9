"""monai_synth.utils: atomic file writing, the export contract (generator / interpreter files), bundle overrides.

Also the one-writer run lock (``locking``), pictures of pairs (``pair_grid``, ``to_uint8``) and environment capture for run records.
"""

from __future__ import annotations

from .io import (
    DiskFullError,
    atomic_path,
    read_json,
    remove_stale_temp_files,
    save_nifti_atomic,
    save_png_atomic,
    torch_save_atomic,
    write_json_atomic,
)
from .visualize import LABEL_PALETTE, pair_grid

__all__ = [
    "DiskFullError",
    "LABEL_PALETTE",
    "atomic_path",
    "pair_grid",
    "read_json",
    "remove_stale_temp_files",
    "save_nifti_atomic",
    "save_png_atomic",
    "torch_save_atomic",
    "write_json_atomic",
]
