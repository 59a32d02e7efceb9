"""DatasetGAN annotation round-trip: export generated images for annotation, read the masks back, train.

1. :func:`export_for_annotation` writes ``N`` images of a trained StyleGAN2 generator as NIfTI (and PNG)
   with their latents and a manifest that fingerprints the generator, ready to annotate in 3D Slicer or
   ITK-SNAP (save each mask as ``<id>_label.nii.gz`` in a labels folder). A paired-mode generator also
   writes its own decoded masks to ``auto_labels/``: an annotation source that needs no person (tests
   and the phantom quick-start).
2. :func:`load_annotations` reads the masks back and checks names, shapes and label values, and that
   the generator is the one the images came from.
3. :func:`train_interpreter_from_annotations` regenerates the same features from the saved latents,
   trains a :class:`~monai_synth.networks.nets.PixelClassifierEnsemble` on part of the annotated images
   and reports Dice / mIoU (MONAI metrics) on the annotated images it did not train on.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from monai_synth.apps.generation import sample_seed
from monai_synth.data import orientation as orient
from monai_synth.inferers import StyleInterpreterInferer, latent_spec
from monai_synth.metrics.segmentation import score_labels
from monai_synth.networks.latents import latents_from_seeds
from monai_synth.networks.nets import PixelClassifierEnsemble
from monai_synth.transforms import DecodePaired
from monai_synth.utils.export import file_sha256, load_generator, save_interpreter
from monai_synth.utils.io import read_json, torch_save_atomic, write_json_atomic
from monai_synth.utils.visualize import to_uint8

from .interpreter_training import train_style_interpreter

__all__ = ["export_for_annotation", "load_annotations", "train_interpreter_from_annotations"]

logger = logging.getLogger(__name__)


def export_for_annotation(
    generator_path: str | Path,
    output_dir: str | Path,
    num_samples: int = 30,
    seed: int = 0,
    batch_size: int = 16,
    save_png: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Write generated images + latents + ``manifest.json`` for annotation; returns the manifest."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    generator_path = Path(generator_path)
    # the style interpreter reads StyleGAN2 features: a paired_dcgan export is refused, naming the file
    generator, config = load_generator(generator_path, device, bundle="datasetgan", conditional=False)
    gconfig = config["generator"]
    dim, distribution = latent_spec(config)
    out = Path(output_dir)
    seeds = [sample_seed(seed, i) for i in range(num_samples)]
    ids = [f"ann_{s:08d}" for s in seeds]
    z = latents_from_seeds(seeds, dim, distribution=distribution)
    data = config.get("data", {})
    # images load like the training sources (MONAI LoadImage); masks drawn on them are read back by load_annotations
    orientation = orient.export_orientation(config, generator_path)
    decode = None
    if gconfig["mode"] == "paired":
        decode = DecodePaired(int(data["image_channels"]), int(data["num_classes"]))
    for start in range(0, num_samples, batch_size):
        with torch.no_grad():
            pairs = generator(z[start : start + batch_size].to(device), noise_mode="const").float().cpu()
        if decode is not None:
            images, labels = decode(pairs)
        else:
            images, labels = pairs.clamp(-1, 1), None
        for j in range(images.shape[0]):
            name = ids[start + j]
            image = images[j].numpy()
            orient.save_image(out / "images" / f"{name}_image.nii.gz", image, orientation)
            if save_png:
                orient.save_preview(out / "images" / f"{name}_image.png", to_uint8(image[0]), orientation)
            if labels is not None:
                orient.save_label(out / "auto_labels" / f"{name}_label.nii.gz", labels[j].numpy(), orientation)
    torch_save_atomic({"z": z, "seeds": seeds, "ids": ids}, out / "latents.pt")
    manifest = {
        "generator_path": str(generator_path),
        "generator_sha256": file_sha256(generator_path),
        "mode": gconfig["mode"],
        "image_size": int(gconfig["image_size"]),
        "num_classes": int(data.get("num_classes", 2)),
        "label_names": data.get("label_names"),
        "latent": {"kind": "z", "dim": dim, "distribution": distribution, "noise_mode": "const"},
        "seed": int(seed),
        "ids": ids,
        "seeds": seeds,
        "auto_labels": decode is not None,
        "orientation": orientation,
        "how_to_annotate": "Label each images/<id>_image.nii.gz; save the mask as <labels_dir>/<id>_label.nii.gz "
        "(integer labels 0..K-1, same size). Unannotated ids are skipped.",
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def load_annotations(
    export_dir: str | Path,
    labels_dir: str | Path,
    generator_path: str | Path,
    num_classes: int | None = None,
    require_all: bool = True,
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Read annotated masks back: ``(ids, z (N, dim), masks (N, S, S) int64)`` of the annotated exports.

    Args:
        require_all: every exported image must have its mask (a forgotten or misnamed file is an error
            naming it); ``False`` trains on the annotated subset.

    Raises:
        ValueError: the generator is not the exported one, no mask, missing masks (with ``require_all``),
            masks whose names match no export, wrong sizes or label values outside ``0..num_classes-1`` --
            each naming the files.
    """
    export_dir, labels_dir = Path(export_dir), Path(labels_dir)
    manifest = read_json(export_dir / "manifest.json")
    if file_sha256(generator_path) != manifest["generator_sha256"]:
        raise ValueError(
            f"{generator_path} is not the generator the images in {export_dir} were exported from (sha256 differs): "
            "features would not match the annotated images. Export again with this generator."
        )
    if not labels_dir.is_dir():
        raise FileNotFoundError(f"Labels folder {labels_dir} does not exist; put the <id>_label.nii.gz masks there.")
    known = set(manifest["ids"])
    files = {p.name[: -len("_label.nii.gz")]: p for p in labels_dir.glob("*_label.nii.gz")}
    unknown = sorted(set(files) - known)
    if unknown:
        raise ValueError(f"Masks in {labels_dir} match no exported image: {[files[u].name for u in unknown][:10]}.")
    ids = [i for i in manifest["ids"] if i in files]
    if not ids:
        raise ValueError(f"No <id>_label.nii.gz masks in {labels_dir} for the images exported to {export_dir}.")
    missing = [f"{i}_label.nii.gz" for i in manifest["ids"] if i not in files]
    if missing and require_all:
        raise ValueError(
            f"{len(missing)} of the {len(manifest['ids'])} images exported to {export_dir} have no mask in {labels_dir}: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}. Annotate them, or set require_all_labels False to "
            "train on the annotated ones only."
        )
    k = int(num_classes or manifest["num_classes"])
    size = int(manifest["image_size"])
    masks = []
    for i in ids:
        array = np.asarray(nib.load(str(files[i])).dataobj)
        # back to the generator's layout (the mask has the exported image's file layout); old exports: as is
        array = orient.from_file_layout(np.squeeze(array), manifest.get("orientation"))
        if array.shape != (size, size):
            raise ValueError(f"{files[i]} has shape {array.shape}; the exported image is {size} x {size}.")
        if not np.all(np.equal(np.mod(array, 1), 0)) or array.min() < 0 or array.max() >= k:
            raise ValueError(f"{files[i]} holds values {np.unique(array)[:10].tolist()}; expected integers 0..{k - 1}.")
        masks.append(torch.as_tensor(array.astype(np.int64)))
    latents = torch.load(export_dir / "latents.pt", weights_only=True)
    z = latents["z"][[manifest["ids"].index(i) for i in ids]]
    return ids, z, torch.stack(masks)


def train_interpreter_from_annotations(
    generator_path: str | Path,
    export_dir: str | Path,
    labels_dir: str | Path,
    output_path: str | Path,
    num_classes: int | None = None,
    holdout_fraction: float = 0.25,
    num_members: int = 10,
    hidden_channels: tuple[int, int] = (256, 128),
    epochs: int = 100,
    images_per_step: int = 2,
    pixels_per_image: int = 2048,
    learning_rate: float = 1e-4,
    class_balance: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    require_all: bool = True,
) -> dict[str, Any]:
    """Train the ensemble on the annotated exports, score it on held-out annotated ones, save it.

    Writes ``output_path`` (:func:`~monai_synth.utils.export.save_interpreter`) and returns a summary with
    the held-out mean foreground Dice and mIoU (MONAI ``DiceMetric`` / ``MeanIoU``), the loss curve and the
    peak training memory of the process.
    """
    device = torch.device(device)
    ids, z, masks = load_annotations(export_dir, labels_dir, generator_path, num_classes, require_all)
    manifest = read_json(Path(export_dir) / "manifest.json")
    generator, config = load_generator(generator_path, device, conditional=False)
    k = int(num_classes or config["data"]["num_classes"])
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = int(round(len(ids) * holdout_fraction)) if len(ids) > 1 else 0
    held, train = order[:n_held], order[n_held:]
    torch.manual_seed(seed)
    ensemble = PixelClassifierEnsemble(generator.feature_channels, k, num_members, hidden_channels).to(device)
    start = time.perf_counter()
    history = train_style_interpreter(
        generator, ensemble, z[train], masks[train], "z", epochs, images_per_step, pixels_per_image,
        learning_rate, class_balance, seed,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    scores: dict[str, Any] = {"num_train": len(train), "num_held_out": len(held)}
    if held:
        out = StyleInterpreterInferer(generator)(z[held].to(device), ensemble)
        result = score_labels(out["label"], masks[held][:, None], k)
        scores["held_out_dice"], scores["held_out_miou"] = result["dice"], result["miou"]
        scores["held_out_uncertainty_score"] = out["uncertainty_score"].tolist()
    save_interpreter(
        ensemble,
        output_path,
        manifest["generator_sha256"],  # checked equal to the generator's by load_annotations
        manifest.get("label_names"),
        train_ids=[ids[i] for i in train],
        held_out_ids=[ids[i] for i in held],
    )
    return {
        **scores,
        "loss_history": history,
        "training_seconds": round(seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "interpreter_path": str(output_path),
    }
