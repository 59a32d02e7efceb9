"""From "a dataset folder, a datalist or nothing" to preprocessed 2D pairs every bundle can train on.

:class:`PairedSliceDataset` is what the bundles instantiate. It

1. reads the source: a MONAI datalist JSON, a folder of ``images/`` + ``labels/`` (or ``masks/``),
   or, with no source, the built-in phantom;
2. loads every file once, cutting 3D volumes into 2D slices (optionally keeping only slices that
   show chosen labels);
3. maps mask values to labels ``0..K-1`` (explicit mapping or threshold; anti-aliased 8-bit masks
   are detected and binarised *with a warning and a record in* :attr:`summary`, never silently);
4. normalises intensities to [-1, 1] (CT window, 8-bit fixed range, MRI percentiles, ...);
5. centre-crops and resizes to ``image_size`` (nearest for masks);

and caches the result, so the per-epoch work is only random augmentation (if any) and encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import Dataset
from monai.transforms import Compose

from monai_synth.data.datalist import resolve_dataset
from monai_synth.data.orientation import orientation_of_files, phantom_orientation
from monai_synth.data.phantom import PHANTOM_BINARY_LABELS, PHANTOM_LABELS, generate_phantom
from monai_synth.data.slicing import extract_slices
from monai_synth.transforms import (
    EnsurePairedShaped,
    MapMaskValuesd,
    NormalizeToRanged,
    PairedCropResized,
    mask_channels,
)

__all__ = [
    "PairedSliceDataset",
    "THORAX_CT_WINDOW",
    "auto_intensity",
    "auto_mask_rule",
    "check_contiguous_labels",
    "min_image_side",
    "typical_components",
]

logger = logging.getLogger(__name__)

#: (center, width) in HU: air -> -1, lung about -0.8, soft tissue about +0.5, bone clipped at +1.
THORAX_CT_WINDOW = (-300.0, 1400.0)

_EIGHT_BIT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def auto_intensity(images: Sequence[np.ndarray], paths: Sequence[str] = ()) -> dict[str, Any]:
    """Choose an intensity normalisation for a set of raw images.

    Rule: 8-bit files (PNG/JPEG) -> fixed range (0, 255); values that look like Hounsfield units
    (minimum below -500) -> CT window :data:`THORAX_CT_WINDOW`; anything else (MRI) -> per-image
    percentiles (0.5, 99.5).

    Returns:
        keyword arguments for :class:`~monai_synth.transforms.NormalizeToRange`.
    """
    if paths and all(str(p).lower().endswith(_EIGHT_BIT_SUFFIXES) for p in paths):
        return {"mode": "fixed", "input_range": (0.0, 255.0)}
    lowest = min(float(np.min(x)) for x in images)
    if lowest < -500.0:
        return {"mode": "window", "window": THORAX_CT_WINDOW}
    return {"mode": "percentile", "percentiles": (0.5, 99.5)}


def auto_mask_rule(label_values: np.ndarray) -> dict[str, Any]:
    """Choose how raw mask values become labels.

    Integer labels ``0..K-1`` with small ``K`` (<= 32) are kept. Masks whose values span 0..255 with
    intermediate values (anti-aliased, as in the Shenzhen lung masks) are binarised at 127.
    Anything else raises: the user must pass ``mask_mapping`` or ``mask_threshold``.

    Returns:
        keyword arguments for :class:`~monai_synth.transforms.MapMaskValues`.
    """
    values = np.unique(label_values)
    if values.min() >= 0 and values.max() < 32 and np.all(values == np.round(values)):
        return {"mapping": None, "threshold": None}
    if values.min() >= 0 and values.max() == 255:
        return {"mapping": None, "threshold": 127.0}
    shown = ", ".join(str(v) for v in values[:12]) + (" ..." if len(values) > 12 else "")
    raise ValueError(
        f"Mask values {{{shown}}} are neither labels 0..31 nor an 8-bit 0..255 mask; set `mask_mapping` "
        "(e.g. {0: 0, 128: 1, 255: 2}) or `mask_threshold` to say how to turn them into labels."
    )


def min_image_side(image_size: int) -> int:
    """Smallest accepted side of a raw image for ``image_size``: 8 px, or ``image_size / 8`` if larger."""
    return max(8, int(image_size) // 8)


def check_contiguous_labels(items: Sequence[dict], label_names: dict[int, str] | None, source: Any) -> None:
    """Refuse integer mask values that leave gaps in ``0..max`` unless ``label_names`` declares them.

    Masks holding ``{0, 1, 7}`` would otherwise be read as 8 classes (a binary mask with one stray value
    trains a 9-channel generator). Declared labels (``labels`` of ``dataset.json``/``datalist.json``, the
    phantom's names) may be absent from a subset.

    Args:
        items: raw items with ``"label"`` arrays (and ``"label_path"``).
        label_names: ``{label: name}`` declared by the dataset, or ``None``.
        source: the dataset, for the message.

    Raises:
        ValueError: values are not contiguous; names the values, the files holding the values after the
            first gap and the ``mask_mapping`` that would fix it.
    """
    per_item = [np.unique(np.asarray(item["label"])).astype(np.int64) for item in items]
    values = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, np.int64)
    declared = set(label_names or {})
    missing = [v for v in range(int(values.max()) + 1 if values.size else 0) if v not in set(values.tolist())]
    if not missing or set(missing) <= declared:
        return
    gap = missing[0]
    odd = [int(v) for v in values if v > gap]
    holders: dict[int, list[str]] = {v: [] for v in odd}
    for item, item_values in zip(items, per_item):
        for v in set(item_values.tolist()) & set(odd):
            holders[v].append(_first(item.get("label_path", item.get("case_id"))))
    found = ", ".join(str(int(v)) for v in values)
    where = "; ".join(
        f"{v} in {len(files)} mask(s): {', '.join(sorted(set(files))[:3])}{' ...' if len(set(files)) > 3 else ''}"
        for v, files in holders.items()
    )
    contiguous = {int(v): i for i, v in enumerate(values)}
    merge = {int(v): (int(v) if v < gap else 0) for v in values}
    raise ValueError(
        f"{source}: mask values {{{found}}} are not contiguous labels 0..K-1 (no mask holds "
        f"{', '.join(str(v) for v in missing[:10])}{' ...' if len(missing) > 10 else ''}), so they would be read "
        f"as {int(values.max()) + 1} classes. Values after the gap: {where}. Say what they mean with "
        f"`mask_mapping`: {contiguous} keeps each as its own class, {merge} makes them background; or fix "
        "the files, or set `num_classes` if the missing labels are real classes."
    )


def typical_components(items: Sequence[dict], num_classes: int, max_items: int = 200) -> list[int]:
    """Median number of connected components of each foreground class where it is present.

    Post-processing of generated masks keeps this many components per class (e.g. 2 for one
    "lung" label covering both lungs, 1 for each lung labelled separately).

    Returns:
        list of ``num_classes - 1`` integers (at least 1 each), for classes ``1..K-1``.
    """
    from scipy import ndimage

    counts: list[list[int]] = [[] for _ in range(num_classes - 1)]
    for item in items[:max_items]:
        label = np.asarray(item["label"])[0]
        for c in range(1, num_classes):
            mask = label == c
            if mask.any():
                counts[c - 1].append(ndimage.label(mask)[1])
    return [max(1, int(np.median(c))) if c else 1 for c in counts]


class PairedSliceDataset(Dataset):
    """Preprocessed 2D image/mask pairs, ready for paired GANs and segmentation networks.

    Each item is ``{"image": (C, S, S) float32 in [-1, 1], "label": (1, S, S) int64 in 0..K-1,
    "case_id": str, ...}`` (``S = image_size``) passed through ``transform`` (e.g.
    :class:`~monai_synth.transforms.EncodePairedd` for a paired GAN, or random augmentation).

    Args:
        dataset_dir: a datalist JSON, a dataset folder (see
            :func:`~monai_synth.data.datalist.resolve_dataset`), or ``None`` for the built-in phantom.
        image_size: output size ``S`` in pixels.
        transform: per-epoch transform applied on top of the cached preprocessing.
        datalist_key: key read from a datalist (``"training"``).
        slice_axis: ``"auto"`` (2D files -> none, volumes -> axis 2), ``None`` or 0/1/2.
        keep_labels: keep only volume slices showing at least one of these raw label values.
        intensity: ``"auto"`` (see :func:`auto_intensity`) or keyword arguments of
            :class:`~monai_synth.transforms.NormalizeToRange`, e.g. ``{"mode": "zscore"}``.
        mask_threshold: binarise raw masks at this value (``mask > threshold``); ``None``: no threshold.
        mask_mapping: explicit ``{raw value: label}`` map; values outside it raise.
        num_classes: number of classes ``K`` including background; inferred when ``None``.
        phantom_samples: number of phantom slices when ``dataset_dir`` is ``None``.
        phantom_binary: lung-only phantom labels.
        seed: first phantom seed.
        cache_dir: on-disk cache of volume slices (see :func:`~monai_synth.data.slicing.extract_slices`).
        max_items: keep only the first ``max_items`` items (quick runs); ``None`` keeps all.
        require_labels: ``False`` also accepts images without masks (a folder with only ``images/``, or
            datalist entries without ``"label"``), each given a blank background mask: for image-only
            GANs (the DatasetGAN backbone). ``summary["unlabelled_items"]`` counts them.

    Attributes:
        num_classes: ``K``.
        image_channels: ``C``.
        pair_channels: ``C + M``, the channel count of the paired encoding.
        label_names: ``{label value: name}`` when known.
        summary: JSON-ready description of what was loaded and how it was preprocessed; its
            ``orientation`` is the source layout and slice geometry that writers of generated pairs follow
            (:mod:`monai_synth.data.orientation`).

    Raises:
        ValueError: empty data, inconsistent channel counts (files named), masks whose values cannot be
            mapped or leave gaps in ``0..K-1`` without a ``mask_mapping``/``num_classes`` (values and files
            named), images smaller than :func:`min_image_side` (files and sizes named), NaN/inf in an
            image (image file named), ``num_classes`` smaller than the labels found.
    """

    def __init__(
        self,
        dataset_dir: str | Path | None = None,
        image_size: int = 64,
        transform: Callable | None = None,
        datalist_key: str = "training",
        slice_axis: int | str | None = "auto",
        keep_labels: Sequence[int] | None = None,
        intensity: str | dict[str, Any] = "auto",
        mask_threshold: float | None = None,
        mask_mapping: dict[int, int] | None = None,
        num_classes: int | None = None,
        phantom_samples: int = 256,
        phantom_binary: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        max_items: int | None = None,
        require_labels: bool = True,
    ) -> None:
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}.")
        raw, source, label_names, orientation = self._load_raw(
            dataset_dir,
            datalist_key,
            slice_axis,
            keep_labels,
            cache_dir,
            phantom_samples,
            phantom_binary,
            seed,
            image_size,
            require_labels,
        )
        if max_items is not None:
            raw = raw[: int(max_items)]
        if not raw:
            raise ValueError(f"No image/mask pairs found in {source}.")
        unlabelled = [item for item in raw if item.get("label") is None]
        for item in unlabelled:  # image-only data (require_labels=False): a blank background mask
            item["label"] = np.zeros((1, *np.asarray(item["image"]).shape[1:]), dtype=np.uint8)
        self._check_channels(raw)
        self._check_image_sizes(raw, image_size)

        if mask_mapping is not None or mask_threshold is not None:
            mask_rule = {
                "mapping": {int(k): int(v) for k, v in mask_mapping.items()} if mask_mapping else None,
                "threshold": mask_threshold,
            }
        else:
            mask_rule = auto_mask_rule(np.concatenate([np.unique(item["label"]) for item in raw]))
            if mask_rule["threshold"] is None and num_classes is None:
                check_contiguous_labels(raw, label_names, source)
            if mask_rule["threshold"] is not None:
                logger.warning(
                    "%s: masks hold anti-aliased 0..255 values; binarising with mask > %s "
                    "(set `mask_threshold` or `mask_mapping` to choose otherwise).",
                    source,
                    mask_rule["threshold"],
                )
        intensity_rule = (
            auto_intensity([x["image"] for x in raw], [_first(x.get("image_path", "")) for x in raw])
            if intensity == "auto"
            else dict(intensity)
        )

        preprocess = Compose(
            [
                EnsurePairedShaped(keys=("image", "label")),
                MapMaskValuesd(keys="label", strict=True, **mask_rule),
                NormalizeToRanged(keys="image", **intensity_rule),
                PairedCropResized(keys=("image", "label"), spatial_size=image_size),
            ]
        )
        items = [self._preprocess(preprocess, item) for item in raw]
        found_classes = int(max(int(item["label"].max()) for item in items)) + 1
        if num_classes is None:
            num_classes = max(found_classes, len(label_names) if label_names else 0, 2)
        elif num_classes < found_classes:
            raise ValueError(
                f"num_classes={num_classes} but the masks of {source} hold labels up to {found_classes - 1}; "
                f"raise `num_classes` or remap with `mask_mapping`."
            )
        super().__init__(data=items, transform=transform)

        self.num_classes = int(num_classes)
        self.image_channels = int(items[0]["image"].shape[0])
        self.pair_channels = self.image_channels + mask_channels(self.num_classes)
        self.image_size = image_size
        self.label_names = label_names or {
            i: ("background" if i == 0 else f"label_{i}") for i in range(self.num_classes)
        }
        counts = np.bincount(np.concatenate([item["label"].ravel() for item in items]), minlength=self.num_classes)
        self.summary = {
            "source": str(source),
            "num_items": len(items),
            "num_cases": len({item.get("case_id") for item in items}),
            "image_size": image_size,
            "image_channels": self.image_channels,
            "num_classes": self.num_classes,
            "label_names": {str(k): v for k, v in self.label_names.items()},
            "label_fractions": (counts / counts.sum()).round(5).tolist(),
            "intensity": intensity_rule,
            "mask_rule": mask_rule,
            "slice_axis": slice_axis,
            "keep_labels": list(keep_labels) if keep_labels else None,
            "components_per_class": typical_components(items, self.num_classes),
            "unlabelled_items": len(unlabelled),
            "orientation": orientation,
        }

    @staticmethod
    def _load_raw(
        dataset_dir,
        key,
        slice_axis,
        keep_labels,
        cache_dir,
        phantom_samples,
        phantom_binary,
        seed,
        image_size,
        require_labels=True,
    ):
        if dataset_dir is None or str(dataset_dir) in ("", "None", "phantom"):
            if phantom_samples < 1:
                raise ValueError(f"phantom_samples must be >= 1, got {phantom_samples}.")
            items = []
            for i in range(phantom_samples):
                image, label = generate_phantom(
                    seed + i, image_size=max(32, min(512, image_size)), binary=phantom_binary
                )
                items.append({"image": image, "label": label, "case_id": f"phantom_{seed + i:05d}", "seed": seed + i})
            names = PHANTOM_BINARY_LABELS if phantom_binary else PHANTOM_LABELS
            return (
                items,
                f"phantom(samples={phantom_samples}, seed={seed}, binary={phantom_binary})",
                {v: k for k, v in names.items()},
                phantom_orientation(image_size),
            )
        source = Path(dataset_dir)
        if not source.exists():
            raise FileNotFoundError(f"dataset_dir {source} does not exist.")
        pairs = resolve_dataset(source, key=key, require_labels=require_labels)
        if slice_axis == "auto":
            slice_axis = None if _is_2d_file(_first(pairs[0]["image"])) else 2
        orientation = orientation_of_files([pair["image"] for pair in pairs], slice_axis, image_size)
        raw = extract_slices(pairs, axis=slice_axis, keep_labels=keep_labels, cache_dir=cache_dir)
        return raw, source, _label_names_of(source), orientation

    @staticmethod
    def _check_channels(items: Sequence[dict]) -> None:
        first = items[0]
        for item in items[1:]:
            if item["image"].shape[0] != first["image"].shape[0]:
                raise ValueError(
                    f"Images have different channel counts: {_first(first.get('image_path', first.get('case_id')))} has "
                    f"{first['image'].shape[0]}, {_first(item.get('image_path', item.get('case_id')))} has {item['image'].shape[0]}."
                )

    @staticmethod
    def _check_image_sizes(items: Sequence[dict], image_size: int) -> None:
        """Refuse images too small to be upscaled to ``image_size`` (e.g. a stray 1x1 file)."""
        minimum = min_image_side(image_size)
        small = [item for item in items if min(np.asarray(item["image"]).shape[1:]) < minimum]
        if small:
            listed = "; ".join(
                f"{_first(item.get('image_path', item.get('case_id')))}"
                + (f" (slice {item['slice_index']})" if item.get("slice_index") is not None else "")
                + f" is {'x'.join(str(n) for n in np.asarray(item['image']).shape[1:])} px"
                for item in small[:5]
            )
            more = f" and {len(small) - 5} more" if len(small) > 5 else ""
            raise ValueError(
                f"{len(small)} image(s) are smaller than {minimum} px on a side, the minimum for image_size="
                f"{image_size} (they would be upscaled more than 8x, or are not images at all): {listed}{more}. "
                "Remove them from the dataset folder or datalist, or use a smaller image_size."
            )

    @staticmethod
    def _preprocess(preprocess: Compose, item: dict) -> dict:
        for transform in preprocess.transforms:
            try:
                item = transform(item)
            except Exception as e:
                # name the file the failing transform works on: the image for intensity steps, the mask
                # for mask mapping, both for the paired shape and crop steps
                keys = tuple(getattr(transform, "keys", ())) or ("image", "label")
                paths = [_first(item[f"{k}_path"]) for k in ("image", "label") if k in keys and item.get(f"{k}_path")]
                where = " / ".join(paths) if paths else _first(item.get("case_id"))
                index = f" (slice {item['slice_index']})" if item.get("slice_index") is not None else ""
                raise ValueError(f"{where}{index}: {e}") from e
        return PairedSliceDataset._as_plain(item)

    @staticmethod
    def _as_plain(item: dict) -> dict:
        out = dict(item)
        out["image"] = np.asarray(out["image"], dtype=np.float32)
        out["label"] = np.asarray(out["label"]).astype(np.int64)
        return out


def _first(value: Any) -> str:
    return str(value[0]) if isinstance(value, (list, tuple)) else str(value)


def _is_2d_file(path: str) -> bool:
    lower = path.lower()
    if lower.endswith(_EIGHT_BIT_SUFFIXES):
        return True
    from monai.transforms import LoadImage

    image = LoadImage(image_only=True, ensure_channel_first=True)(path)
    return image.ndim == 3


def _label_names_of(source: Path) -> dict[int, str] | None:
    """Label names from a decathlon ``dataset.json`` / our ``datalist.json`` ``labels`` entry."""
    from monai_synth.utils.io import read_json

    candidates = [source] if source.suffix == ".json" else [source / "datalist.json", source / "dataset.json"]
    for path in candidates:
        if path.is_file():
            labels = read_json(path).get("labels")
            if isinstance(labels, dict):
                try:
                    return {int(k): str(v) for k, v in labels.items()}
                except ValueError:
                    return None
    return None
