"""Distances in mm: per-volume scores for 3D sources, pixel spacing of 2D items.

The study trains and predicts on 2D slices. When the real slices come from volumes (NIfTI), the
slices of each volume are stacked back in ``slice_index`` order and scored as one volume with MONAI's
Dice and Hausdorff metrics, the Hausdorff distances in mm from the volume's voxel size. Per slice (and
for 2D sources with a known pixel size) :func:`pixel_spacing` gives the in-plane pixel size after the
study's crop and resize, so that per-slice Hausdorff distances are in mm too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_synth.evaluation.segmentation import segmentation_scores

__all__ = ["slice_spacing", "pixel_spacing", "group_volumes", "stack_volume", "volume_scores"]

_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr")


def _first(value: Any) -> str | None:
    value = value[0] if isinstance(value, (list, tuple)) and value else value
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else None


def slice_spacing(item: Mapping[str, Any], image_size: int, axis: int = 2) -> tuple[float, float, float] | None:
    """Voxel size in mm of a slice after the study's centred square crop and resize, and between slices.

    A slice of shape ``(H, W)`` (the two volume axes other than ``axis``) with voxel size ``(sh, sw)`` is
    cropped to its centred ``m x m`` square, ``m = min(H, W)``, and resized to ``S x S``: its pixels are
    then ``sh * m / S`` by ``sw * m / S`` mm. Only the NIfTI header is read.

    Args:
        item: a slice item with ``image_path`` (the source volume).
        image_size: ``S``.
        axis: the volume axis the slices were cut along.

    Returns:
        ``(row spacing, column spacing, slice spacing)`` in the file's units (mm), or ``None`` when the
        source is not a 3D NIfTI volume.
    """
    path = _first(item.get("image_path"))
    if path is None or not path.lower().endswith(_VOLUME_SUFFIXES) or not os.path.isfile(path):
        return None
    import nibabel as nib

    header = nib.load(path).header
    shape, zooms = header.get_data_shape(), header.get_zooms()
    if len(shape) < 3 or shape[axis] < 2:
        return None
    in_plane = [a for a in range(3) if a != axis]
    side = min(shape[a] for a in in_plane)
    scale = side / float(image_size)
    return float(zooms[in_plane[0]]) * scale, float(zooms[in_plane[1]]) * scale, float(zooms[axis])


def _picture_side(path: str) -> int | None:
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return min(picture.size)
    except OSError:
        return None


def pixel_spacing(
    item: Mapping[str, Any], image_size: int, axis: int = 2, override: Sequence[float] | None = None
) -> tuple[float, float] | None:
    """In-plane pixel size in mm of a study item ``(C, S, S)`` after the centred square crop and resize.

    A ``(H, W)`` source with pixels ``(sh, sw)`` mm is cropped to ``m x m``, ``m = min(H, W)``, and resized to
    ``S x S``: pixels become ``(sh * m / S, sw * m / S)``. The source pixel size comes from (first match):
    the volume's header for slices of a 3D NIfTI; ``override`` for any 2D file (PNG/JPEG have no spacing);
    the header of a 2D NIfTI.

    Args:
        item: a study item with ``image_path`` (a path or a list of per-channel paths).
        image_size: ``S``.
        axis: the volume axis slices were cut along (3D sources).
        override: ``(row, column)`` source pixel size in mm of 2D sources, in the item's array layout (as a
            picture is displayed; MONAI's index order for NIfTI).

    Returns:
        ``(row, column)`` spacing in mm, or ``None`` when unknown (no file, a picture without ``override``,
        other formats).
    """
    volume = slice_spacing(item, image_size, axis)
    if volume is not None:
        return volume[0], volume[1]
    path = _first(item.get("image_path"))
    if path is None or not os.path.isfile(path):
        return None
    lower = path.lower()
    if lower.endswith(_VOLUME_SUFFIXES):
        import nibabel as nib

        header = nib.load(path).header
        shape, zooms = header.get_data_shape(), header.get_zooms()
        if len(shape) > 2 and any(int(s) > 1 for s in shape[2:]):
            return None  # a volume that slice_spacing did not take (e.g. another slicing axis)
        side = min(int(shape[0]), int(shape[1]))
        row, column = (override[0], override[1]) if override is not None else (zooms[0], zooms[1])
    elif override is not None:
        side = _picture_side(path)
        if side is None:
            return None
        row, column = override[0], override[1]
    else:
        return None
    scale = side / float(image_size)
    return float(row) * scale, float(column) * scale


def group_volumes(items: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Item indices of every volume (``case_id``), in ``slice_index`` order.

    Args:
        items: slice items with ``case_id`` and ``slice_index``.

    Returns:
        ``{case_id: [index, ...]}`` in order of first appearance.
    """
    volumes: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        volumes.setdefault(str(item["case_id"]), []).append(index)
    for indices in volumes.values():
        indices.sort(key=lambda i: int(items[i].get("slice_index") or 0))
    return volumes


def stack_volume(slices: torch.Tensor, slice_indices: Sequence[int]) -> torch.Tensor:
    """Stack ``(n, 1, H, W)`` label slices into a ``(1, 1, H, W, D)`` volume at their slice positions.

    ``D`` spans the first to the last slice index; slices missing in between (left out by
    ``keep_labels``) are background in both prediction and ground truth.

    Args:
        slices: ``(n, 1, H, W)`` labels.
        slice_indices: the ``n`` slice indices.

    Returns:
        ``(1, 1, H, W, D)`` labels.
    """
    positions = np.asarray(slice_indices, dtype=np.int64)
    positions = positions - positions.min()
    volume = torch.zeros((1, 1, *slices.shape[2:], int(positions.max()) + 1), dtype=slices.dtype)
    for k, p in enumerate(positions.tolist()):
        volume[0, 0, :, :, p] = slices[k, 0]
    return volume


def volume_scores(
    prediction: torch.Tensor,
    label: torch.Tensor,
    items: Sequence[Mapping[str, Any]],
    num_classes: int,
    image_size: int,
    axis: int = 2,
) -> list[tuple[str, dict[str, np.ndarray], tuple[float, float, float]]]:
    """Score slice predictions per volume, distances in mm.

    Args:
        prediction: ``(n, 1, S, S)`` predicted labels of ``items``.
        label: ``(n, 1, S, S)`` ground truth of ``items``.
        items: the ``n`` slice items (``case_id``, ``slice_index``, ``image_path``).
        num_classes: ``K``.
        image_size: ``S``.
        axis: the volume axis the slices were cut along.

    Returns:
        ``[(case_id, {"dice", "iou", "hd", "hd95"}: (K - 1,) arrays, spacing)]``, one per volume; empty when
        the items do not come from 3D volumes.
    """
    out = []
    for case_id, indices in group_volumes(items).items():
        spacing = slice_spacing(items[indices[0]], image_size, axis)
        if spacing is None:
            return []
        positions = [int(items[i].get("slice_index") or 0) for i in indices]
        volume_pred = stack_volume(torch.as_tensor(prediction)[indices], positions)
        volume_label = stack_volume(torch.as_tensor(label)[indices], positions)
        scores = segmentation_scores(volume_pred, volume_label, num_classes, spacing=spacing)
        out.append((case_id, {k: v[0] for k, v in scores.items()}, spacing))
    return out
