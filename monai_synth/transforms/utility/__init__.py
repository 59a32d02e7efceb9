"""Utility transforms: pairing checks."""

from __future__ import annotations

from .array import EnsurePairedShape
from .dictionary import EnsurePairedShapeD, EnsurePairedShaped, EnsurePairedShapeDict

__all__ = ["EnsurePairedShape", "EnsurePairedShaped", "EnsurePairedShapeD", "EnsurePairedShapeDict"]
