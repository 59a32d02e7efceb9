"""Cheap diversity figures of a generated set: duplicate rate, per-pixel spread, mask plausibility.

They need no Inception network, so they run every few hundred iterations on a CPU and before a
generated set is written: ``duplicate_rate`` (perceptual-hash near-duplicates, the measure
``generate.json`` deduplicates with), ``diversity_ratio`` (mean per-pixel standard deviation over the
generated samples relative to real ones; a collapsed generator gives ~0) and ``mask_sanity`` (fraction
of generated masks whose class areas lie inside the range seen in real masks).
:func:`check_generator_diversity` refuses an exported generator that draws the same pair again and again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from monai_synth.data.deduplication import duplicate_rate, find_near_duplicates

__all__ = [
    "DEDUP_MAX_DISTANCE",
    "DEDUP_HASH_SIZE",
    "GeneratorCollapseError",
    "generated_duplicate_rate",
    "diversity_ratio",
    "class_area_fractions",
    "class_area_range",
    "mask_sanity",
    "generate_pairs",
    "check_generator_diversity",
]

#: the near-duplicate settings of ``generate.json`` (bits of a 16 x 16 perceptual hash)
DEDUP_MAX_DISTANCE = 12
DEDUP_HASH_SIZE = 16


class GeneratorCollapseError(ValueError):
    """A generator draws near-identical samples (mode collapse)."""


def generated_duplicate_rate(
    images: torch.Tensor,
    image_channels: int,
    max_distance: int = DEDUP_MAX_DISTANCE,
    hash_size: int = DEDUP_HASH_SIZE,
) -> float:
    """Fraction of samples that are perceptual-hash near-duplicates of an earlier one.

    Args:
        images: ``(N, C + M, H, W)`` generated pairs (or images) in [-1, 1] (clamped to it first, as the
            generation post-processing does).
        image_channels: ``C``: only the image channels are hashed (all channels when 0, e.g. masks only).
        max_distance: hash bits within which two samples are duplicates (``generate.json``: 12).
        hash_size: perceptual-hash size (``generate.json``: 16).

    Returns:
        duplicates / N in [0, 1] (a generator drawing one image gives ``(N - 1) / N``).
    """
    images = torch.as_tensor(images).float().cpu().clamp(-1, 1)  # StyleGAN2 outputs are not tanh-bounded
    channels = int(image_channels) if 0 < int(image_channels) <= images.shape[1] else None
    flags = find_near_duplicates(
        images.numpy(), max_distance=max_distance, hash_size=hash_size, image_channels=channels
    )
    return duplicate_rate(flags)


def _pixel_spread(images: torch.Tensor) -> float:
    images = torch.as_tensor(images).float()
    if images.shape[0] < 2:
        return 0.0
    return float(images.std(dim=0).mean())


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean per-pixel standard deviation over the generated samples divided by that of the real ones.

    Args:
        fake: ``(N, C, H, W)`` generated images.
        real: ``(M, C, H, W)`` real images (same channels).

    Returns:
        the ratio (about 1 for a generator as varied as the data, about 0 for a collapsed one); ``nan`` when
        the real images do not vary.
    """
    spread = _pixel_spread(real)
    return _pixel_spread(fake) / spread if spread > 0 else float("nan")


def class_area_fractions(labels: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, K - 1)`` fraction of each mask covered by each foreground class.

    Args:
        labels: ``(N, 1, H, W)`` or ``(N, H, W)`` integer label maps.
        num_classes: ``K`` including background.
    """
    labels = np.asarray(torch.as_tensor(labels).cpu()).astype(np.int64)
    labels = labels.reshape(labels.shape[0], -1)
    counts = np.stack([np.bincount(row, minlength=num_classes)[:num_classes] for row in labels])
    return counts[:, 1:] / labels.shape[1]


def class_area_range(labels: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """``(K - 1, 2)`` smallest and largest area fraction of each foreground class over real masks."""
    areas = class_area_fractions(labels, num_classes)
    return np.stack([areas.min(axis=0), areas.max(axis=0)], axis=1)


def mask_sanity(labels: torch.Tensor | np.ndarray, area_range: np.ndarray, num_classes: int) -> float:
    """Fraction of generated masks whose every foreground class area lies inside ``area_range``.

    Args:
        labels: ``(N, 1, H, W)`` generated label maps.
        area_range: :func:`class_area_range` of the real masks.
        num_classes: ``K``.

    Returns:
        the fraction in [0, 1] (1.0 for an empty batch).
    """
    areas = class_area_fractions(labels, num_classes)
    if areas.shape[0] == 0:
        return 1.0
    inside = (areas >= area_range[:, 0] - 1e-9) & (areas <= area_range[:, 1] + 1e-9)
    return float(inside.all(axis=1).mean())


@torch.no_grad()
def generate_pairs(
    network: torch.nn.Module, latents: torch.Tensor, batch_size: int = 32, masks: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``network`` (eval mode, restored afterwards) on ``latents`` in batches; float32 CPU output.

    ``masks``: for a conditional (C-SG) generator, encoded masks ``(N_m, M, H, W)``; latent ``i`` is drawn
    for mask ``i % N_m`` and the output is the pair ``image + mask`` ``(N, C + M, H, W)``.
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters(), torch.empty(0)).device
    step = max(1, int(batch_size))
    try:
        if masks is None:
            outputs = [network(z.to(device)).float().cpu() for z in torch.split(latents, step)]
        else:
            masks = torch.as_tensor(masks).float()
            cycled = masks[torch.arange(len(latents)) % len(masks)]
            outputs = [
                torch.cat([network(z.to(device), mask=m.to(device)).float().cpu(), m], dim=1)
                for z, m in zip(torch.split(latents, step), torch.split(cycled, step))
            ]
    finally:
        network.train(was_training)
    return torch.cat(outputs)


def check_generator_diversity(
    generator_path: str | Path,
    threshold: float = 0.5,
    allow_duplicates: bool = False,
    num_samples: int = 64,
    device: str | torch.device = "cpu",
    max_distance: int = DEDUP_MAX_DISTANCE,
    hash_size: int = DEDUP_HASH_SIZE,
    bundle: str | None = None,
    mask_generator_path: str | Path | None = None,
    masks_from: str | Path | None = None,
) -> float:
    """Refuse to generate from a collapsed generator: its duplicate rate on fixed seeds is above ``threshold``.

    Draws ``num_samples`` pairs from the seeds ``0 .. num_samples - 1`` (the latents ``generate.json``
    would draw for ``seed`` 0) and hashes their image channels as ``generate.json`` does.

    Args:
        generator_path: the ``generator.pt`` written by a ``train.json``.
        threshold: highest accepted duplicate rate.
        allow_duplicates: only warn instead of refusing.
        num_samples: pairs drawn for the check.
        device: device of the check.
        max_distance, hash_size: near-duplicate settings (those of ``generate.json``).
        bundle: refuse a generator of another bundle (see :func:`~monai_synth.utils.export.load_generator`).
        mask_generator_path, masks_from: for a conditional (C-SG) generator, the masks' source: every latent
            is drawn for one mask (the mask generator's for seed 0, which is checked too, or the first user
            mask), so the rate says whether the latent still changes the image.

    Returns:
        the measured duplicate rate (the higher of the two generators' for MC-SG).

    Raises:
        GeneratorCollapseError: the rate is above ``threshold`` and ``allow_duplicates`` is false.
        FileNotFoundError, ValueError: see :func:`monai_synth.utils.export.load_generator`.
    """
    import logging

    from monai_synth.inferers import latent_spec
    from monai_synth.networks.latents import latents_from_seeds
    from monai_synth.utils.export import load_generator

    network, config = load_generator(generator_path, device=device, bundle=bundle)
    dim, distribution = latent_spec(config)
    masks, mask_rate = None, 0.0
    if getattr(network, "cond_channels", 0):
        masks, mask_rate = _one_condition_mask(generator_path, config, mask_generator_path, masks_from, device, {
            "threshold": threshold, "allow_duplicates": allow_duplicates, "num_samples": num_samples,
            "max_distance": max_distance, "hash_size": hash_size, "bundle": bundle})  # fmt: skip
        masks = masks.float()
    pairs = generate_pairs(
        network, latents_from_seeds(range(int(num_samples)), dim, distribution=distribution), masks=masks
    )
    rate = generated_duplicate_rate(pairs, int(config["data"]["image_channels"]), max_distance, hash_size)
    if rate > threshold:
        message = (
            f"{generator_path} has collapsed: {rate:.0%} of {num_samples} pairs drawn from it are near-duplicates "
            f"(threshold {threshold:.0%}), so most generated pairs would be dropped as duplicates. Retrain it "
            "(keep ada and ema on, lower learning_rate, train longer or on more cases; watch `duplicate_rate` in "
            "its summary.json), or pass --allow_duplicates True to generate anyway."
        )
        if not allow_duplicates:
            raise GeneratorCollapseError(message)
        logging.getLogger(__name__).warning("%s Going on because allow_duplicates is true.", message)
    return max(rate, mask_rate)


def _one_condition_mask(generator_path, config, mask_generator_path, masks_from, device, check):
    """``(encoded mask (1, M, S, S), the mask generator's duplicate rate or 0)`` for a conditional generator."""
    from monai_synth.apps.generation.conditional import load_condition_masks
    from monai_synth.inferers import latent_spec
    from monai_synth.networks.latents import latents_from_seeds
    from monai_synth.networks.nets import encode_condition
    from monai_synth.transforms import DecodePairedd
    from monai_synth.utils.export import load_generator

    mask_channels = int(config["generator"]["mask_channels"])
    if mask_generator_path:
        network, mask_config = load_generator(mask_generator_path, device=device)
        if mask_config["generator"].get("mode") != "mask":
            raise ValueError(
                f"{mask_generator_path} is a {mask_config['generator'].get('mode')}-mode generator; mask_generator must "
                "be a mask-mode (M-SG) generator.pt (datasetgan train.json --mode mask)."
            )
        rate = check_generator_diversity(mask_generator_path, device=device, **check)
        dim, distribution = latent_spec(mask_config)
        raw = generate_pairs(network, latents_from_seeds([0], dim, distribution=distribution))
        decode = DecodePairedd("pair", image_channels=1, num_classes=int(config["data"]["num_classes"]), mode="mask")
        labels = torch.as_tensor(decode({"pair": raw})["label"])
        return encode_condition(labels, mask_channels), rate
    if masks_from:
        labels, _ = load_condition_masks(masks_from, config, generator_path)
        return encode_condition(labels[:1], mask_channels), 0.0
    raise ValueError(
        f"{generator_path} is a conditional (C-SG) generator: it draws images for given masks. Give the masks' "
        "source: --mask_generator <M-SG generator.pt> (MC-SG) or --masks_from <datalist or folder>."
    )
