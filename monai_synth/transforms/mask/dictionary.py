"""Dictionary versions of :mod:`monai_synth.transforms.mask.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from monai_synth.transforms.mask.array import DecodePaired, EncodePaired, MapMaskValues, OneHotMask
from monai_synth.transforms.utils import source_name_from_dict

__all__ = [
    "MapMaskValuesd",
    "MapMaskValuesD",
    "MapMaskValuesDict",
    "OneHotMaskd",
    "OneHotMaskD",
    "OneHotMaskDict",
    "EncodePairedd",
    "EncodePairedD",
    "EncodePairedDict",
    "DecodePairedd",
    "DecodePairedD",
    "DecodePairedDict",
]


class MapMaskValuesd(MapTransform):
    """Dictionary version of :class:`MapMaskValues`: raw mask ``d[key]`` -> int64 labels ``(1, H, W)``.

    Errors name the file from the MetaTensor meta, ``d["<key>_meta_dict"]`` or ``d["<key>_path"]``
    (``label_path`` for the default key).

    Args:
        keys: mask keys, usually ``"label"``.
        mapping, threshold, num_classes, strict: see :class:`MapMaskValues`.
        allow_missing_keys: don't raise if a key is missing.

    Example::

        MapMaskValuesd(keys="label", threshold=127)
    """

    backend = MapMaskValues.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        mapping: Mapping[int | float, int] | None = None,
        threshold: float | None = None,
        num_classes: int | None = None,
        strict: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mapper = MapMaskValues(mapping=mapping, threshold=threshold, num_classes=num_classes, strict=strict)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.mapper(d[key], filename=source_name_from_dict(d, str(key)))
        return d


class OneHotMaskd(MapTransform):
    """Dictionary version of :class:`OneHotMask`: labels ``(1, H, W)`` -> ``(K, H, W)`` float32 {0, 1}.

    Args:
        keys: label keys.
        num_classes: ``K``, background included.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = OneHotMask.backend

    def __init__(self, keys: KeysCollection = "label", num_classes: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.onehot = OneHotMask(num_classes)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.onehot(d[key])
        return d


class EncodePairedd(MapTransform):
    """Dictionary version of :class:`EncodePaired`: ``d[output_key] = encode(d[image_key], d[label_key])``.

    The inputs stay in the dictionary. File names in errors come from the MetaTensor meta,
    ``d["<key>_meta_dict"]`` or ``d["image_path"]`` / ``d["label_path"]``.

    Args:
        image_key: image ``(C, H, W)`` in [-1, 1].
        label_key: integer labels ``(1, H, W)`` in ``0..K-1``.
        output_key: where the ``(C + M, H, W)`` paired tensor goes.
        num_classes: ``K``, background included.
        spatial_dims, tolerance: see :class:`EncodePaired`.
        allow_missing_keys: return the data unchanged when the image or label is missing.

    Example::

        EncodePairedd(image_key="image", label_key="label", output_key="pair", num_classes=2)
    """

    backend = EncodePaired.backend

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        output_key: str = "pair",
        num_classes: int = 2,
        spatial_dims: int = 2,
        tolerance: float = 1e-3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__((image_key, label_key), allow_missing_keys)
        self.image_key, self.label_key, self.output_key = image_key, label_key, output_key
        self.encoder = EncodePaired(num_classes=num_classes, spatial_dims=spatial_dims, tolerance=tolerance)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if len(list(self.key_iterator(d))) < 2:  # only reachable with allow_missing_keys=True
            return d
        d[self.output_key] = self.encoder(
            d[self.image_key],
            d[self.label_key],
            image_name=source_name_from_dict(d, self.image_key),
            label_name=source_name_from_dict(d, self.label_key),
        )
        return d


class DecodePairedd(MapTransform):
    """Dictionary version of :class:`DecodePaired`: ``d[image_key], d[label_key] = decode(d[key])``.

    Args:
        key: the paired tensor ``(C + M, H, W)`` (or batched ``(B, C + M, H, W)``).
        image_key: where the image ``(C, H, W)`` in [-1, 1] goes.
        label_key: where the int64 labels ``(1, H, W)`` go.
        image_channels, num_classes, threshold, spatial_dims: see :class:`DecodePaired`.
        allow_missing_keys: don't raise if ``key`` is missing.
        mode: what ``d[key]`` holds: ``"paired"`` (image + mask channels), ``"image"`` (image channels only:
            only ``image_key`` is written, clamped to [-1, 1]) or ``"mask"`` (mask channels only: only
            ``label_key`` is written) -- the three StyleGAN2 modes.

    Example::

        DecodePairedd(key="pair", image_channels=1, num_classes=2)
    """

    backend = DecodePaired.backend

    def __init__(
        self,
        key: str = "pair",
        image_key: str = "image",
        label_key: str = "label",
        image_channels: int = 1,
        num_classes: int = 2,
        threshold: float = 0.0,
        spatial_dims: int = 2,
        allow_missing_keys: bool = False,
        mode: str = "paired",
    ) -> None:
        super().__init__(key, allow_missing_keys)
        if mode not in ("paired", "image", "mask"):
            raise ValueError(f"DecodePairedd: mode must be 'paired', 'image' or 'mask', got {mode!r}.")
        self.image_key, self.label_key = image_key, label_key
        self.mode = mode
        self.spatial_dims = spatial_dims
        self.decoder = DecodePaired(
            image_channels=image_channels if mode == "paired" else 1,
            num_classes=num_classes,
            threshold=threshold,
            spatial_dims=spatial_dims,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if self.mode == "image":
                d[self.image_key] = x.clamp(-1, 1) if isinstance(x, torch.Tensor) else np.clip(x, -1, 1)
            elif self.mode == "mask":
                axis = 0 if x.ndim == self.spatial_dims + 1 else 1
                # a blank image channel in front, so the paired decoder reads the mask channels
                if isinstance(x, torch.Tensor):
                    x = torch.cat([torch.full_like(x.narrow(axis, 0, 1), -1), x], axis)
                else:
                    x = np.concatenate([np.full_like(np.take(x, [0], axis=axis), -1), x], axis)
                d[self.label_key] = self.decoder(x)[1]
            else:
                d[self.image_key], d[self.label_key] = self.decoder(x)
        return d


MapMaskValuesD = MapMaskValuesDict = MapMaskValuesd
OneHotMaskD = OneHotMaskDict = OneHotMaskd
EncodePairedD = EncodePairedDict = EncodePairedd
DecodePairedD = DecodePairedDict = DecodePairedd
