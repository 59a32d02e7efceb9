"""monai_synth.transforms: MONAI-style array and dictionary transforms for paired image + mask work.

Groups (each with ``array.py`` and thin ``dictionary.py`` versions):

- ``intensity``: :class:`NormalizeToRange` (CT window, MRI percentile / z-score, min-max, fixed) to [-1, 1].
- ``spatial``: :class:`CropResize` / :class:`PairedCropResized` (centre square crop + resize).
- ``mask``: :class:`MapMaskValues` (raw mask -> labels 0..K-1), :class:`OneHotMask`, and the paired
  encoding :class:`EncodePaired` / :class:`DecodePaired` / :func:`mask_channels` of docs/DESIGN.md.
- ``utility``: :class:`EnsurePairedShape` / :class:`EnsurePairedShaped` (image and mask pair up).
"""

from __future__ import annotations

from .intensity import NORMALIZE_MODES, NormalizeToRange, NormalizeToRangeD, NormalizeToRanged, NormalizeToRangeDict
from .mask import (
    DecodePaired,
    DecodePairedD,
    DecodePairedd,
    DecodePairedDict,
    EncodePaired,
    EncodePairedD,
    EncodePairedd,
    EncodePairedDict,
    MapMaskValues,
    MapMaskValuesD,
    MapMaskValuesd,
    MapMaskValuesDict,
    OneHotMask,
    OneHotMaskD,
    OneHotMaskd,
    OneHotMaskDict,
    mask_channels,
)
from .postprocessing import (
    PostprocessMask,
    PostprocessMaskD,
    PostprocessMaskd,
    PostprocessMaskDict,
    mask_change_fraction,
)
from .spatial import LABEL_SAFE_MODES, CropResize, PairedCropResizeD, PairedCropResized, PairedCropResizeDict
from .utility import EnsurePairedShape, EnsurePairedShapeD, EnsurePairedShaped, EnsurePairedShapeDict

__all__ = [
    "PostprocessMask",
    "PostprocessMaskd",
    "PostprocessMaskD",
    "PostprocessMaskDict",
    "mask_change_fraction",
    "NORMALIZE_MODES",
    "NormalizeToRange",
    "NormalizeToRanged",
    "NormalizeToRangeD",
    "NormalizeToRangeDict",
    "LABEL_SAFE_MODES",
    "CropResize",
    "PairedCropResized",
    "PairedCropResizeD",
    "PairedCropResizeDict",
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
    "EnsurePairedShape",
    "EnsurePairedShaped",
    "EnsurePairedShapeD",
    "EnsurePairedShapeDict",
]
