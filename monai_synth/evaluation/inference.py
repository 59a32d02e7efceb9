"""The study's saved segmentation models, and segmenting new images with one of them.

Every arm and fold of a study saves its selected network as ``models/<arm>/fold<k>/model.pt``
(:func:`save_study_model`): the weights and everything needed to rebuild and feed it (network name and
arguments, classes, image size, the real data's intensity and mask rules), loadable with
``torch.load(weights_only=True)``. :class:`StudySegmenter` (the ``synthetic_evaluation`` bundle's
``inference.json``) segments a folder or datalist of images with such a model through a MONAI
``SupervisedEvaluator`` and writes NIfTI masks and a datalist.
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

from monai_synth.evaluation.segmentation import build_network, class_mean, segmentation_scores
from monai_synth.utils.io import save_nifti_atomic, torch_save_atomic, write_json_atomic

__all__ = ["MODEL_FORMAT", "save_study_model", "load_study_model", "StudySegmenter"]

logger = logging.getLogger(__name__)

#: Format tag of the saved model files.
MODEL_FORMAT = "monai_synth.study_model.v1"


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


class StudySegmenter:
    """Segment a folder or datalist of images with a study model (``inference.json``).

    The images are preprocessed as the study's real data (same crop/resize to ``S x S``, intensity rule,
    slicing of volumes), segmented by a MONAI ``SupervisedEvaluator`` (``SimpleInferer``, or
    ``SlidingWindowInferer`` with ``roi_size``) and written as NIfTI masks at ``S x S`` (the study's
    space, not the original resolution) with a datalist ``{"test": [{"image", "label", "case_id",
    "slice_index"}]}`` whose ``label`` is the predicted mask. When the input has masks, per-item Dice
    is written to ``scores.json`` as well.

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

    Raises:
        FileNotFoundError: missing model or data.
        ValueError: neither ``model_path`` nor ``study_dir``, or no ``dataset``.
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
    ) -> None:
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
        predictions: list[torch.Tensor] = []
        evaluator.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda engine: predictions.append(
                torch.as_tensor(engine.state.output[CommonKeys.PRED]).detach().cpu().argmax(dim=1, keepdim=True)
            ),
        )
        evaluator.run()
        labels = torch.cat(predictions).long() if predictions else torch.zeros((0, 1, 1, 1), dtype=torch.long)

        masks = self.output_dir / "masks"
        entries, scores = [], []
        per_case: dict[str, int] = {}
        for item in items:
            per_case[str(item["case_id"])] = per_case.get(str(item["case_id"]), 0) + 1
        for k, item in enumerate(items):
            several = per_case[str(item["case_id"])] > 1
            suffix = f"_s{int(item.get('slice_index') or 0):03d}" if several else ""
            name = f"{item['case_id']}{suffix}_mask.nii.gz"
            save_nifti_atomic(masks / name, labels[k, 0].numpy().astype(np.uint8))
            source = item.get("image_path", "")
            entries.append(
                {
                    "image": source if isinstance(source, str) else list(source),
                    "label": f"masks/{name}",
                    "case_id": str(item["case_id"]),
                    "slice_index": int(item.get("slice_index") or 0),
                }
            )
        datalist = write_json_atomic(self.output_dir / "datalist.json", {"test": entries})
        mean_dice = None
        if self._labelled and items:
            truth = torch.as_tensor(np.stack([i["label"] for i in items]))
            dice = segmentation_scores(labels, truth, int(config["num_classes"]))["dice"]
            per_item = class_mean(dice)
            for entry, value in zip(entries, per_item.tolist()):
                scores.append({"case_id": entry["case_id"], "slice_index": entry["slice_index"], "dice_mean": value})
            mean_dice = float(np.nanmean(per_item))
            write_json_atomic(self.output_dir / "scores.json", {"mean_dice": mean_dice, "items": scores})
        logger.info("Segmented %d image(s) with %s into %s", len(items), self.model_path, self.output_dir)
        return {
            "num_items": len(items),
            "datalist": str(datalist),
            "mean_dice": mean_dice,
            "model": str(self.model_path),
        }
