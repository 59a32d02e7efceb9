"""SemanticGAN's training data: a few labelled pairs plus the unlabelled images every hospital has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.data import Dataset

from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.transforms import EncodePairedd

__all__ = ["SemiSupervisedData"]


class SemiSupervisedData:
    """Labelled pairs from ``dataset_dir`` and unlabelled images from ``unlabelled_dir``, preprocessed alike.

    The unlabelled images are read with the labelled data's intensity rule and size, so both halves reach
    the networks on one scale. Masks in ``unlabelled_dir`` (if any) are ignored.

    Args:
        dataset_dir: labelled pairs (datalist JSON or folder with ``images/`` + ``labels/``; ``None``: the phantom).
        unlabelled_dir: images only (datalist JSON whose entries need no ``label``, or a folder with
            ``images/``); ``None``: the labelled images are the only real images.
        image_size: side ``S`` of the preprocessed images.
        num_classes: ``K`` (inferred from the masks when ``None``).
        max_unlabelled: keep at most this many unlabelled images (``None``: all).
        data_options: further :class:`~monai_synth.data.PairedSliceDataset` arguments for both halves
            (``slice_axis``, ``mask_threshold``, ``mask_mapping``, ``max_items``, ``cache_dir``,
            ``phantom_samples``, ``phantom_binary``, ``seed``, ``keep_labels``, ``intensity``).

    Attributes:
        labelled: the labelled :class:`~monai_synth.data.PairedSliceDataset`, items carrying ``"pair"``
            (the paired encoding) besides ``"image"`` / ``"label"``.
        unlabelled: the unlabelled dataset, or ``None``.
        images: every real image (labelled first), ``{"image": (C, S, S)}`` items, for ``D_r`` and the encoder.
        image_channels, num_classes, pair_channels, summary: of the labelled data (what exports record);
            ``summary`` adds ``num_labelled`` / ``num_unlabelled`` / ``unlabelled_source``.

    Raises:
        ValueError: ``unlabelled_dir`` missing, empty or unreadable (the setting and path named), or
            holding images of another channel count or size than the labelled images (both named).
    """

    def __init__(
        self,
        dataset_dir: str | Path | None,
        unlabelled_dir: str | Path | None = None,
        image_size: int = 64,
        num_classes: int | None = None,
        max_unlabelled: int | None = None,
        data_options: dict[str, Any] | None = None,
    ) -> None:
        options = {k: v for k, v in dict(data_options or {}).items() if v is not None or k == "keep_labels"}
        self.labelled = PairedSliceDataset(dataset_dir, image_size=image_size, num_classes=num_classes, **options)
        self.labelled.transform = EncodePairedd(num_classes=self.labelled.num_classes)
        self.image_channels = self.labelled.image_channels
        self.num_classes = self.labelled.num_classes
        self.pair_channels = self.labelled.pair_channels
        self.unlabelled = None
        if unlabelled_dir not in (None, "", "None"):
            self.unlabelled = self._load_unlabelled(Path(unlabelled_dir), image_size, max_unlabelled, options)
        images = [{"image": item["image"]} for item in self.labelled.data]
        if self.unlabelled is not None:
            images += [{"image": item["image"]} for item in self.unlabelled.data]
        self.images = Dataset(images)
        self.summary = {
            **self.labelled.summary,
            "num_labelled": len(self.labelled),
            "num_unlabelled": len(self.unlabelled) if self.unlabelled is not None else 0,
            "unlabelled_source": self.unlabelled.summary["source"] if self.unlabelled is not None else None,
        }

    def _load_unlabelled(
        self, source: Path, image_size: int, max_unlabelled: int | None, options: dict[str, Any]
    ) -> PairedSliceDataset:
        if not source.exists():
            raise ValueError(f"unlabelled_dir {source} does not exist; give a folder with images/ or a datalist JSON.")
        options = {k: v for k, v in options.items() if k not in ("keep_labels", "mask_threshold", "mask_mapping")}
        options["intensity"] = self.labelled.summary["intensity"]  # one intensity scale for both halves
        if max_unlabelled is not None:
            options["max_items"] = int(max_unlabelled)
        try:
            unlabelled = PairedSliceDataset(source, image_size=image_size, require_labels=False, num_classes=None,
                                            **options)  # fmt: skip
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"unlabelled_dir {source}: {e}") from e
        if len(unlabelled) == 0:
            raise ValueError(f"unlabelled_dir {source} holds no images.")
        if unlabelled.image_channels != self.image_channels:
            raise ValueError(
                f"unlabelled_dir {source} has {unlabelled.image_channels}-channel images but the labelled data "
                f"({self.labelled.summary['source']}) has {self.image_channels}-channel images; both must be the "
                "same kind of image."
            )
        shape = tuple(unlabelled.data[0]["image"].shape[1:])
        if shape != (image_size, image_size):
            raise ValueError(f"unlabelled_dir {source}: images preprocessed to {shape}, expected {image_size} px.")
        self._check_geometry(source, unlabelled)
        return unlabelled

    def _check_geometry(self, source: Path, unlabelled: PairedSliceDataset) -> None:
        """Refuse unlabelled images whose file layout (pictures vs medical volumes) differs from the labelled:
        MONAI reads the two transposed, so the halves would not be aligned."""
        labelled, other = self.labelled.summary.get("orientation") or {}, unlabelled.summary.get("orientation") or {}
        a, b = labelled.get("layout"), other.get("layout")
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"unlabelled_dir {source} holds images of layout {b!r} ({other.get('source_format')}) but the labelled "
                f"data ({self.labelled.summary['source']}) of layout {a!r} ({labelled.get('source_format')}); give "
                "unlabelled images in the labelled images' file format."
            )
