"""Helpers shared by the paired transforms: naming the source file of an array in error messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai.data import MetaTensor
from monai.utils import ImageMetaKey, PostFix

__all__ = ["source_name", "source_name_from_dict", "describe_source", "spatial_shape"]


def _as_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):  # collated meta holds one file name per batch item
        names = [str(v) for v in value if v is not None]
        return ", ".join(names) if names else None
    text = str(value)
    return text or None


def source_name(data: Any) -> str | None:
    """File name stored in a :class:`~monai.data.MetaTensor`'s meta (``filename_or_obj``), if any."""
    if isinstance(data, MetaTensor):
        return _as_name(data.meta.get(ImageMetaKey.FILENAME_OR_OBJ))
    return None


def source_name_from_dict(d: Mapping, key: str) -> str | None:
    """Best guess of the file behind ``d[key]``.

    Tried in order: the MetaTensor meta of ``d[key]``, ``d["<key>_meta_dict"]`` (``LoadImaged`` with
    ``image_only=False``), and the bookkeeping key ``d["<key>_path"]`` (``image_path``, ``label_path``).
    """
    name = source_name(d.get(key))
    if name:
        return name
    meta = d.get(PostFix.meta(key))
    if isinstance(meta, Mapping):
        name = _as_name(meta.get(ImageMetaKey.FILENAME_OR_OBJ))
        if name:
            return name
    return _as_name(d.get(f"{key}_path"))


def describe_source(what: str, name: str | None) -> str:
    """``"label 'masks/a.png'"`` or just ``"label"`` when the file is unknown."""
    return f"{what} '{name}'" if name else what


def spatial_shape(data: Any, spatial_dims: int | None = None) -> tuple[int, ...]:
    """Spatial shape of a channel-first array: all dims after the channel (or the last ``spatial_dims``)."""
    shape: Sequence[int] = tuple(data.shape)
    if spatial_dims is None:
        return tuple(int(s) for s in shape[1:])
    return tuple(int(s) for s in shape[len(shape) - spatial_dims :])
