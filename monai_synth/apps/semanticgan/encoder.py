"""SemanticGAN's encoder ``E``: real image -> w+, trained on reconstruction of unlabelled and labelled images.

Unlabelled images: pixel MSE + the discriminator-feature perceptual distance of
:class:`~monai_synth.apps.datasetgan.GANProjector` (``D_r``'s own features, offline, in place of LPIPS).
Labelled pairs: the same, plus cross-entropy and Dice of the mask branch's logits against the mask (Li et
al. 2021, Sec. 3.3). The generator and ``D_r`` stay frozen; ``E`` predicts offsets from the generator's
mean w. ``encoder.pt`` is ``{"state_dict", "config", "generator_sha256", "summary"}``, read with
``weights_only=True`` by :func:`load_encoder`.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from monai_synth.apps.datasetgan.projection import _perceptual, discriminator_features
from monai_synth.networks.latents import sample_latents
from monai_synth.networks.nets import LatentEncoder, SemanticStyleGAN2Generator, StyleGAN2Discriminator
from monai_synth.utils.export import file_sha256, load_checkpoint, load_discriminator, load_generator
from monai_synth.utils.io import torch_save_atomic, write_json_atomic

from .data import SemiSupervisedData

__all__ = ["encoder_losses", "load_encoder", "train_encoder", "train_semantic_encoder"]

logger = logging.getLogger(__name__)


def _check_generator(generator: torch.nn.Module, source: Any = "the generator") -> None:
    if not isinstance(generator, SemanticStyleGAN2Generator):
        raise ValueError(f"{source} is a {type(generator).__name__}; SemanticGAN needs a SemanticStyleGAN2Generator "
                         "(bundles/semanticgan train.json).")  # fmt: skip


def encoder_losses(
    generator: SemanticStyleGAN2Generator,
    encoder: LatentEncoder,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    discriminator: StyleGAN2Discriminator | None = None,
    perceptual_weight: float = 1.0,
    mask_loss: DiceCELoss | None = None,
) -> dict[str, torch.Tensor]:
    """Reconstruction losses of ``E`` on a batch: ``{"pixel", "perceptual", "mask"}`` (scalars, graph kept).

    Args:
        generator: the frozen SemanticGAN generator.
        encoder: ``E`` (w+ output).
        images: ``(B, C, S, S)`` real images in [-1, 1].
        labels: ``(B, 1, S, S)`` integer masks, or ``None`` (unlabelled: no ``"mask"`` term).
        discriminator: ``D_r`` for the perceptual term (``None``: the term is 0).
        perceptual_weight: 0 skips the perceptual term.
        mask_loss: the mask criterion (default: ``DiceCELoss(softmax=True, to_onehot_y=True)``).
    """
    image, logits = generator.synthesize(encoder(images), noise_mode="const")
    out = {"pixel": F.mse_loss(image, images), "perceptual": images.new_zeros(())}
    if discriminator is not None and perceptual_weight > 0:
        with torch.no_grad():
            target = discriminator_features(discriminator, images)
        out["perceptual"] = _perceptual(discriminator_features(discriminator, image), target).mean()
    if labels is not None:
        criterion = mask_loss or DiceCELoss(softmax=True, to_onehot_y=True)
        out["mask"] = criterion(logits, labels.long())
    return out


def _batches(n: int, batch_size: int, rng: torch.Generator) -> torch.Tensor:
    return (
        torch.randperm(n, generator=rng)[:batch_size]
        if batch_size <= n
        else torch.randint(n, (batch_size,), generator=rng)
    )


def train_semantic_encoder(
    generator: SemanticStyleGAN2Generator,
    labelled_images: torch.Tensor,
    labelled_masks: torch.Tensor,
    unlabelled_images: torch.Tensor | None = None,
    discriminator: StyleGAN2Discriminator | None = None,
    steps: int = 500,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    pixel_weight: float = 1.0,
    perceptual_weight: float = 1.0,
    mask_weight: float = 1.0,
    base_channels: int = 32,
    seed: int = 0,
    log_interval: int = 50,
) -> tuple[LatentEncoder, list[dict[str, float]]]:
    """Train ``E`` (image -> w+) for ``steps`` Adam steps; each step one unlabelled and one labelled batch.

    Args:
        generator: the trained SemanticGAN generator (frozen here; its mean w is ``E``'s offset).
        labelled_images, labelled_masks: ``(N, C, S, S)`` in [-1, 1] and ``(N, 1, S, S)`` labels.
        unlabelled_images: ``(U, C, S, S)``; ``None`` or empty: the labelled images play that part too.
        discriminator: ``D_r`` for the perceptual term.
        steps, batch_size, learning_rate: optimisation.
        pixel_weight, perceptual_weight, mask_weight: weights of the MSE, the perceptual distance and
            the CE + Dice mask term.
        base_channels: ``E``'s first-stage channels.
        seed: seed of ``E``'s initialisation and of the batch draws.
        log_interval: log and record the losses every this many steps.

    Returns:
        ``(E in eval mode, history)``: per logged step ``{"step", "image_loss", "mask_loss"}``.

    Raises:
        ValueError: no labelled images, or images that do not fit the generator.
    """
    _check_generator(generator)
    if labelled_images.shape[0] == 0:
        raise ValueError("train_semantic_encoder: no labelled images.")
    device = generator.const.device
    c, s = generator.image_channels, generator.image_size
    for name, x in (("labelled", labelled_images), ("unlabelled", unlabelled_images)):
        if x is not None and x.numel() and (x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s)):
            raise ValueError(f"{name} images are {tuple(x.shape)}; the generator draws (B, {c}, {s}, {s}).")
    if unlabelled_images is None or unlabelled_images.shape[0] == 0:
        unlabelled_images = labelled_images
    generator.eval().requires_grad_(False)
    if discriminator is not None:
        discriminator.eval().requires_grad_(False)
    torch.manual_seed(seed)
    encoder = LatentEncoder(c, s, generator.w_dim, base_channels=base_channels, num_ws=generator.num_ws).to(device)
    with torch.no_grad():
        z = sample_latents(4096, generator.z_dim, generator=torch.Generator().manual_seed(seed), distribution="normal")
        encoder.w_mean.copy_(generator.mapping(z.to(device), update_w_avg=False).mean(dim=0))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=learning_rate)
    mask_loss = DiceCELoss(softmax=True, to_onehot_y=True)
    rng = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    encoder.train()
    for step in range(1, steps + 1):
        u = unlabelled_images[_batches(unlabelled_images.shape[0], batch_size, rng)].to(device)
        index = _batches(labelled_images.shape[0], batch_size, rng)
        x, y = labelled_images[index].to(device), labelled_masks[index].to(device)
        lu = encoder_losses(generator, encoder, u, None, discriminator, perceptual_weight, mask_loss)
        ll = encoder_losses(generator, encoder, x, y, discriminator, perceptual_weight, mask_loss)
        image_loss = sum(pixel_weight * d["pixel"] + perceptual_weight * d["perceptual"] for d in (lu, ll))
        loss = image_loss + mask_weight * ll["mask"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"encoder loss is {loss.item()} at step {step}; lower learning_rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_interval == 0 or step == steps:
            record = {
                "step": step,
                "image_loss": round(image_loss.item() / 2, 6),
                "mask_loss": round(ll["mask"].item(), 6),
            }
            history.append(record)
            logger.info("encoder step %d/%d: image loss %.4f, mask loss %.4f", step, steps, record["image_loss"],
                        record["mask_loss"])  # fmt: skip
    return encoder.eval(), history


def train_encoder(
    generator_path: str | Path,
    output_path: str | Path,
    dataset_dir: str | Path | None = None,
    unlabelled_dir: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    steps: int = 500,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    pixel_weight: float = 1.0,
    perceptual_weight: float = 1.0,
    mask_weight: float = 1.0,
    max_unlabelled: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``train_encoder.json``: train ``E`` on the generator's training data and write ``encoder.pt``.

    The data are read like the generator's training data (its image size and intensity rule). ``D_r``
    for the perceptual term comes from the training checkpoint; without one the loss is pixel-only
    (warned). Writes ``encoder.pt`` and ``<output stem>_summary.json`` (losses, timings, peak memory).
    """
    device = torch.device(device)
    generator, config = load_generator(generator_path, device, bundle="semanticgan")
    _check_generator(generator, generator_path)
    options = dict(data_options or {})
    options["intensity"] = config.get("data", {}).get("intensity", "auto")
    data = SemiSupervisedData(dataset_dir, unlabelled_dir, int(config["generator"]["image_size"]),
                              num_classes=generator.num_classes, max_unlabelled=max_unlabelled,
                              data_options=options)  # fmt: skip
    if data.image_channels != generator.image_channels:
        raise ValueError(f"{dataset_dir} has {data.image_channels}-channel images; {generator_path} draws "
                         f"{generator.image_channels}-channel images.")  # fmt: skip
    discriminator = None
    if perceptual_weight > 0:
        if checkpoint_path is not None and Path(checkpoint_path).is_file():
            discriminator = load_discriminator(checkpoint_path, device)
        else:
            logger.warning("No checkpoint at %s: the encoder trains with the pixel loss only.", checkpoint_path)
    images = torch.stack([torch.as_tensor(item["image"]) for item in data.labelled.data]).float()
    masks = torch.stack([torch.as_tensor(item["label"]) for item in data.labelled.data]).long()
    unlabelled = None
    if data.unlabelled is not None:
        unlabelled = torch.stack([torch.as_tensor(item["image"]) for item in data.unlabelled.data]).float()
    started = time.perf_counter()
    encoder, history = train_semantic_encoder(
        generator, images, masks, unlabelled, discriminator, steps, batch_size, learning_rate, pixel_weight,
        perceptual_weight if discriminator is not None else 0.0, mask_weight, seed=seed,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    summary = {
        "steps": steps,
        "num_labelled": len(data.labelled),
        "num_unlabelled": data.summary["num_unlabelled"],
        "perceptual": discriminator is not None,
        "history": history,
        "training_seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    torch_save_atomic(
        {"state_dict": encoder.state_dict(), "config": encoder.config,
         "generator_sha256": file_sha256(generator_path), "summary": summary},
        output_path,
    )  # fmt: skip
    output_path = Path(output_path)
    write_json_atomic(output_path.with_name(output_path.stem + "_summary.json"), summary)
    return summary


def load_encoder(path: str | Path, generator_path: str | Path | None = None, device: str | torch.device = "cpu"):
    """The :class:`LatentEncoder` of an ``encoder.pt`` (eval mode, frozen).

    Raises:
        ValueError: not an encoder file, or trained for another generator than ``generator_path`` (sha256).
    """
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise ValueError(f"{path} is not a SemanticGAN encoder.pt (train_encoder.json writes one).")
    if generator_path is not None and checkpoint.get("generator_sha256") != file_sha256(generator_path):
        raise ValueError(f"{path} was trained for another generator than {generator_path}; retrain it "
                         "(train_encoder.json) after training the GAN.")  # fmt: skip
    encoder = LatentEncoder(**checkpoint["config"])
    encoder.load_state_dict(checkpoint["state_dict"])
    return encoder.to(device).eval().requires_grad_(False)
