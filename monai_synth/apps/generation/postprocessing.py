"""The one decode -> post-process chain of generated pairs, and the generator-side inference parts.

:func:`pair_postprocessing` is used by the dataset factories (one pair at a time) and, as the
evaluator's ``postprocessing``, by the bundles' ``inference.json``; :func:`generator_inference` gives
those configs the network, inferer, latent preparation and postprocessing of an exported generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose, FlattenSubKeysd, Lambdad

from monai_synth.inferers import PairedGenerationInferer, SeedLatents, latent_spec
from monai_synth.transforms import DecodePairedd, PostprocessMaskd
from monai_synth.utils.export import load_generator

__all__ = ["GenerationParts", "generator_inference", "pair_postprocessing", "resolve_num_components"]

LABEL_SOURCES = ("generator", "interpreter")


def resolve_num_components(num_components: int | str, config: dict[str, Any]) -> int:
    """Components kept per class: an integer >= 1, or ``"auto"``: the largest typical count seen in the
    generator's training masks (``config["data"]["components_per_class"]``; 1 when unknown).

    Raises:
        ValueError: neither ``"auto"`` nor an integer >= 1.
    """
    if num_components == "auto":
        return int(max(config.get("data", {}).get("components_per_class") or [1]))
    if isinstance(num_components, bool) or not isinstance(num_components, int) or num_components < 1:
        raise ValueError(f"num_components must be 'auto' or an integer >= 1, got {num_components!r}.")
    return num_components


def _clamp_unit(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1, 1)


def pair_postprocessing(
    image_channels: int,
    num_classes: int,
    mode: str = "paired",
    threshold: float = 0.0,
    num_components: int | None = 1,
    label_source: str = "generator",
    key: str = "pred",
    prefix: str = "gen",
) -> Compose:
    """Decode a generated item into image + labels, then clean the labels.

    ``d[key]`` is either a generator's raw output ``(C + M, H, W)`` in [-1, 1] (``label_source="generator"``:
    :class:`~monai_synth.transforms.DecodePairedd`, threshold / argmax) or a
    :class:`~monai_synth.inferers.StyleInterpreterInferer` output dict (``"interpreter"``: its ``image``,
    ``label`` and ``uncertainty`` become ``<prefix>_image``, ``<prefix>_label``, ``<prefix>_uncertainty``; the image is
    clamped to [-1, 1]). Then :class:`~monai_synth.transforms.PostprocessMaskd` keeps the largest
    ``num_components`` components per class, fills holes and stores the changed fraction under
    ``"postprocess_change"`` (skipped when ``num_components`` is ``None`` or there is no label).

    Args:
        image_channels: ``C`` image channels of the generator.
        num_classes: ``K`` label classes (background included).
        mode: the generator's output: ``"paired"``, ``"image"`` or ``"mask"`` (StyleGAN2 modes).
        threshold: binary mask threshold in [-1, 1].
        num_components: components kept per class; ``None``: no post-processing.
        label_source: ``"generator"`` or ``"interpreter"``.
        key: input key; outputs go to ``<prefix>_image``, ``<prefix>_label`` (and ``<prefix>_uncertainty``).

    Returns:
        a ``Compose`` for one (decollated) item.
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}.")
    image_key, label_key = f"{prefix}_image", f"{prefix}_label"
    if label_source == "interpreter":
        transforms: list = [
            FlattenSubKeysd(keys=key, sub_keys=["image", "label", "uncertainty"], prefix=prefix),
            Lambdad(keys=image_key, func=_clamp_unit),
        ]
    else:
        transforms = [
            DecodePairedd(key=key, image_key=image_key, label_key=label_key, image_channels=image_channels,
                          num_classes=num_classes, threshold=threshold, mode=mode)
        ]  # fmt: skip
    if num_components is not None:
        transforms.append(
            PostprocessMaskd(keys=label_key, num_classes=num_classes, num_components=num_components,
                             allow_missing_keys=True)
        )  # fmt: skip
    return Compose(transforms)


@dataclass
class GenerationParts:
    """What an ``inference.json`` evaluator needs: ``network``, ``inferer``, ``prepare_batch``, ``postprocessing``."""

    network: torch.nn.Module
    inferer: Any
    prepare_batch: SeedLatents
    postprocessing: Compose
    config: dict[str, Any]


def generator_inference(
    generator_path: str | Path,
    device: str | torch.device = "cpu",
    threshold: float = 0.0,
    truncation_psi: float | None = None,
    bundle: str | None = None,
    num_components: int | str = "auto",
) -> GenerationParts:
    """The parts of an evaluator drawing an exported generator's own pairs for latent seeds.

    Args:
        generator_path: exported ``generator.pt``.
        device: device of the network.
        threshold: binary mask threshold.
        truncation_psi: passed to every StyleGAN2 call (``None``: not passed, DCGAN).
        bundle: refuse a generator of another bundle (see :func:`~monai_synth.utils.export.load_generator`).
        num_components: components kept per class by post-processing, or ``"auto"``.

    Returns:
        :class:`GenerationParts` (the network is in eval mode on ``device``).
    """
    network, config = load_generator(generator_path, device, bundle=bundle, conditional=False)
    data = config["data"]
    dim, distribution = latent_spec(config)
    network_kwargs = {} if truncation_psi is None else {"truncation_psi": truncation_psi}
    postprocessing = pair_postprocessing(
        int(data["image_channels"]),
        int(data["num_classes"]),
        mode=config["generator"].get("mode", "paired"),
        threshold=threshold,
        num_components=resolve_num_components(num_components, config),
    )
    return GenerationParts(network, PairedGenerationInferer(network_kwargs), SeedLatents(dim, distribution),
                           postprocessing, config)  # fmt: skip
