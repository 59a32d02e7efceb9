"""DatasetGAN style-interpreter training: the pixel-classifier loop and the ``train_interpreter.json`` entry point.

:func:`train_style_interpreter` trains a :class:`~monai_synth.networks.nets.PixelClassifierEnsemble` on
annotated generated images given by their latents: for every step it regenerates the feature maps of
a batch of annotated latents with the (frozen) generator and classifies a random batch of their pixels,
so nothing but the latents and the masks is stored and memory depends on the batch, not on the number
of annotated images. :func:`train_interpreter` runs it from either annotation source (annotated
exports, :mod:`.annotation`; projected real images, :mod:`.projection`) and writes the summary.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from monai_synth.inferers import generator_features
from monai_synth.networks.nets import PixelClassifierEnsemble
from monai_synth.utils.io import write_json_atomic

__all__ = ["train_interpreter", "train_style_interpreter"]

logger = logging.getLogger(__name__)


def train_style_interpreter(
    generator: torch.nn.Module,
    ensemble: PixelClassifierEnsemble,
    latents: torch.Tensor,
    masks: torch.Tensor,
    latent_kind: str = "z",
    epochs: int = 50,
    images_per_step: int = 2,
    pixels_per_image: int = 2048,
    learning_rate: float = 1e-4,
    class_balance: bool = False,
    seed: int = 0,
    noise: list[torch.Tensor] | None = None,
) -> list[float]:
    """Train the ensemble on annotated generated images, regenerating their features batch by batch.

    Cross-entropy summed over members (all trained in the same pass), Adam. An epoch visits every
    annotated image once in batches of ``images_per_step``, each contributing ``pixels_per_image`` random
    pixels. Nothing per pixel is stored between steps.

    Args:
        generator: the frozen generator the latents belong to.
        ensemble: the classifier ensemble (trained in place).
        latents: ``(N, z_dim)`` (``latent_kind="z"``) or w / w+ latents of the annotated images.
        masks: ``(N, S, S)`` or ``(N, 1, S, S)`` integer labels in ``0..K-1``.
        class_balance: weight the loss by inverse class frequency of the annotations.
        noise: per-layer noise maps ``(N, 1, r, r)`` of the latents (projected images); default constant noise.

    Returns:
        mean loss per epoch.

    Raises:
        ValueError: counts, sizes or label values that do not fit the generator and ensemble.
    """
    masks = masks.reshape(masks.shape[0], masks.shape[-2], masks.shape[-1]).long()
    if latents.shape[0] != masks.shape[0] or masks.shape[0] < 1:
        raise ValueError(f"{latents.shape[0]} latents but {masks.shape[0]} masks: give one mask per latent.")
    if masks.min() < 0 or masks.max() >= ensemble.num_classes:
        raise ValueError(
            f"mask values must be in 0..{ensemble.num_classes - 1}, got {int(masks.min())}..{int(masks.max())}."
        )
    size = masks.shape[-1]
    device = next(ensemble.parameters()).device
    rng = torch.Generator().manual_seed(int(seed))
    weight = None
    if class_balance:
        counts = torch.bincount(masks.reshape(-1), minlength=ensemble.num_classes).float()
        weight = (counts.sum() / counts.clamp_min(1) / ensemble.num_classes).to(device)
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=learning_rate)
    ensemble.train()
    history = []
    for epoch in range(int(epochs)):
        order = torch.randperm(latents.shape[0], generator=rng)
        losses = []
        for start in range(0, len(order), images_per_step):
            idx = order[start : start + images_per_step]
            batch_noise = [n[idx].to(device) for n in noise] if noise is not None else None
            image, features = generator_features(generator, latents[idx].to(device), latent_kind, noise=batch_noise)
            if image.shape[-1] != size:
                raise ValueError(f"the generator draws {image.shape[-1]}-pixel images but the masks are {size} pixels.")
            coords = torch.randint(0, size, (len(idx), pixels_per_image, 2), generator=rng).to(device)
            target = masks[idx][torch.arange(len(idx))[:, None], coords[..., 0].cpu(), coords[..., 1].cpu()]
            logits = ensemble.forward_pixels(features, coords, size)  # (n, B * P, K)
            target = target.reshape(-1).to(device).repeat(ensemble.num_members)
            loss = F.cross_entropy(logits.reshape(-1, ensemble.num_classes), target, weight=weight)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"style interpreter loss is {loss.item()} in epoch {epoch + 1}.")
            optimizer.zero_grad(set_to_none=True)
            (loss * ensemble.num_members).backward()
            optimizer.step()
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
        if (epoch + 1) % 10 == 0 or epoch + 1 == int(epochs):
            logger.info("style interpreter epoch %d/%d: loss %.4f", epoch + 1, int(epochs), history[-1])
    return history


def train_interpreter(
    annotation_source: str = "export", summary_path: str | Path | None = None, **kwargs: Any
) -> dict[str, Any]:
    """``train_interpreter.json``'s entry point: ``"export"`` (annotated generated images) or ``"projection"``.

    Args:
        annotation_source: ``"export"`` (:func:`~.annotation.train_interpreter_from_annotations`) or
            ``"projection"`` (:func:`~.projection.train_interpreter_from_projection`).
        summary_path: where the returned summary is also written as JSON (``None``: not written).
        kwargs: the settings of either function; settings of the other source are ignored.

    Returns:
        the training summary (held-out Dice / mIoU, loss history, timings, ``interpreter_path``).

    Raises:
        ValueError: an unknown ``annotation_source``.
    """
    # imported here: both sources train through train_style_interpreter of this module
    from .annotation import train_interpreter_from_annotations
    from .projection import train_interpreter_from_projection

    functions = {"export": train_interpreter_from_annotations, "projection": train_interpreter_from_projection}
    if annotation_source not in functions:
        raise ValueError(f"annotation_source must be 'export' or 'projection', got {annotation_source!r}.")
    function = functions[annotation_source]
    names = inspect.signature(function).parameters
    summary = function(**{k: v for k, v in kwargs.items() if k in names})
    if summary_path is not None:
        write_json_atomic(summary_path, summary)
    logger.info(
        "interpreter trained (%s): held-out Dice %s, mIoU %s; %s train, %s held out -> %s",
        annotation_source,
        summary.get("held_out_dice"),
        summary.get("held_out_miou"),
        summary["num_train"],
        summary["num_held_out"],
        summary["interpreter_path"],
    )
    return summary
