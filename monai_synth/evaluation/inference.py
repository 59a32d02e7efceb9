"""The study's saved segmentation models, and segmenting new images with one of them.

Every arm and fold of a study saves its selected network as ``models/<arm>/fold<k>/model.pt``
(:func:`save_study_model`): the weights and everything needed to rebuild and feed it (network name and
arguments, classes, image size, the real data's intensity and mask rules), loadable with
``torch.load(weights_only=True)``. :class:`StudySegmenter` (the ``synthetic_evaluation`` bundle's
``inference.json``) segments a folder or datalist of images with such a model through a MONAI
``SupervisedEvaluator`` and writes NIfTI masks and a datalist. The masks are on each source image's own
grid (the class probabilities at the study's ``S x S`` resized back over the centred crop, background
outside it) and follow the orientation contract (:mod:`monai_synth.data.orientation`): read with MONAI's
default ``LoadImage`` a mask has the shape and orientation of its source image read the same way (a 3D
source gets one mask volume with the source's affine).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.utils import CommonKeys

from monai_synth.data import orientation as orient
from monai_synth.evaluation.segmentation import build_network, class_mean, segmentation_scores
from monai_synth.utils.io import torch_save_atomic, write_json_atomic

__all__ = [
    "MODEL_FORMAT",
    "OUTPUT_GRIDS",
    "save_study_model",
    "load_study_model",
    "uncrop_probabilities",
    "StudySegmenter",
]

logger = logging.getLogger(__name__)

#: Format tag of the saved model files.
MODEL_FORMAT = "monai_synth.study_model.v1"
#: Where ``inference.json`` writes masks: on each source image's grid, or at the study's ``S x S``.
OUTPUT_GRIDS = ("source", "study")


def _plain(value: Any) -> Any:
    """JSON-plain copy (tuples -> lists, numpy scalars -> Python): what ``weights_only`` loading accepts."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_study_model(
    path: str | os.PathLike,
    network: torch.nn.Module,
    network_name: str,
    network_kwargs: Mapping[str, Any],
    in_channels: int,
    num_classes: int,
    image_size: int,
    preprocessing: Mapping[str, Any],
    **info: Any,
) -> Path:
    """Save a trained network with what rebuilds and feeds it, atomically.

    Args:
        path: the ``model.pt`` to write.
        network: the trained network.
        network_name: its ``network`` setting (``build_network`` name or dotted path).
        network_kwargs: its arguments.
        in_channels: image channels ``C``.
        num_classes: classes ``K`` including background.
        image_size: the study's ``S``.
        preprocessing: ``{"intensity", "mask_rule", "slice_axis", "class_names"}`` of the real data.
        info: more JSON-ready entries (``arm``, ``fold``, ``seed``, ...).

    Returns:
        The written path.
    """
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    payload = {
        "format": MODEL_FORMAT,
        "state_dict": state,
        "config": _plain(
            {
                "network": network_name,
                "network_kwargs": dict(network_kwargs),
                "in_channels": int(in_channels),
                "num_classes": int(num_classes),
                "image_size": int(image_size),
                "preprocessing": dict(preprocessing),
                **info,
            }
        ),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return torch_save_atomic(payload, path)


def load_study_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a network saved by :func:`save_study_model` (loaded with ``weights_only=True``).

    Args:
        path: the ``model.pt``.
        device: where to put the network.

    Returns:
        ``(network in eval mode, config)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a study model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Model {path} does not exist; models are written to <output_dir>/models/<arm>/fold<k>/model.pt."
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a model saved by the synthetic_evaluation study ({MODEL_FORMAT}).")
    config = payload["config"]
    network = build_network(config["network"], config["in_channels"], config["num_classes"], **config["network_kwargs"])
    network.load_state_dict(payload["state_dict"])
    return network.to(device).eval(), config


def uncrop_probabilities(probabilities: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Labels on a source grid from class probabilities on the study's centred-crop-and-resize grid.

    Inverse of :class:`~monai_synth.transforms.CropResize` (centred ``m x m`` crop, ``m = min(H, W)``, as
    MONAI's ``CenterSpatialCrop`` places it, then resize to ``S x S``): the probabilities are resized
    (bilinear) to ``m x m``, the argmax is placed at the crop's position and the pixels outside the crop,
    which the network never saw, are background.

    Args:
        probabilities: ``(K, S, S)`` class probabilities.
        shape: the source's ``(H, W)`` in the internal layout.

    Returns:
        ``(H, W)`` uint8 labels.
    """
    height, width = (int(s) for s in shape)
    side = min(height, width)
    resized = torch.nn.functional.interpolate(
        probabilities[None].float(), size=(side, side), mode="bilinear", align_corners=False
    )[0]
    out = np.zeros((height, width), dtype=np.uint8)
    top, left = height // 2 - side // 2, width // 2 - side // 2
    out[top : top + side, left : left + side] = resized.argmax(dim=0).numpy().astype(np.uint8)
    return out


def _first_path(value: Any) -> str:
    return str(value[0] if isinstance(value, (list, tuple)) else value)


def _affine_4x4(affine: Any) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape == (3, 3):  # a 2D affine: embed it
        return np.array([[a[0, 0], a[0, 1], 0, a[0, 2]], [a[1, 0], a[1, 1], 0, a[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1]])
    return a


class StudySegmenter:
    """Segment a folder or datalist of images with a study model (``inference.json``).

    The images are preprocessed as the study's real data (same crop/resize to ``S x S``, intensity rule,
    slicing of volumes) and segmented by a MONAI ``SupervisedEvaluator`` (``SimpleInferer``, or
    ``SlidingWindowInferer`` with ``roi_size``). With ``output_grid="source"`` (default) every source image
    gets one NIfTI mask on its own grid (:func:`uncrop_probabilities`; a 512 x 512 PNG segmented by a
    64 x 64 model gets a 512 x 512 mask), written by :mod:`monai_synth.data.orientation` so that MONAI's
    ``LoadImage`` reads it with the source's shape and orientation (pictures: identity affine as
    ``PILReader`` gives; NIfTI: the source's affine; volumes: one mask volume). ``output_grid="study"``
    writes the ``S x S`` masks of the study's space instead, one per slice. The datalist ``{"test":
    [{"image", "label", "case_id"}]}`` has the mask as ``label``. When the input has masks, per-item Dice
    at ``S x S`` (the study's test-R Dice on the same cases) is written to ``scores.json``.

    Args:
        model_path: a ``models/<arm>/fold<k>/model.pt`` of a study; ``None``: the one of ``arm`` and ``fold``
            in ``study_dir``.
        dataset: folder or datalist JSON of the images (masks optional).
        output_dir: destination of ``masks/``, ``datalist.json`` and ``scores.json``; ``None``:
            ``<study_dir>/inference/<arm>_fold<k>``.
        datalist_key: key of the datalist read (``"test"``, ``"training"``, ...).
        batch_size: images per forward pass.
        roi_size: sliding-window size; ``None``: the whole image at once.
        device: ``"cpu"``, ``"cuda"``, ...
        study_dir: the study's ``output_dir`` (with ``arm`` and ``fold`` when ``model_path`` is not given).
        arm: the arm whose model segments.
        fold: its fold.
        output_grid: ``"source"`` or ``"study"`` (see above).

    Raises:
        FileNotFoundError: missing model or data.
        ValueError: neither ``model_path`` nor ``study_dir``, no ``dataset``, an unknown ``output_grid``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        dataset: str | os.PathLike | None = None,
        output_dir: str | os.PathLike | None = None,
        datalist_key: str = "test",
        batch_size: int = 16,
        roi_size: int | None = None,
        device: str | torch.device = "cpu",
        study_dir: str | os.PathLike | None = None,
        arm: str = "real",
        fold: int = 0,
        output_grid: str = "source",
    ) -> None:
        if output_grid not in OUTPUT_GRIDS:
            raise ValueError(f"--output_grid must be one of {list(OUTPUT_GRIDS)}, got {output_grid!r}.")
        self.output_grid = output_grid
        if model_path is None and study_dir is None:
            raise ValueError("Give --model_path, or the study's --output_dir with --arm and --fold.")
        if dataset is None:
            raise ValueError("Give --dataset: a folder or datalist JSON of the images to segment.")
        if not Path(dataset).exists():
            raise FileNotFoundError(f"--dataset {dataset} does not exist.")
        if model_path is None:
            model_path = Path(study_dir) / "models" / str(arm) / f"fold{int(fold)}" / "model.pt"
        if output_dir is None:
            base = Path(study_dir) if study_dir is not None else Path(model_path).parent
            output_dir = base / "inference" / f"{arm}_fold{int(fold)}"
        self.model_path, self.dataset, self.output_dir = Path(model_path), Path(dataset), Path(output_dir)
        self.datalist_key, self.batch_size, self.roi_size = datalist_key, int(batch_size), roi_size
        self.device = torch.device(device)

    def _items(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        from monai_synth.data.pipeline import PairedSliceDataset

        pre = config["preprocessing"]
        rule = pre.get("mask_rule") or {}
        mapping = rule.get("mapping")
        key = self.datalist_key
        if self.dataset.is_file() or (self.dataset / "datalist.json").is_file():
            listing = self.dataset if self.dataset.is_file() else self.dataset / "datalist.json"
            key = key if key in json.loads(listing.read_text()) else "training"
        dataset = PairedSliceDataset(
            self.dataset,
            int(config["image_size"]),
            datalist_key=key,
            slice_axis=pre.get("slice_axis", "auto"),
            intensity=pre["intensity"],
            mask_mapping={int(k): int(v) for k, v in mapping.items()} if mapping else None,
            mask_threshold=rule.get("threshold"),
            num_classes=int(config["num_classes"]),
            require_labels=False,
        )
        self._labelled = dataset.summary["unlabelled_items"] == 0
        return [dict(i) for i in dataset.data]

    def run(self) -> dict[str, Any]:
        """Segment every image; write masks, ``datalist.json`` and (with masks) ``scores.json``.

        Returns:
            ``{"num_items", "datalist", "mean_dice" (None without masks), "model"}``.
        """
        network, config = load_study_model(self.model_path, self.device)
        items = self._items(config)
        data = [{CommonKeys.IMAGE: i["image"], CommonKeys.LABEL: i["label"], "index": k} for k, i in enumerate(items)]
        loader = DataLoader(Dataset(data), batch_size=self.batch_size, shuffle=False, num_workers=0)
        inferer = (
            SimpleInferer()
            if self.roi_size is None
            else SlidingWindowInferer(roi_size=int(self.roi_size), sw_batch_size=self.batch_size)
        )
        evaluator = SupervisedEvaluator(
            device=self.device,
            val_data_loader=loader,
            network=network,
            inferer=inferer,
            decollate=False,
        )
        probabilities: list[torch.Tensor] = []
        evaluator.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda engine: probabilities.append(
                torch.softmax(torch.as_tensor(engine.state.output[CommonKeys.PRED]).detach().cpu().float(), dim=1)
            ),
        )
        evaluator.run()
        probability = torch.cat(probabilities) if probabilities else torch.zeros((0, 2, 1, 1))
        labels = probability.argmax(dim=1, keepdim=True).long()

        if self.output_grid == "study":
            entries = self._write_study_grid(items, labels)
        else:
            entries = self._write_source_grid(items, probability, config)
        datalist = write_json_atomic(self.output_dir / "datalist.json", {"test": entries})
        mean_dice, scores = None, []
        if self._labelled and items:
            truth = torch.as_tensor(np.stack([i["label"] for i in items]))
            dice = segmentation_scores(labels, truth, int(config["num_classes"]))["dice"]
            per_item = class_mean(dice)
            for item, value in zip(items, per_item.tolist()):
                scores.append(
                    {
                        "case_id": str(item["case_id"]),
                        "slice_index": int(item.get("slice_index") or 0),
                        "dice_mean": value,
                    }
                )
            mean_dice = float(np.nanmean(per_item))
            write_json_atomic(self.output_dir / "scores.json", {"mean_dice": mean_dice, "items": scores})
        logger.info("Segmented %d image(s) with %s into %s", len(items), self.model_path, self.output_dir)
        return {
            "num_items": len(items),
            "num_masks": len(entries),
            "datalist": str(datalist),
            "mean_dice": mean_dice,
            "model": str(self.model_path),
        }

    def _write_study_grid(self, items: list[dict[str, Any]], labels: torch.Tensor) -> list[dict[str, Any]]:
        """One ``S x S`` mask per item (the study's space, identity affine; pictures' masks load as MONAI reads them)."""
        per_case: dict[str, int] = {}
        for item in items:
            per_case[str(item["case_id"])] = per_case.get(str(item["case_id"]), 0) + 1
        entries = []
        for k, item in enumerate(items):
            several = per_case[str(item["case_id"])] > 1
            suffix = f"_s{int(item.get('slice_index') or 0):03d}" if several else ""
            name = f"{item['case_id']}{suffix}_mask.nii.gz"
            source = item.get("image_path", "")
            layout = "viewer" if source and orient.is_picture(_first_path(source)) else "index"
            orient.save_label(self.output_dir / "masks" / name, labels[k, 0].numpy(), {"layout": layout})
            entries.append(
                {
                    "image": source if isinstance(source, str) else list(source),
                    "label": f"masks/{name}",
                    "case_id": str(item["case_id"]),
                    "slice_index": int(item.get("slice_index") or 0),
                }
            )
        return entries

    def _write_source_grid(
        self, items: list[dict[str, Any]], probability: torch.Tensor, config: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """One mask per source image (or volume) on its own grid, written by the orientation contract."""
        sources: dict[str, list[int]] = {}
        for k, item in enumerate(items):
            sources.setdefault(_first_path(item.get("image_path", "")), []).append(k)
        names: dict[str, int] = {}
        entries = []
        axis = config["preprocessing"].get("slice_axis", "auto")
        axis = 2 if axis in ("auto", None) else int(axis)
        for path, indices in sources.items():
            source = orient.load_image(path)  # internal layout: pictures as displayed, medical files as MONAI reads
            spatial = tuple(int(s) for s in source.shape[1:])
            case_id = str(items[indices[0]]["case_id"])
            stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id)
            names[stem] = names.get(stem, 0) + 1
            name = f"{stem}_mask.nii.gz" if names[stem] == 1 else f"{stem}_{names[stem]}_mask.nii.gz"
            target = self.output_dir / "masks" / name
            if len(spatial) == 3:
                volume = np.zeros(spatial, dtype=np.uint8)
                plane = tuple(s for a, s in enumerate(spatial) if a != axis)
                moved = np.moveaxis(volume, axis, 0)  # a view: slices written into it land in the volume
                for k in indices:
                    moved[int(items[k].get("slice_index") or 0)] = uncrop_probabilities(probability[k], plane)
                orient.save_volume_label(target, volume, _affine_4x4(source.affine))
            else:
                record = (
                    {"layout": "viewer", "affine": np.eye(4).tolist()}
                    if orient.is_picture(path)
                    else {"layout": "index", "affine": _affine_4x4(source.affine).tolist()}
                )
                orient.save_label(target, uncrop_probabilities(probability[indices[0]], spatial), record)
            image = items[indices[0]].get("image_path", "")
            entries.append(
                {
                    "image": image if isinstance(image, str) else list(image),
                    "label": f"masks/{name}",
                    "case_id": case_id,
                }
            )
        return entries
