"""``segment.json``: segment a folder of real images with SemanticGAN and score them when labels are given."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_synth.data import orientation as orient
from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.inferers.semantic_segmentation import SemanticGANInferer
from monai_synth.metrics.segmentation import score_cases, score_labels, summarise_cases
from monai_synth.utils.io import write_json_atomic

__all__ = ["segment_images"]

logger = logging.getLogger(__name__)


def segment_images(
    generator_path: str | Path,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    encoder_path: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    projection_steps: int = 100,
    batch_size: int = 16,
    learning_rate: float = 0.02,
    perceptual_weight: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment every image of ``dataset_dir`` and write NIfTI labels, uncertainty and reconstructions.

    Images are preprocessed like the generator's training data (its size and intensity rule). Outputs in
    ``output_dir``: ``<index>_<case>_{label,uncertainty,reconstruction}.nii.gz`` in the orientation of the
    sources (MONAI ``LoadImage`` reads them like the inputs) and ``segmentation.json``: per image PSNR of the
    reconstruction and mean uncertainty, and when every image has a mask, foreground Dice / mIoU / HD95
    (pixels; mean, standard deviation and the count of images without a distance) and per-image Dice and HD95. A missing ``encoder_path`` starts from the mean w; a missing checkpoint
    means a pixel-only reconstruction loss.

    Raises:
        ValueError: images the generator cannot represent (channels), or files that are not this bundle's.
    """
    device = torch.device(device)
    if encoder_path is not None and not Path(encoder_path).is_file():
        logger.warning("No encoder at %s: segmentation starts from the mean w.", encoder_path)
        encoder_path = None
    if checkpoint_path is not None and (perceptual_weight <= 0 or not Path(checkpoint_path).is_file()):
        if perceptual_weight > 0:
            logger.warning("No checkpoint at %s: projecting with the pixel loss only.", checkpoint_path)
        checkpoint_path = None
    inferer = SemanticGANInferer.from_export(
        generator_path, encoder_path, checkpoint_path, device, num_steps=projection_steps, output="all",
        learning_rate=learning_rate, perceptual_weight=perceptual_weight, seed=seed,
    )  # fmt: skip
    g = inferer.generator
    config_intensity = inferer.export_config.get("data", {}).get("intensity", "auto")
    dataset = PairedSliceDataset(dataset_dir, image_size=g.image_size, intensity=config_intensity,
                                 num_classes=g.num_classes, require_labels=False, seed=seed,
                                 **{k: v for k, v in dict(data_options or {}).items() if v is not None})  # fmt: skip
    if dataset.image_channels != g.image_channels:
        raise ValueError(f"{dataset_dir} has {dataset.image_channels}-channel images but {generator_path} draws "
                         f"{g.image_channels}-channel images.")  # fmt: skip
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32) for item in items])
    truth = torch.stack([torch.as_tensor(np.asarray(item["label"])).long() for item in items])
    started = time.perf_counter()
    outs = [inferer.segment(images[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    seconds = time.perf_counter() - started
    out = {k: torch.cat([o[k].cpu() for o in outs]) for k in outs[0]}
    out_dir = Path(output_dir)
    orientation = dataset.summary["orientation"]
    labelled = dataset.summary.get("unlabelled_items", 0) == 0
    cases = score_cases(out["label"], truth, g.num_classes) if labelled else []
    records = []
    for i, item in enumerate(items):
        name = f"{i:04d}_{item.get('case_id', 'image')}"
        orient.save_label(out_dir / f"{name}_label.nii.gz", out["label"][i].numpy(), orientation)
        orient.save_map(out_dir / f"{name}_uncertainty.nii.gz", out["uncertainty"][i].numpy(), orientation)
        orient.save_image(out_dir / f"{name}_reconstruction.nii.gz", out["reconstruction"][i].numpy(), orientation)
        record = {"name": name, "case_id": str(item.get("case_id")), "psnr": round(float(out["psnr"][i]), 3),
                  "uncertainty": round(float(out["uncertainty"][i].mean()), 6)}  # fmt: skip
        if labelled:
            record.update({k: round(v, 6) for k, v in cases[i].items()})
        records.append(record)
    summary: dict[str, Any] = {
        "num_images": len(items),
        "projection_steps": projection_steps,
        "encoder": encoder_path is not None,
        "psnr_mean": round(float(out["psnr"].mean()), 3),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(items) / max(seconds, 1e-9), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if labelled:
        summary.update(score_labels(out["label"], truth, g.num_classes))
        summary.update({k: v for k, v in summarise_cases(cases).items() if k != "dice"})
    write_json_atomic(out_dir / "segmentation.json", {**summary, "images": records})
    logger.info("segmented %d images into %s; Dice %s, HD95 %s", len(items), out_dir, summary.get("dice"),
                summary.get("hd95"))  # fmt: skip
    return summary
