"""Intensity transforms: raw intensities (HU, MRI, 8-bit) to [-1, 1]."""

from __future__ import annotations

from .array import NORMALIZE_MODES, NormalizeToRange
from .dictionary import NormalizeToRangeD, NormalizeToRanged, NormalizeToRangeDict

__all__ = ["NORMALIZE_MODES", "NormalizeToRange", "NormalizeToRanged", "NormalizeToRangeD", "NormalizeToRangeDict"]
