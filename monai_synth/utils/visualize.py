"""Pictures of image/mask pairs (sample grids, previews, report figures)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["LABEL_PALETTE", "condition_grid", "label_colours", "pair_grid", "to_uint8"]

#: RGB colour per label value (0 = background is never drawn); cycles past the end.
LABEL_PALETTE = np.array(
    [
        [0, 0, 0],
        [66, 135, 245],
        [60, 200, 90],
        [230, 60, 60],
        [245, 210, 50],
        [60, 220, 230],
        [200, 90, 220],
        [250, 140, 40],
        [150, 150, 150],
    ],
    dtype=np.float32,
)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def to_uint8(x) -> np.ndarray:
    """Intensities in [-1, 1] (array or tensor, any shape) as 8-bit grey levels: ``-1 -> 0``, ``1 -> 255``.

    Values outside [-1, 1] (GAN outputs overshoot) are clipped first, so they never wrap around.
    """
    return np.round((np.clip(_to_numpy(x), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def pair_grid(images, labels, columns: int = 4, alpha: float = 0.45) -> np.ndarray:
    """Tile image/mask pairs as ``[image | image + coloured labels]`` cells.

    Args:
        images: ``(B, C, H, W)`` in [-1, 1]; the first channel is shown in grey.
        labels: ``(B, 1, H, W)`` integer label maps.
        columns: cells per row.
        alpha: overlay opacity in [0, 1].

    Returns:
        ``(rows * H, columns * 2 * W, 3)`` uint8 RGB array (unused cells black).
    """
    images, labels = _to_numpy(images), _to_numpy(labels).astype(np.int64)
    if (
        images.ndim != 4
        or labels.ndim != 4
        or images.shape[0] != labels.shape[0]
        or images.shape[2:] != labels.shape[2:]
    ):
        raise ValueError(
            f"pair_grid expects images (B, C, H, W) and labels (B, 1, H, W), got {images.shape} and {labels.shape}."
        )
    b, _, h, w = images.shape
    columns = max(1, min(columns, b))
    rows = -(-b // columns)
    grid = np.zeros((rows * h, columns * 2 * w, 3), dtype=np.uint8)
    for k in range(b):
        grey = to_uint8(images[k, 0]).astype(np.float32)[..., None].repeat(3, axis=-1)
        label = labels[k, 0]
        colour = LABEL_PALETTE[label % len(LABEL_PALETTE)]
        mixed = np.where(label[..., None] > 0, (1 - alpha) * grey + alpha * colour, grey)
        r, c = divmod(k, columns)
        grid[r * h : (r + 1) * h, c * 2 * w : (c + 1) * 2 * w] = np.round(np.concatenate([grey, mixed], axis=1)).astype(
            np.uint8
        )
    return grid


def label_colours(labels) -> np.ndarray:
    """``(H, W)`` integer labels as an ``(H, W, 3)`` uint8 picture in :data:`LABEL_PALETTE` (background black)."""
    labels = _to_numpy(labels).astype(np.int64)
    return LABEL_PALETTE[labels % len(LABEL_PALETTE)].astype(np.uint8)


def condition_grid(labels, images) -> np.ndarray:
    """One row per conditioning mask: ``[mask in colour | image for latent 1 | ... | image for latent L]``.

    Args:
        labels: ``(N, 1, H, W)`` integer masks the images were drawn for.
        images: ``(N, L, C, H, W)`` in [-1, 1]: ``L`` latents per mask; the first channel is shown in grey.

    Returns:
        ``(N * H, (L + 1) * W, 3)`` uint8 RGB array.
    """
    labels, images = _to_numpy(labels), _to_numpy(images)
    if (
        labels.ndim != 4
        or images.ndim != 5
        or labels.shape[0] != images.shape[0]
        or labels.shape[2:] != images.shape[3:]
    ):
        raise ValueError(
            f"condition_grid expects labels (N, 1, H, W) and images (N, L, C, H, W), got {labels.shape} and "
            f"{images.shape}."
        )
    rows = []
    for label, row in zip(labels, images):
        grey = [to_uint8(image[0])[..., None].repeat(3, axis=-1) for image in row]
        rows.append(np.concatenate([label_colours(label[0]), *grey], axis=1))
    return np.concatenate(rows, axis=0)
