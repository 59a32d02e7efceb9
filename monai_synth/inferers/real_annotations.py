"""Train the style interpreter from existing *real* annotations, through GAN inversion.

DatasetGAN needs a person to annotate generated images. Most users already have annotated real images:
projecting them into the generator's W+ space (:class:`~monai_synth.inferers.GANProjector`) gives
generator features aligned with the real masks, so the interpreter can learn from annotations that
exist. :func:`train_interpreter_from_projection` projects ``num_annotations`` labelled real images,
trains the ensemble on (features of the projected latents, real masks), and scores it on
``num_held_out`` other real labelled images by projecting them and classifying the projection -- the
way the bundle segments a real image. :func:`train_interpreter` is the ``train_interpreter.json`` entry
point for both annotation sources.
"""

from __future__ import annotations

import inspect
import logging
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.networks.nets import PixelClassifierEnsemble
from monai_synth.networks.nets.stylegan2 import StyleGAN2Discriminator
from monai_synth.utils.io import save_nifti_atomic, save_png_atomic, torch_save_atomic, write_json_atomic

from .annotation import train_interpreter_from_annotations
from .interpreter_generation import load_interpreter
from .paired_generation import _sha256, load_generator
from .projection import GANProjector, ProjectionResult, load_discriminator, train_latent_encoder
from .style_interpreter import StyleInterpreterInferer, score_labels, train_style_interpreter

__all__ = [
    "project_images",
    "score_labels",
    "segment_real_images",
    "train_interpreter",
    "train_interpreter_from_projection",
]

logger = logging.getLogger(__name__)


def project_images(projector: GANProjector, images: torch.Tensor, batch_size: int = 16) -> ProjectionResult:
    """Project ``images (N, C, S, S)`` in batches; one :class:`ProjectionResult` for all of them."""
    parts = [projector(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    noise = None
    if parts[0].noise is not None:
        noise = [torch.cat([p.noise[k] for p in parts]) for k in range(len(parts[0].noise))]
    return ProjectionResult(
        ws=torch.cat([p.ws for p in parts]),
        noise=noise,
        image=torch.cat([p.image for p in parts]),
        psnr=torch.cat([p.psnr for p in parts]),
        ssim=torch.cat([p.ssim for p in parts]),
        loss_history=parts[0].loss_history,
        seconds=sum(p.seconds for p in parts),
    )


def _subset(result: ProjectionResult, index: list[int]) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    noise = [n[index] for n in result.noise] if result.noise is not None else None
    return result.ws[index], noise


def _real_dataset(
    generator_path: str | Path, config: dict[str, Any], dataset_dir: str | Path | None, **kwargs: Any
) -> PairedSliceDataset:
    """Real data preprocessed as the generator's training data (its intensity rule and size), channels checked."""
    dataset = PairedSliceDataset(
        dataset_dir,
        image_size=int(config["generator"]["image_size"]),
        intensity=config.get("data", {}).get("intensity", "auto"),
        **kwargs,
    )
    if dataset.image_channels != int(config["generator"]["image_channels"]):
        raise ValueError(
            f"{dataset_dir} has {dataset.image_channels}-channel images but {generator_path} draws "
            f"{config['generator']['image_channels']}-channel images; project data of the kind the GAN was trained on."
        )
    return dataset


def _stack(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, S, S) float32, masks (N, 1, S, S) int64)`` of dataset items."""
    images = torch.stack([torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32) for item in items])
    masks = torch.stack([torch.as_tensor(np.asarray(item["label"])).long() for item in items])
    return images, masks


def _perceptual_discriminator(
    checkpoint_path: str | Path | None, perceptual_weight: float, device: torch.device
) -> StyleGAN2Discriminator | None:
    """The training checkpoint's discriminator for the perceptual term, or ``None`` (pixel loss only)."""
    if perceptual_weight <= 0:
        return None
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        return load_discriminator(checkpoint_path, device)
    logger.warning("No discriminator checkpoint at %s: projecting with the pixel loss only.", checkpoint_path)
    return None


def train_interpreter_from_projection(
    generator_path: str | Path,
    dataset_dir: str | Path | None,
    output_path: str | Path,
    projection_dir: str | Path,
    checkpoint_path: str | Path | None = None,
    num_annotations: int = 30,
    num_held_out: int = 30,
    projection_steps: int = 300,
    projection_batch_size: int = 16,
    optimize_noise: bool = False,
    perceptual_weight: float = 1.0,
    use_encoder: bool = False,
    encoder_steps: int = 500,
    num_members: int = 10,
    hidden_channels: tuple[int, int] = (256, 128),
    epochs: int = 100,
    images_per_step: int = 2,
    pixels_per_image: int = 2048,
    learning_rate: float = 1e-4,
    class_balance: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_options: dict[str, Any] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Project labelled real images, train the interpreter on them, score it on other projected real images.

    Args:
        generator_path: the exported generator (image or paired mode).
        dataset_dir: labelled real data (folder or datalist; ``None``: the built-in phantom), preprocessed
            as the generator's training data (its intensity rule, its size).
        output_path: where ``interpreter.pt`` goes.
        projection_dir: where the projected latents, their manifest and previews go.
        checkpoint_path: the training checkpoint holding the discriminator (perceptual loss); when
            missing, the projection uses the pixel loss only (with a warning).
        num_annotations: labelled real images the interpreter trains on (``K``).
        num_held_out: other labelled real images it is scored on (0: no score).
        projection_steps, projection_batch_size, optimize_noise, perceptual_weight: see
            :class:`~monai_synth.inferers.GANProjector`.
        use_encoder: initialise projections with a :class:`~monai_synth.inferers.LatentEncoder` trained for
            ``encoder_steps`` batches on generated images.
        data_options: extra :class:`~monai_synth.data.PairedSliceDataset` arguments (``slice_axis``,
            ``keep_labels``, ``mask_threshold``, ``mask_mapping``, ``max_items``, ``cache_dir``).
        num_classes: classes ``K`` (background included); inferred from the masks when ``None``.

    Returns:
        the summary written beside the interpreter: held-out Dice / mIoU of project-then-classify on real
        images, the same on the training images, reconstruction PSNR / SSIM, timings, peak memory.

    Raises:
        ValueError: too few labelled images, or images the generator cannot represent (channels, size).
    """
    device = torch.device(device)
    generator, config = load_generator(generator_path, device)
    generator_sha256 = _sha256(Path(generator_path))
    dataset = _real_dataset(
        generator_path, config, dataset_dir, num_classes=num_classes, seed=seed, **dict(data_options or {})
    )
    n = len(dataset)
    if num_annotations < 1 or num_annotations + max(num_held_out, 0) > n:
        raise ValueError(
            f"{dataset_dir} holds {n} labelled images; num_annotations={num_annotations} plus "
            f"num_held_out={num_held_out} must be at least 1 and at most {n}."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = order[: num_annotations + num_held_out]
    items = [dataset[i] for i in chosen]
    images, masks = _stack(items)
    case_ids = [str(item.get("case_id", i)) for item, i in zip(items, chosen)]
    k = dataset.num_classes

    discriminator = _perceptual_discriminator(checkpoint_path, perceptual_weight, device)
    started = time.perf_counter()
    encoder = train_latent_encoder(generator, steps=encoder_steps, seed=seed) if use_encoder else None
    encoder_seconds = time.perf_counter() - started
    projector = GANProjector(
        generator,
        discriminator,
        num_steps=projection_steps,
        optimize_noise=optimize_noise,
        perceptual_weight=perceptual_weight,
        encoder=encoder,
        seed=seed,
    )
    projected = project_images(projector, images, projection_batch_size)
    train_idx = list(range(num_annotations))
    held_idx = list(range(num_annotations, num_annotations + num_held_out))

    projection_dir = Path(projection_dir)
    torch_save_atomic(
        {
            "ws": projected.ws.cpu(),
            "noise": [x.cpu() for x in projected.noise] if projected.noise is not None else None,
            "masks": masks,
            "case_ids": case_ids,
            "train": train_idx,
            "held_out": held_idx,
        },
        projection_dir / "latents.pt",
    )
    for j in range(min(8, len(items))):  # target | reconstruction previews
        pair = torch.cat([images[j, 0], projected.image[j, 0].cpu()], dim=1)
        save_png_atomic(projection_dir / f"preview_{j:02d}.png", np.round((pair.numpy() + 1) * 127.5).astype(np.uint8))

    torch.manual_seed(seed)
    ensemble = PixelClassifierEnsemble(generator.feature_channels, k, num_members, hidden_channels).to(device)
    train_ws, train_noise = _subset(projected, train_idx)
    started = time.perf_counter()
    history = train_style_interpreter(
        generator, ensemble, train_ws, masks[train_idx], "w", epochs, images_per_step, pixels_per_image,
        learning_rate, class_balance, seed, noise=train_noise,
    )  # fmt: skip
    training_seconds = time.perf_counter() - started
    inferer = StyleInterpreterInferer(generator, latent_kind="w")
    scores: dict[str, Any] = {}
    for name, index in (("train", train_idx), ("held_out", held_idx)):
        if not index:
            continue
        ws, noise = _subset(projected, index)
        out = inferer(ws.to(device), ensemble, noise=[x.to(device) for x in noise] if noise else None)
        result = score_labels(out["label"], masks[index], k)
        scores[f"{name}_dice"], scores[f"{name}_miou"] = result["dice"], result["miou"]
    label_names = {str(key): value for key, value in dataset.label_names.items()}
    torch_save_atomic(
        {
            "state_dict": ensemble.state_dict(),
            "config": ensemble.get_config(),
            "generator_sha256": generator_sha256,
            "label_names": label_names,
            "annotation_source": "projection",
            "train_ids": [case_ids[i] for i in train_idx],
            "held_out_ids": [case_ids[i] for i in held_idx],
        },
        output_path,
    )
    psnr, ssim = projected.psnr, projected.ssim
    manifest = {
        "generator_sha256": generator_sha256,
        "dataset": dataset.summary["source"],
        "projection": projector.settings(),
        "discriminator": str(checkpoint_path) if discriminator is not None else None,
        "images": [
            {
                "case_id": case_ids[i],
                "split": "train" if i < num_annotations else "held_out",
                "psnr": round(float(psnr[i]), 3),
                "ssim": round(float(ssim[i]), 4),
            }
            for i in range(len(items))
        ],  # fmt: skip
    }
    write_json_atomic(projection_dir / "manifest.json", manifest)
    return {
        "annotation_source": "projection",
        "num_train": num_annotations,
        "num_held_out": num_held_out,
        **scores,
        "psnr_mean": round(float(psnr.mean()), 3),
        "psnr_std": round(float(psnr.std()), 3) if len(psnr) > 1 else 0.0,
        "ssim_mean": round(float(ssim.mean()), 4),
        "projection_steps": projection_steps,
        "projection_seconds": round(projected.seconds, 2),
        "projection_images_per_s": round(len(items) / projected.seconds, 3),
        "encoder_seconds": round(encoder_seconds, 2) if use_encoder else None,
        "loss_history": history,
        "training_seconds": round(training_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "interpreter_path": str(output_path),
        "label_names": label_names,
    }


def train_interpreter(annotation_source: str = "export", **kwargs: Any) -> dict[str, Any]:
    """``train_interpreter.json``'s entry point: ``"export"`` (annotated generated images) or ``"projection"``.

    ``kwargs`` are the settings of :func:`train_interpreter_from_annotations` or
    :func:`train_interpreter_from_projection`; settings of the other source are ignored.
    """
    functions = {"export": train_interpreter_from_annotations, "projection": train_interpreter_from_projection}
    if annotation_source in functions:
        function = functions[annotation_source]
        names = inspect.signature(function).parameters
        return function(**{k: v for k, v in kwargs.items() if k in names})
    raise ValueError(f"annotation_source must be 'export' or 'projection', got {annotation_source!r}.")


def segment_real_images(
    generator_path: str | Path,
    interpreter_path: str | Path,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    checkpoint_path: str | Path | None = None,
    projection_steps: int = 300,
    projection_batch_size: int = 16,
    optimize_noise: bool = False,
    perceptual_weight: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment real images with the GAN: project each into W+, then label the projection with the interpreter.

    Writes ``<index>_<case>_{label,uncertainty,reconstruction}.nii.gz`` and ``segmentation.json`` (per image
    PSNR / SSIM of the reconstruction, uncertainty score, and Dice when the data are labelled) to
    ``output_dir``; returns the summary. Images are preprocessed as the generator's training data.
    """
    device = torch.device(device)
    generator, config = load_generator(generator_path, device)
    ensemble, _ = load_interpreter(interpreter_path, generator_path, device)
    dataset = _real_dataset(
        generator_path,
        config,
        dataset_dir,
        num_classes=max(ensemble.num_classes, 2),
        seed=seed,
        require_labels=False,
        **dict(data_options or {}),
    )
    items = [dataset[i] for i in range(len(dataset))]
    images, truth = _stack(items)
    discriminator = _perceptual_discriminator(checkpoint_path, perceptual_weight, device)
    projector = GANProjector(generator, discriminator, num_steps=projection_steps, optimize_noise=optimize_noise,
                             perceptual_weight=perceptual_weight, seed=seed)  # fmt: skip
    projected = project_images(projector, images, projection_batch_size)
    inferer = StyleInterpreterInferer(generator, latent_kind="w")
    labels, uncertainty, scores = [], [], []
    for start in range(0, len(items), projection_batch_size):
        index = list(range(start, min(start + projection_batch_size, len(items))))
        ws, noise = _subset(projected, index)
        out = inferer(ws.to(device), ensemble, noise=[x.to(device) for x in noise] if noise else None)
        labels.append(out["label"].cpu())
        uncertainty.append(out["uncertainty"].cpu())
        scores += out["uncertainty_score"].cpu().tolist()
    labels, uncertainty = torch.cat(labels), torch.cat(uncertainty)
    out_dir = Path(output_dir)
    records = []
    for i, item in enumerate(items):
        name = f"{i:04d}_{item.get('case_id', 'image')}"
        save_nifti_atomic(out_dir / f"{name}_label.nii.gz", labels[i, 0].numpy().astype(np.uint8))
        save_nifti_atomic(out_dir / f"{name}_uncertainty.nii.gz", uncertainty[i, 0].numpy().astype(np.float32))
        save_nifti_atomic(out_dir / f"{name}_reconstruction.nii.gz", projected.image[i].cpu().numpy())
        records.append({"name": name, "psnr": round(float(projected.psnr[i]), 3),
                        "ssim": round(float(projected.ssim[i]), 4), "uncertainty_score": round(scores[i], 6)})  # fmt: skip
    summary: dict[str, Any] = {
        "num_images": len(items),
        "psnr_mean": round(float(projected.psnr.mean()), 3),
        "ssim_mean": round(float(projected.ssim.mean()), 4),
        "projection_seconds": round(projected.seconds, 2),
    }
    if dataset.summary.get("unlabelled_items", 0) == 0:  # every image came with its mask: score the labels
        summary.update(score_labels(labels, truth, ensemble.num_classes))
    write_json_atomic(out_dir / "segmentation.json", {**summary, "images": records})
    return summary
