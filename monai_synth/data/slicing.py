"""Cut 3D volumes into 2D paired slices (and load 2D images the same way), with an on-disk cache.

:func:`extract_slices` takes paired items with file paths (from :mod:`monai_synth.data.datalist`)
and returns 2D items holding arrays, ready for a MONAI ``Dataset``/``CacheDataset``::

    {"image": (C, H, W) float32, "label": (1, H, W) integer, "case_id": ..., "slice_index": k,
     "image_path": ..., "label_path": ...}

Values are raw, as stored in the files (HU for CT, scanner units for MRI, 0..255 for 8-bit PNG; mask
values unchanged, e.g. 0..255 for anti-aliased masks). Intensity scaling to [-1, 1] and mask mapping
(``MapMaskValues``) are the job of :mod:`monai_synth.transforms`.

Orientation (see :mod:`monai_synth.data.orientation`, which reads every file): PNG/JPEG files load as
PIL shows them ("viewer" layout: row 0 is the top row of the picture, so an X-ray's apex is at the
top). Medical formats (NIfTI, NRRD, MHA, DICOM) keep MONAI's index order ("index" layout). Writers
convert back, so generated pairs load like the sources with MONAI's default ``LoadImage``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_synth.data.datalist import SkipReport, _check_on_error, _format_names, strip_image_extension
from monai_synth.data.orientation import load_image
from monai_synth.utils.io import atomic_path

__all__ = ["extract_slices", "load_paired_arrays", "slice_cache_path"]

logger = logging.getLogger(__name__)

# Bump when the content or layout of cache files changes, so that stale caches are not reused.
_CACHE_VERSION = 1


def _read_file(path: str) -> np.ndarray:
    """Read one image file or DICOM series folder as a channel-first array ``(C, *spatial)``, native dtype."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        data = load_image(path)
    except Exception as e:  # the readers raise many exception types; all mean "unreadable file"
        raise ValueError(
            f"Could not read {path} ({type(e).__name__}: {e}). Check that it is a valid, complete "
            f"image file (NIfTI, NRRD, MHA, PNG, JPEG or a DICOM series folder)."
        ) from e
    return np.asarray(data.array)


def _integer_labels(label: np.ndarray, path: str) -> np.ndarray:
    """Return ``label`` with an integer dtype and unchanged values; raise if it has fractional values."""
    if np.issubdtype(label.dtype, np.integer):
        return label
    if np.issubdtype(label.dtype, np.bool_):
        return label.astype(np.uint8)
    finite = np.isfinite(label)
    if not finite.all() or not np.array_equal(label, np.round(label)):
        bad = label[~finite | (label != np.round(label))]
        raise ValueError(
            f"Mask {path} holds non-integer values (e.g. {bad.ravel()[:5].tolist()}); masks must be integer "
            f"label maps. Re-save it with nearest-neighbour resampling or threshold it first."
        )
    low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
    dtype = np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))
    return label.astype(dtype)


def load_paired_arrays(image: str | Sequence[str], label: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Load an image (one file, or one file per modality) and its mask as channel-first arrays.

    Args:
        image: image file / DICOM folder, or a list of them (one per modality) stacked along channels.
        label: mask file, or ``None`` for unlabelled images.

    Returns:
        ``image`` ``(C, *spatial)`` float32 with raw intensities and ``label`` ``(1, *spatial)`` with an
        integer dtype and the file's values (or ``None``). 4D NIfTI ``(H, W, D, C)`` gives ``C`` channels.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is unreadable, modalities or image and mask differ in spatial shape (both
            files and shapes named), the mask has several channels or non-integer values.
    """
    paths = [str(p) for p in image] if isinstance(image, (list, tuple)) else [str(image)]
    if not paths:
        raise ValueError("The image entry is an empty list; give at least one image file.")
    arrays = []
    for path in paths:
        array = _read_file(path)
        if arrays and array.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"Modalities of one case differ in spatial shape: {paths[0]} is {tuple(arrays[0].shape[1:])} "
                f"but {path} is {tuple(array.shape[1:])}. Resample them to a common grid first."
            )
        arrays.append(array.astype(np.float32, copy=False))
    image_array = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    if label is None:
        return image_array, None
    label = str(label)
    label_array = _read_file(label)
    if label_array.shape[0] != 1:
        raise ValueError(
            f"Mask {label} has {label_array.shape[0]} channels (shape {tuple(label_array.shape)}); masks must "
            f"be single-channel label maps (convert an RGB-saved mask to grayscale)."
        )
    if label_array.shape[1:] != image_array.shape[1:]:
        raise ValueError(
            f"Image and mask differ in spatial shape: {paths[0]} is {tuple(image_array.shape[1:])} but "
            f"{label} is {tuple(label_array.shape[1:])}. Resample the mask onto the image grid."
        )
    return image_array, _integer_labels(label_array, label)


def _file_fingerprint(path: str) -> list[Any]:
    path = os.path.abspath(path)
    if os.path.isdir(path):  # DICOM series: every file of the folder counts
        entries = sorted(os.scandir(path), key=lambda e: e.name)
        return [path, [[e.name, e.stat().st_size, e.stat().st_mtime_ns] for e in entries if e.is_file()]]
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


def slice_cache_path(
    cache_dir: str | os.PathLike,
    image: str | Sequence[str],
    label: str | None,
    axis: int | None,
    keep_labels: Sequence[int] | None,
    min_label_pixels: int,
    case_id: str,
) -> Path:
    """Cache file of one volume's slices: ``<cache_dir>/<case_id>-<hash>.npz``.

    The hash covers the absolute paths, sizes and modification times of the files and the slicing
    settings (``axis``, ``keep_labels``, ``min_label_pixels``), so editing a file or a setting gives a new
    cache entry instead of stale slices.
    """
    images = [str(p) for p in image] if isinstance(image, (list, tuple)) else [str(image)]
    key = {
        "version": _CACHE_VERSION,
        "image": [_file_fingerprint(p) for p in images],
        "label": _file_fingerprint(label) if label is not None else None,
        "axis": axis,
        "keep_labels": sorted(int(v) for v in keep_labels) if keep_labels is not None else None,
        "min_label_pixels": int(min_label_pixels),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", str(case_id))[:60]
    return Path(cache_dir) / f"{safe_id}-{digest}.npz"


def _read_cache(path: Path, labelled: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["image"], (z["label"] if labelled else None), z["slice_index"]
    except Exception as e:  # a damaged cache is recomputed, never trusted
        logger.warning("Ignoring unreadable slice cache %s (%s); recomputing it.", path, e)
        return None


def _write_cache(path: Path, image: np.ndarray, label: np.ndarray | None, slice_index: np.ndarray) -> None:
    arrays = {"image": image, "slice_index": slice_index}
    if label is not None:
        arrays["label"] = label
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def _cut(
    image: np.ndarray,
    label: np.ndarray | None,
    axis: int | None,
    keep_labels: Sequence[int] | None,
    min_label_pixels: int,
    path: str,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Slice stacks ``(N, C, H, W)``, ``(N, 1, H, W)`` and the kept slice indices ``(N,)``."""
    spatial = image.shape[1:]
    if len(spatial) == 2:
        if axis is not None:
            raise ValueError(
                f"{path} is a 2D image (spatial shape {tuple(spatial)}): axis={axis} does not exist. "
                f"Pass axis=None for 2D images."
            )
        image, label = image[None], (label[None] if label is not None else None)
    elif len(spatial) == 3:
        if axis is None:
            raise ValueError(
                f"{path} is a 3D volume (spatial shape {tuple(spatial)}) but axis=None; pass axis=0, 1 or 2 "
                f"to cut it into 2D slices."
            )
        image = np.moveaxis(image, axis + 1, 0)  # (N, C, H, W)
        label = np.moveaxis(label, axis + 1, 0) if label is not None else None
    else:
        raise ValueError(
            f"{path} has {len(spatial)} spatial dimensions (array shape {tuple(image.shape)} channel-first); "
            f"only 2D images and 3D volumes (optionally multi-channel) are supported."
        )
    keep = np.arange(image.shape[0])
    if keep_labels is not None:
        pixels = label[:, 0]
        counts = np.stack([(pixels == value).sum(axis=(1, 2)) for value in keep_labels], axis=0)
        keep = keep[(counts >= min_label_pixels).any(axis=0)]
    image = np.ascontiguousarray(image[keep], dtype=np.float32)
    label = np.ascontiguousarray(label[keep]) if label is not None else None
    return image, label, keep.astype(np.int64)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def extract_slices(
    items: Sequence[dict[str, Any]],
    axis: int | None = 2,
    keep_labels: Sequence[int] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    cache_dir: str | os.PathLike | None = None,
    min_label_pixels: int = 1,
    on_error: str = "raise",
    report: SkipReport | None = None,
) -> list[dict[str, Any]]:
    """Load paired volumes once each and return their 2D slices as in-memory arrays.

    Each volume is read once per call with MONAI ``LoadImage`` (nibabel/ITK/PIL readers). The result
    holds arrays, so a MONAI ``Dataset``/``CacheDataset`` over it never re-slices. With ``cache_dir``
    the slices of each volume are also stored as ``.npz`` (written atomically, keyed by the files'
    paths, sizes, modification times and the slicing settings, see :func:`slice_cache_path`) and
    reused by later calls without reading the volumes again.

    2D inputs (PNG/JPEG X-rays, 2D NIfTI) need ``axis=None`` and give one item each with
    ``slice_index=0``, loaded to arrays like slices, so downstream code always sees arrays.

    Args:
        items: paired items ``{"image": path | [path per modality], "label": path, "case_id": ...}``.
            Items without ``label_key`` are unlabelled (allowed unless ``keep_labels`` is set). Other
            keys are copied to every slice.
        axis: spatial axis of the volume to cut along (0, 1 or 2; 2 is axial for RAS NIfTI), or
            ``None`` for 2D inputs.
        keep_labels: keep only slices whose mask holds at least ``min_label_pixels`` pixels of at least
            one of these (raw) label values; ``None`` keeps every slice.
        image_key: key of the image path(s) in ``items``.
        label_key: key of the mask path in ``items``.
        cache_dir: folder for ``.npz`` slice caches; ``None`` disables the on-disk cache.
        min_label_pixels: see ``keep_labels``; at least 1.
        on_error: ``"raise"`` (default) or ``"skip"``: leave out cases that are missing, unreadable or
            inconsistent, log a warning and record them in ``report``.
        report: a :class:`~monai_synth.data.datalist.SkipReport` receiving skipped cases.

    Returns:
        One dict per kept slice, in item then slice order: ``image`` ``(C, H, W)`` float32 (raw
        intensities; ``C`` = channels of a 4D file or number of listed modalities), ``label``
        ``(1, H, W)`` integer (raw values), ``case_id`` (of the volume; the image stem when absent),
        ``slice_index`` (int), ``image_path`` (str, or list for modalities), ``label_path``.

    Raises:
        FileNotFoundError: a file is missing (``on_error="raise"``).
        ValueError: bad settings, an unreadable file, image/mask shape mismatch (both files and shapes
            named), a 2D image with an ``axis`` or a volume without one (file and ``axis`` named), or
            no slice left (with the label values found when ``keep_labels`` filtered everything out).

    Example::

        items = resolve_dataset("/data/msd_hippocampus")
        slices = extract_slices(items, axis=2, keep_labels=[1, 2], cache_dir="/tmp/slices")
        dataset = monai.data.CacheDataset(slices, transform=train_transforms)
    """
    _check_on_error(on_error)
    if axis is not None and (not _is_int(axis) or axis not in (0, 1, 2)):
        first = items[0].get(image_key) if items and isinstance(items[0], dict) else None
        raise ValueError(
            f"axis={axis!r} is out of range (first file: {first}): a volume has spatial axes 0, 1 and 2 "
            f"(the channel axis is not counted); use axis=None for 2D images."
        )
    if isinstance(keep_labels, (int, np.integer)):
        keep_labels = [int(keep_labels)]
    if keep_labels is not None:
        keep_labels = [int(v) for v in keep_labels]
        if not keep_labels:
            raise ValueError(
                "keep_labels is empty; give label values to keep (e.g. [1, 2]) or None to keep all slices."
            )
    if not _is_int(min_label_pixels) or min_label_pixels < 1:
        raise ValueError(f"min_label_pixels must be an integer >= 1, got {min_label_pixels!r}.")
    if not items:
        raise ValueError("extract_slices got no items; check the dataset folder or datalist.")

    slices: list[dict[str, Any]] = []
    labels_seen: set[int] = set()
    for number, item in enumerate(items):
        if not isinstance(item, dict) or image_key not in item:
            raise ValueError(f"Item {number} has no {image_key!r} key (got {item!r:.200}).")
        image_path = item[image_key]
        if isinstance(image_path, (list, tuple)):
            image_path = [str(p) for p in image_path]
        elif isinstance(image_path, (str, os.PathLike)):
            image_path = str(image_path)
        else:
            raise ValueError(
                f"Item {number} ({item.get('case_id', '')}): {image_key!r} must be a file path or a list of "
                f"paths, got {type(image_path).__name__}; extract_slices loads files."
            )
        label_path = str(item[label_key]) if item.get(label_key) is not None else None
        first_image = image_path[0] if isinstance(image_path, list) else image_path
        case_id = item.get("case_id", strip_image_extension(os.path.basename(os.path.normpath(first_image))))
        if label_path is None and keep_labels is not None:
            raise ValueError(f"{first_image} has no {label_key!r} but keep_labels={keep_labels} needs a mask.")
        try:
            cached = None
            cache_file = None
            if cache_dir is not None:
                cache_file = slice_cache_path(
                    cache_dir, image_path, label_path, axis, keep_labels, min_label_pixels, case_id
                )
                if cache_file.exists():
                    cached = _read_cache(cache_file, labelled=label_path is not None)
            if cached is None:
                image, label = load_paired_arrays(image_path, label_path)
                cached = _cut(image, label, axis, keep_labels, min_label_pixels, first_image)
                if keep_labels is not None and len(cached[2]) == 0:
                    labels_seen.update(np.unique(label).tolist())
                if cache_file is not None:
                    _write_cache(cache_file, *cached)
        except (ValueError, FileNotFoundError) as e:
            if on_error == "raise":
                raise
            if report is not None:
                report.add(image_path, str(e), case_id)
            logger.warning("Skipped case %s (on_error='skip'): %s", case_id, e)
            continue
        image_stack, label_stack, indices = cached
        extra = {k: v for k, v in item.items() if k not in (image_key, label_key)}
        for position, slice_index in enumerate(indices.tolist()):
            entry = dict(extra)
            entry[image_key] = image_stack[position]
            if label_stack is not None:
                entry[label_key] = label_stack[position]
                entry["label_path"] = label_path
            entry.update(case_id=case_id, slice_index=int(slice_index), image_path=image_path)
            slices.append(entry)

    if not slices:
        if keep_labels is not None:
            found = f"; label values found in the masks: {sorted(labels_seen)}" if labels_seen else ""
            raise ValueError(
                f"No slice of the {len(items)} case(s) contains any of keep_labels={keep_labels} with at least "
                f"{min_label_pixels} pixel(s){found}. Check the label values (masks may need MapMaskValues "
                f"first: pass the raw values here) or min_label_pixels."
            )
        skipped = f" ({len(report)} skipped: {_format_names(report.paths())})" if report else ""
        raise ValueError(f"No slices could be extracted from {len(items)} case(s){skipped}.")
    return slices
