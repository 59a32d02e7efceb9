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
from monai.metrics import DiceMetric, MeanIoU
from monai.networks.utils import one_hot

from monai_synth.networks.nets.dcgan import latents_from_seeds
from monai_synth.networks.nets.pixel_classifier import (
    PixelClassifierEnsemble,
    jensen_shannon_disagreement,
    majority_vote,
)

__all__ = ["StyleInterpreterInferer", "train_style_interpreter", "image_uncertainty_score", "score_labels"]

logger = logging.getLogger(__name__)


def score_labels(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Mean foreground Dice and mIoU (MONAI metrics) of ``(N, 1, S, S)`` label maps."""
    pred, true = one_hot(predicted.cpu().long(), num_classes), one_hot(truth.cpu().long(), num_classes)
    return {
        "dice": float(DiceMetric(include_background=False, reduction="mean")(pred, true).nanmean()),
        "miou": float(MeanIoU(include_background=False, reduction="mean")(pred, true).nanmean()),
    }


def image_uncertainty_score(uncertainty: torch.Tensor, top_fraction: float = 0.1) -> torch.Tensor:
    """Per-image score: mean of the ``top_fraction`` highest pixel uncertainties (DatasetGAN's ranking).

    Args:
        uncertainty: ``(B, H, W)`` (or ``(B, 1, H, W)``) per-pixel Jensen-Shannon disagreement.
    """
    flat = uncertainty.reshape(uncertainty.shape[0], -1)
    k = max(1, int(round(flat.shape[1] * top_fraction)))
    return flat.topk(k, dim=1).values.mean(dim=1)


def _features(
    generator: torch.nn.Module,
    latents: torch.Tensor,
    latent_kind: str,
    truncation_psi: float = 1.0,
    noise: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list]:
    with torch.no_grad():
        if latent_kind == "z":
            out = generator(
                latents, truncation_psi=truncation_psi, noise_mode="const", noise=noise, return_features=True
            )
        else:
            out = generator(ws=latents, noise_mode="const", noise=noise, return_features=True)
    return out.image, out.features


def _image_channels(generator: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The image channels of a generator output (a paired-mode generator also draws mask channels)."""
    config = generator.get_config() if hasattr(generator, "get_config") else {}
    if config.get("mode") == "paired":
        image = image[:, : int(config["image_channels"])]
    return image


class StyleInterpreterInferer(Inferer):
    """Latents -> ``{"image", "label", "probabilities", "uncertainty", "uncertainty_score"}``.

    Args:
        generator: a :class:`~monai_synth.networks.nets.StyleGAN2Generator` (eval mode; constant noise).
        latent_kind: what the inputs are: ``"z"`` ``(B, z_dim)``; ``"w"`` (``(B, w_dim)`` or w+
            ``(B, num_ws, w_dim)``); or ``"seed"`` ``(B,)`` integer seeds, turned into z as the generation
            factory does (:func:`~monai_synth.networks.nets.dcgan.latents_from_seeds`, N(0, 1)).
        rows_per_chunk: image rows classified at a time (bounds memory); ``None`` picks about 16k pixels
            per chunk.
        top_fraction: fraction of the most uncertain pixels averaged into ``uncertainty_score``
            (DatasetGAN ranks images by the mean of their top 10 %).
        truncation_psi: truncation of z latents toward the mean w (1 = none).

    ``inferer(latents, ensemble)`` returns ``image (B, C, S, S)`` (the image channels; not clamped),
    ``label (B, 1, S, S)`` (majority vote), ``probabilities (B, K, S, S)`` (mean softmax over members),
    ``uncertainty (B, 1, S, S)`` (per-pixel Jensen-Shannon disagreement) and ``uncertainty_score (B,)``.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        latent_kind: str = "z",
        rows_per_chunk: int | None = None,
        top_fraction: float = 0.1,
        truncation_psi: float = 1.0,
    ) -> None:
        super().__init__()
        if latent_kind not in ("z", "w", "seed"):
            raise ValueError(f"latent_kind must be 'z', 'w' or 'seed', got {latent_kind!r}.")
        if not 0 < top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
        self.generator = generator
        self.latent_kind = latent_kind
        self.rows_per_chunk = rows_per_chunk
        self.top_fraction = float(top_fraction)
        self.truncation_psi = float(truncation_psi)

    def __call__(
        self,
        inputs: torch.Tensor,
        network: PixelClassifierEnsemble,
        *args: Any,
        noise: list[torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> dict:
        """``noise``: per-layer noise maps of these latents (e.g. from a projection); default constant noise."""
        kind = self.latent_kind
        if kind == "seed":
            seeds = [int(s) for s in torch.as_tensor(inputs).reshape(-1)]
            inputs = latents_from_seeds(seeds, self.generator.z_dim, device=network.w1.device, distribution="normal")
            kind = "z"
        was_training = network.training
        network.eval()
        try:
            image, features = _features(self.generator, inputs, kind, self.truncation_psi, noise)
            b, size, k = image.shape[0], image.shape[-1], network.num_classes
            label = torch.empty(b, size, size, dtype=torch.long, device=image.device)
            probabilities = torch.empty(b, size, size, k, device=image.device)
            uncertainty = torch.empty(b, size, size, device=image.device)
            with torch.no_grad():  # summarise each chunk: member logits never exist for the whole image
                for rows, logits in network.chunks(features, size, rows_per_chunk=self.rows_per_chunk):
                    r = rows.stop - rows.start
                    member_probabilities = logits.softmax(dim=-1)  # (n, B * R * S, K)
                    label[:, rows] = majority_vote(logits).reshape(b, r, size)
                    probabilities[:, rows] = member_probabilities.mean(dim=0).reshape(b, r, size, k)
                    uncertainty[:, rows] = jensen_shannon_disagreement(member_probabilities).reshape(b, r, size)
        finally:
            network.train(was_training)
        uncertainty = uncertainty[:, None]
        return {
            "image": _image_channels(self.generator, image).float(),
            "label": label[:, None],
            "probabilities": probabilities.permute(0, 3, 1, 2),
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
            image, features = _features(generator, latents[idx].to(device), latent_kind, noise=batch_noise)
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
