"""Dictionary versions of :mod:`monai_synth.transforms.utility.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from monai_synth.transforms.utility.array import EnsurePairedShape
from monai_synth.transforms.utils import source_name_from_dict

__all__ = ["EnsurePairedShaped", "EnsurePairedShapeD", "EnsurePairedShapeDict"]


class EnsurePairedShaped(MapTransform):
    """Check that ``d[keys[0]]`` (the image) and every other key (labels) have the same spatial shape.

    File names in the errors come from the MetaTensor meta (``filename_or_obj``), the
    ``<key>_meta_dict`` or the bookkeeping keys ``image_path`` / ``label_path`` (``<key>_path``).
    The data is returned unchanged.

    Args:
        keys: the image key first, then the label key(s); default ``("image", "label")``.
        image_channels: expected number of channels of the image (first key), or ``None``.
        label_channels: expected number of channels of the other keys, or ``None``.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: spatial shapes differ or a channel count is not the configured one.

    Example::

        EnsurePairedShaped(keys=("image", "label"), image_channels=1)
    """

    backend = EnsurePairedShape.backend

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        image_channels: int | None = None,
        label_channels: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = EnsurePairedShape(image_channels=image_channels, label_channels=label_channels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present or present[0] != self.keys[0]:
            return d  # image key missing and allowed: nothing to compare against
        image_key = present[0]
        image_name = source_name_from_dict(d, str(image_key))
        for key in present[1:]:
            self.checker(d[image_key], d[key], image_name=image_name, label_name=source_name_from_dict(d, str(key)))
        if len(present) == 1 and self.checker.image_channels is not None:
            # no label to compare with: still check the image channel count
            EnsurePairedShape(image_channels=self.checker.image_channels)(
                d[image_key], d[image_key], image_name=image_name, label_name=image_name
            )
        return d


EnsurePairedShapeD = EnsurePairedShapeDict = EnsurePairedShaped
