"""DatasetGAN style interpreter: generator features -> pixel labels, training and inference.

:func:`train_style_interpreter` trains a :class:`~monai_synth.networks.nets.PixelClassifierEnsemble` on
annotated generated images given by their latents: for every step it regenerates the feature maps of
a batch of annotated latents with the (frozen) generator and classifies a random batch of their pixels,
so nothing but the latents and the masks is stored and memory depends on the batch, not on the number
of annotated images. :class:`StyleInterpreterInferer` is the MONAI ``Inferer`` that turns latents into
an image, its label map, class probabilities and the ensemble's uncertainty.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer

from monai_synth.networks.nets.pixel_classifier import (
    PixelClassifierEnsemble,
    jensen_shannon_disagreement,
    majority_vote,
)

__all__ = ["StyleInterpreterInferer", "train_style_interpreter", "image_uncertainty_score"]

logger = logging.getLogger(__name__)


def image_uncertainty_score(uncertainty: torch.Tensor, top_fraction: float = 0.1) -> torch.Tensor:
    """Per-image score: mean of the ``top_fraction`` highest pixel uncertainties (DatasetGAN's ranking).

    Args:
        uncertainty: ``(B, H, W)`` (or ``(B, 1, H, W)``) per-pixel Jensen-Shannon disagreement.
    """
    flat = uncertainty.reshape(uncertainty.shape[0], -1)
    k = max(1, int(round(flat.shape[1] * top_fraction)))
    return flat.topk(k, dim=1).values.mean(dim=1)


def _features(generator: torch.nn.Module, latents: torch.Tensor, latent_kind: str) -> tuple[torch.Tensor, list]:
    with torch.no_grad():
        if latent_kind == "z":
            out = generator(latents, noise_mode="const", return_features=True)
        else:
            out = generator(ws=latents, noise_mode="const", return_features=True)
    return out.image, out.features


class StyleInterpreterInferer(Inferer):
    """Latents -> ``{"image", "label", "probabilities", "uncertainty", "uncertainty_score"}``.

    Args:
        generator: a :class:`~monai_synth.networks.nets.StyleGAN2Generator` (eval mode; constant noise).
        latent_kind: what the inputs are: ``"z"`` ``(B, z_dim)``, or ``"w"`` (``(B, w_dim)`` or w+
            ``(B, num_ws, w_dim)``).
        rows_per_chunk: image rows classified at a time (bounds memory).
        top_fraction: fraction of the most uncertain pixels averaged into ``uncertainty_score``.

    ``inferer(latents, ensemble)`` returns ``image (B, C, S, S)``, ``label (B, 1, S, S)`` (majority vote),
    ``probabilities (B, K, S, S)`` (mean softmax over members), ``uncertainty (B, 1, S, S)`` (per-pixel
    Jensen-Shannon disagreement) and ``uncertainty_score (B,)``.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        latent_kind: str = "z",
        rows_per_chunk: int = 32,
        top_fraction: float = 0.1,
    ) -> None:
        super().__init__()
        if latent_kind not in ("z", "w"):
            raise ValueError(f"latent_kind must be 'z' or 'w', got {latent_kind!r}.")
        self.generator = generator
        self.latent_kind = latent_kind
        self.rows_per_chunk = int(rows_per_chunk)
        self.top_fraction = float(top_fraction)

    def __call__(self, inputs: torch.Tensor, network: PixelClassifierEnsemble, *args: Any, **kwargs: Any) -> dict:
        was_training = network.training
        network.eval()
        try:
            image, features = _features(self.generator, inputs, self.latent_kind)
            size = image.shape[-1]
            with torch.no_grad():
                logits = network(features, size, rows_per_chunk=self.rows_per_chunk)  # (n, B, K, S, S)
        finally:
            network.train(was_training)
        n, b, k = logits.shape[:3]
        per_member = logits.permute(0, 1, 3, 4, 2).reshape(n, -1, k)  # (n, B * S * S, K)
        probabilities = per_member.softmax(dim=-1)
        label = majority_vote(per_member).reshape(b, 1, size, size)
        uncertainty = jensen_shannon_disagreement(probabilities).reshape(b, 1, size, size)
        return {
            "image": image.float(),
            "label": label,
            "probabilities": probabilities.mean(dim=0).reshape(b, size, size, k).permute(0, 3, 1, 2),
            "uncertainty": uncertainty,
            "uncertainty_score": image_uncertainty_score(uncertainty, self.top_fraction),
        }


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
            image, features = _features(generator, latents[idx].to(device), latent_kind)
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
        logger.debug("style interpreter epoch %d: loss %.4f", epoch + 1, history[-1])
    return history
