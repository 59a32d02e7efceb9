"""Dictionary versions of :mod:`monai_synth.transforms.spatial.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from monai_synth.transforms.spatial.array import CropResize
from monai_synth.transforms.utils import describe_source, source_name_from_dict, spatial_shape

__all__ = ["PairedCropResized", "PairedCropResizeD", "PairedCropResizeDict"]


class PairedCropResized(MapTransform):
    """Crop image and mask to the same centred square and resize both, each with its own mode.

    ``d[key]`` ``(C, H, W) -> (C, S, S)`` for every key. All keys must share one spatial shape, otherwise
    the crops would not correspond.

    Args:
        keys: keys to transform, usually ``("image", "label")``.
        spatial_size: output spatial size ``S`` (int -> square).
        mode: interpolation mode per key (or one for all); default ``("area", "nearest")`` so that the
            label stays integer with no new values. Use ``"bilinear"`` for images when up-sampling.
        crop_to_square: see :class:`CropResize`.
        anti_aliasing: see :class:`CropResize` (never applied with nearest modes).
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: the keys have different spatial shapes (message names the files and shapes).

    Example::

        PairedCropResized(keys=("image", "label"), spatial_size=128)
    """

    backend = CropResize.backend

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        spatial_size: int | Sequence[int] = 128,
        mode: str | Sequence[str] = ("area", "nearest"),
        crop_to_square: bool = True,
        anti_aliasing: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        modes = ensure_tuple_rep(mode, len(self.keys))
        self.resizers = {
            key: CropResize(spatial_size, mode=m, crop_to_square=crop_to_square, anti_aliasing=anti_aliasing)
            for key, m in zip(self.keys, modes)
        }

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = list(self.key_iterator(d))
        shapes = {key: spatial_shape(d[key]) for key in present}
        if len(set(shapes.values())) > 1:
            parts = [f"{describe_source(str(k), source_name_from_dict(d, k))} {shapes[k]}" for k in present]
            raise ValueError(
                "PairedCropResized: spatial shapes differ, so the crops would not correspond: "
                + " vs ".join(parts)
                + ". Fix the pair (or resample the mask onto the image) before cropping."
            )
        for key in present:
            d[key] = self.resizers[key](d[key])
        return d


PairedCropResizeD = PairedCropResizeDict = PairedCropResized
