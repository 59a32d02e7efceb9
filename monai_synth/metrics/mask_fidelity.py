"""Mask fidelity of mask-conditioned generation: does a generated image show the mask it was drawn for?

A segmentation network trained on real pairs segments each generated image; the Dice between its
prediction and the conditioning mask is the pair's fidelity (1: the image shows exactly that anatomy,
about 0: it shows none of it). The network is either a ``synthetic_evaluation`` study model
(:func:`monai_synth.evaluation.inference.load_study_model`) or a small MONAI U-Net trained here on the
real training pairs (:func:`train_fidelity_segmenter`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai_synth.utils.export import file_sha256

__all__ = ["MaskFidelity", "mask_dice", "train_fidelity_segmenter", "fidelity_scorer", "fidelity_summary"]

logger = logging.getLogger(__name__)

#: phantom slices the U-Net learns from with ``data="phantom"`` (demonstrations and tests)
PHANTOM_FIDELITY_SAMPLES = 64


def mask_dice(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-pair Dice ``(B,)`` between two integer label batches ``(B, 1, H, W)``, averaged over the foreground
    classes present in either map (a pair where both are all background scores 1)."""
    if prediction.shape != target.shape:
        raise ValueError(f"mask_dice: shapes differ, {tuple(prediction.shape)} and {tuple(target.shape)}.")
    p = F.one_hot(prediction[:, 0].long(), num_classes)[..., 1:].flatten(1, 2).float()  # (B, HW, K - 1)
    t = F.one_hot(target[:, 0].long(), num_classes)[..., 1:].flatten(1, 2).float()
    inter, total = (p * t).sum(1), p.sum(1) + t.sum(1)
    present = total > 0
    dice = torch.where(present, 2 * inter / total.clamp_min(1), torch.zeros_like(total))
    counted = present.sum(1)
    return torch.where(counted > 0, dice.sum(1) / counted.clamp_min(1), torch.ones(len(dice)))


class MaskFidelity:
    """Score generated images against their conditioning masks with a segmentation network.

    Args:
        segmenter: ``(B, C, H, W)`` images in [-1, 1] -> ``(B, K, H, W)`` logits.
        num_classes: ``K``, background included.
        device: device of the forward passes.
        source: what the segmenter is (for manifests): ``{"kind", ...}``.
    """

    def __init__(
        self,
        segmenter: torch.nn.Module,
        num_classes: int,
        device: str | torch.device = "cpu",
        source: dict[str, Any] | None = None,
    ) -> None:
        self.segmenter = segmenter.to(device).eval()
        self.num_classes = int(num_classes)
        self.device = torch.device(device)
        self.source = dict(source or {})

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        """Dice per pair of ``images`` ``(B, C, H, W)`` and their masks ``(B, 1, H, W)``."""
        logits = self.segmenter(images.float().to(self.device))
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"MaskFidelity: the segmentation model predicts {logits.shape[1]} classes but the masks have "
                f"{self.num_classes}; use a model trained on the generator's classes."
            )
        prediction = logits.argmax(1, keepdim=True).cpu()
        return [round(float(d), 6) for d in mask_dice(prediction, labels.cpu(), self.num_classes)]


def train_fidelity_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int = 30,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
    channels: Sequence[int] = (16, 32, 64),
) -> torch.nn.Module:
    """A small MONAI 2D U-Net trained on real pairs (Dice + cross-entropy, Adam 1e-3, flips), in eval mode.

    Args:
        images: ``(N, C, H, W)`` real images in [-1, 1].
        labels: ``(N, 1, H, W)`` their integer masks.
        num_classes: ``K``.
        epochs: passes over the pairs.
        batch_size: pairs per step.
        seed: seed of the initialisation and of the order.
        device: training device.
        channels: U-Net features per level (each level after the first halves the size).
    """
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        net = UNet(2, images.shape[1], num_classes, channels=tuple(channels), strides=(2,) * (len(channels) - 1),
                   num_res_units=1)  # fmt: skip
    net = net.to(device).train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    images, labels = images.float(), labels.long()
    for _ in range(int(epochs)):
        order = torch.randperm(len(images), generator=generator)
        for batch in torch.split(order, max(1, int(batch_size))):
            x, y = images[batch], labels[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = torch.where(flip[:, None, None, None], y.flip(-1), y)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
    return net.eval()


def fidelity_scorer(
    num_classes: int,
    image_size: int,
    model_path: str | Path | None = None,
    data: Any = None,
    epochs: int = 30,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> MaskFidelity | None:
    """The mask-fidelity scorer of a generation run, or ``None`` when neither a model nor data is given.

    Args:
        num_classes: the generator's ``K``.
        image_size: the generator's side.
        model_path: a study's saved ``model.pt`` (``synthetic_evaluation``), used as is.
        data: real training pairs to train a small U-Net on: a :class:`~monai_synth.data.PairedSliceDataset`
            (items with ``image`` / ``label``) or a dataset folder / datalist it can read (``"phantom"``: the
            built-in phantom of ``num_classes``, :data:`PHANTOM_FIDELITY_SAMPLES` slices).
        epochs: U-Net training passes.
        seed: seed of the U-Net.
        device: device.

    Raises:
        ValueError: both or a model of another class count / size (naming the file).
    """
    if model_path is not None and data is not None:
        raise ValueError("Give the mask-fidelity model (fidelity_model) or real data (fidelity_data), not both.")
    if model_path is not None:
        from monai_synth.evaluation.inference import load_study_model

        network, config = load_study_model(model_path, device)
        if int(config["num_classes"]) != num_classes or int(config["image_size"]) != image_size:
            raise ValueError(
                f"{model_path} segments {config['num_classes']} classes at {config['image_size']} px but the generator "
                f"draws {num_classes} classes at {image_size} px; give a study model of the same data and size."
            )
        source = {"kind": "study_model", "path": str(model_path), "sha256": file_sha256(model_path)}
        return MaskFidelity(network, num_classes, device, source)
    if data is None:
        return None
    if isinstance(data, (str, Path)):
        from monai_synth.data import PairedSliceDataset

        phantom = str(data) == "phantom"
        data = PairedSliceDataset(
            None if phantom else data,
            image_size=int(image_size),
            num_classes=num_classes,
            phantom_binary=phantom and num_classes == 2,
            phantom_samples=PHANTOM_FIDELITY_SAMPLES,
            seed=seed,
        )
        name = "phantom" if phantom else str(data.summary.get("source", ""))
    else:
        name = type(data).__name__
    images = torch.stack([torch.as_tensor(item["image"]).as_subclass(torch.Tensor).float() for item in data])
    labels = torch.stack([torch.as_tensor(item["label"]).as_subclass(torch.Tensor).long() for item in data])
    if images.shape[-1] != image_size or int(labels.max()) >= num_classes:
        raise ValueError(
            f"The mask-fidelity data ({name}) holds {images.shape[-1]} px images with labels up to {int(labels.max())}, "
            f"but the generator draws {num_classes} classes at {image_size} px."
        )
    network = train_fidelity_segmenter(images, labels, num_classes, epochs=epochs, seed=seed, device=device)
    source = {"kind": "unet_trained_on_real", "data": name, "num_pairs": len(images), "epochs": int(epochs)}
    logger.info("Mask fidelity: trained a small U-Net on %d real pairs (%d epochs).", len(images), epochs)
    return MaskFidelity(network, num_classes, device, source)


def fidelity_summary(values: Sequence[float], threshold: float | None = None) -> dict[str, Any]:
    """``{"mean", "median", "min", "max", "num_pairs", "num_below"}`` of per-pair fidelities."""
    if not len(values):
        return {"num_pairs": 0}
    v = np.asarray(values, dtype=np.float64)
    out = {
        "num_pairs": int(v.size),
        "mean": round(float(v.mean()), 6),
        "median": round(float(np.median(v)), 6),
        "min": round(float(v.min()), 6),
        "max": round(float(v.max()), 6),
    }
    if threshold is not None:
        out["num_below"] = int((v < threshold).sum())
    return out
