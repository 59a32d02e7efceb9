"""Mask transforms: raw masks to integer labels, one-hot, and the paired image + mask encoding."""

from __future__ import annotations

from .array import DecodePaired, EncodePaired, MapMaskValues, OneHotMask, mask_channels
from .dictionary import (
    DecodePairedD,
    DecodePairedd,
    DecodePairedDict,
    EncodePairedD,
    EncodePairedd,
    EncodePairedDict,
    MapMaskValuesD,
    MapMaskValuesd,
    MapMaskValuesDict,
    OneHotMaskD,
    OneHotMaskd,
    OneHotMaskDict,
)

__all__ = [
    "mask_channels",
    "MapMaskValues",
    "MapMaskValuesd",
    "MapMaskValuesD",
    "MapMaskValuesDict",
    "OneHotMask",
    "OneHotMaskd",
    "OneHotMaskD",
    "OneHotMaskDict",
    "EncodePaired",
    "EncodePairedd",
    "EncodePairedD",
    "EncodePairedDict",
    "DecodePaired",
    "DecodePairedd",
    "DecodePairedD",
    "DecodePairedDict",
]
