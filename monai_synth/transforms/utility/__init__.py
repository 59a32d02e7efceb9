"""Utility transforms: pairing checks."""

from __future__ import annotations

from .array import EnsurePairedShape
from .dictionary import EnsurePairedShaped, EnsurePairedShapeD, EnsurePairedShapeDict

__all__ = ["EnsurePairedShape", "EnsurePairedShaped", "EnsurePairedShapeD", "EnsurePairedShapeDict"]
