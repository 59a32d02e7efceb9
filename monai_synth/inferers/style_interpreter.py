"""DatasetGAN style interpreter inference: generator features -> pixel labels and their uncertainty.

:class:`StyleInterpreterInferer` is the MONAI ``Inferer`` that turns latents into an image, its label map
(majority vote of a :class:`~monai_synth.networks.nets.PixelClassifierEnsemble` on the generator's
features), class probabilities and the ensemble's uncertainty. Training lives in
:mod:`monai_synth.apps.datasetgan.interpreter_training`.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

from monai_synth.networks.latents import latents_from_seeds
from monai_synth.networks.nets.pixel_classifier import (
    PixelClassifierEnsemble,
    jensen_shannon_disagreement,
    majority_vote,
)

__all__ = ["StyleInterpreterInferer", "generator_features", "image_uncertainty_score"]


def image_uncertainty_score(uncertainty: torch.Tensor, top_fraction: float = 0.1) -> torch.Tensor:
    """Per-image score: mean of the ``top_fraction`` highest pixel uncertainties (DatasetGAN's ranking).

    Args:
        uncertainty: ``(B, H, W)`` (or ``(B, 1, H, W)``) per-pixel Jensen-Shannon disagreement.
    """
    flat = uncertainty.reshape(uncertainty.shape[0], -1)
    k = max(1, int(round(flat.shape[1] * top_fraction)))
    return flat.topk(k, dim=1).values.mean(dim=1)


def generator_features(
    generator: torch.nn.Module,
    latents: torch.Tensor,
    latent_kind: str,
    truncation_psi: float = 1.0,
    noise: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A StyleGAN2 generator's output and feature maps for ``latents``, without gradients, constant noise.

    Args:
        generator: a :class:`~monai_synth.networks.nets.StyleGAN2Generator`.
        latents: ``(B, z_dim)`` when ``latent_kind == "z"``; w ``(B, w_dim)`` or w+ ``(B, num_ws, w_dim)`` otherwise.
        latent_kind: ``"z"`` or ``"w"``.
        truncation_psi: truncation of z latents toward the mean w (1 = none).
        noise: per-layer noise maps (e.g. from a projection); ``None`` uses the constant noise.

    Returns:
        ``(output (B, C [+ M], S, S), features)``: two feature maps per resolution block, coarse to fine.
    """
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
            factory does (:func:`~monai_synth.networks.latents.latents_from_seeds`, N(0, 1)).
        rows_per_chunk: rows of one image classified at a time (bounds memory); ``None`` picks about 1024
            pixels per chunk.
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
            image, features = generator_features(self.generator, inputs, kind, self.truncation_psi, noise)
            b, size, k = image.shape[0], image.shape[-1], network.num_classes
            label = torch.empty(b, size, size, dtype=torch.long, device=image.device)
            probabilities = torch.empty(b, k, size, size, device=image.device)
            uncertainty = torch.empty(b, size, size, device=image.device)
            with torch.no_grad():  # summarise each chunk: member logits never exist for the whole image
                for i, rows, logits in network.chunks(features, size, rows_per_chunk=self.rows_per_chunk):
                    r = rows.stop - rows.start
                    # softmax over K along pixels ((n, K, R * S)): over a last axis of 2 classes it is 20x slower
                    member_probabilities = logits.transpose(1, 2).softmax(dim=1).transpose(1, 2)  # (n, R * S, K)
                    label[i, rows] = majority_vote(logits).reshape(r, size)
                    probabilities[i, :, rows] = member_probabilities.mean(dim=0).T.reshape(k, r, size)
                    uncertainty[i, rows] = jensen_shannon_disagreement(member_probabilities).reshape(r, size)
        finally:
            network.train(was_training)
        uncertainty = uncertainty[:, None]
        return {
            "image": _image_channels(self.generator, image).float(),
            "label": label[:, None],
            "probabilities": probabilities,
            "uncertainty": uncertainty,
            "uncertainty_score": image_uncertainty_score(uncertainty, self.top_fraction),
        }
