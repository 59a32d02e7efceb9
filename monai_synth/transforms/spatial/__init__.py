"""Spatial transforms: centre crop to a square and resize image and mask together."""

from __future__ import annotations

from .array import LABEL_SAFE_MODES, CropResize
from .dictionary import PairedCropResizeD, PairedCropResized, PairedCropResizeDict

__all__ = ["LABEL_SAFE_MODES", "CropResize", "PairedCropResized", "PairedCropResizeD", "PairedCropResizeDict"]
