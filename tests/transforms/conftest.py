"""Fixtures for the transform tests: small NIfTI files loaded through MONAI ``LoadImage``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, LoadImage


@pytest.fixture
def nifti_loader(tmp_path: Path) -> Callable[[np.ndarray, str], MetaTensor]:
    """Write a ``(H, W)`` array as NIfTI in ``tmp_path`` and return it loaded as a channel-first MetaTensor."""
    load = LoadImage(image_only=True)
    channel_first = EnsureChannelFirst()

    def _write_and_load(array: np.ndarray, name: str) -> MetaTensor:
        path = tmp_path / name
        nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))
        return channel_first(load(str(path)))

    return _write_and_load
