"""Dictionary versions of :mod:`monai_synth.transforms.intensity.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from monai_synth.transforms.intensity.array import NormalizeToRange

__all__ = ["NormalizeToRanged", "NormalizeToRangeD", "NormalizeToRangeDict"]


class NormalizeToRanged(MapTransform):
    """Dictionary version of :class:`NormalizeToRange`: maps ``d[key]`` ``(C, H, W)`` to [-1, 1].

    Args:
        keys: keys to normalise, usually ``"image"`` (never the label).
        mode, window, percentiles, zscore_clip, channel_wise, input_range: see :class:`NormalizeToRange`.
        allow_missing_keys: don't raise if a key is missing.

    Example::

        NormalizeToRanged(keys="image", mode="fixed", input_range=(0, 255))
    """

    backend = NormalizeToRange.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        mode: str = "minmax",
        window: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        zscore_clip: float = 3.0,
        channel_wise: bool = True,
        input_range: tuple[float, float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeToRange(
            mode=mode,
            window=window,
            percentiles=percentiles,
            zscore_clip=zscore_clip,
            channel_wise=channel_wise,
            input_range=input_range,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


NormalizeToRangeD = NormalizeToRangeDict = NormalizeToRanged
