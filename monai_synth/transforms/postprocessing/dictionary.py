"""Dictionary versions of :mod:`monai_synth.transforms.postprocessing.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from monai_synth.transforms.postprocessing.array import PostprocessMask, mask_change_fraction
from monai_synth.transforms.utils import source_name_from_dict

__all__ = ["PostprocessMaskd", "PostprocessMaskD", "PostprocessMaskDict"]


class PostprocessMaskd(MapTransform):
    """Dictionary version of :class:`PostprocessMask`; records the fraction of pixels it changed.

    ``d[key]`` ``(1, *spatial)`` integer labels is replaced by the cleaned map and
    ``d[change_key]`` gets :func:`mask_change_fraction` (a float in [0, 1]), e.g. for the generation
    manifest. The input is never modified in place.

    Args:
        keys: label keys, usually ``"label"``.
        num_classes, keep_largest, fill_holes, min_size, connectivity, num_components: see :class:`PostprocessMask`.
        change_key: where to store the changed fraction; one name, or one per key (must then be
            distinct); ``None`` stores nothing.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: several keys share one ``change_key``.

    Example::

        PostprocessMaskd(keys="label", num_classes=2)  # d["postprocess_change"] = 0.004
    """

    backend = PostprocessMask.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        num_classes: int = 2,
        keep_largest: bool = True,
        fill_holes: bool = True,
        min_size: int = 0,
        connectivity: int | None = None,
        num_components: int | Sequence[int] = 1,
        change_key: str | Sequence[str] | None = "postprocess_change",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.postprocess = PostprocessMask(
            num_classes=num_classes,
            keep_largest=keep_largest,
            fill_holes=fill_holes,
            min_size=min_size,
            connectivity=connectivity,
            num_components=num_components,
        )
        self.change_keys = ensure_tuple_rep(change_key, len(self.keys))
        named = [k for k in self.change_keys if k is not None]
        if len(set(named)) != len(named):
            raise ValueError(
                f"PostprocessMaskd: keys {self.keys} would all write change_key {change_key!r}; give one change_key "
                "per key (e.g. change_key=['label_change', 'label2_change'])."
            )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, change_key in self.key_iterator(d, self.change_keys):
            before = d[key]
            d[key] = self.postprocess(before, filename=source_name_from_dict(d, str(key)))
            if change_key is not None:
                d[change_key] = mask_change_fraction(before, d[key])
        return d


PostprocessMaskD = PostprocessMaskDict = PostprocessMaskd
