"""Spatial transforms: centre crop to a square and resize to the training size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import CenterSpatialCrop, Resize, Transform
from monai.utils import InterpolateMode, TransformBackends, convert_to_dst_type, ensure_tuple

from monai_synth.transforms.utils import describe_source, source_name

__all__ = ["CropResize", "LABEL_SAFE_MODES"]

# interpolation modes that only copy input values, so integer labels stay integer and no new label appears
LABEL_SAFE_MODES = (InterpolateMode.NEAREST.value, InterpolateMode.NEAREST_EXACT.value)


class CropResize(Transform):
    """Centre crop a channel-first image to its largest centred square, then resize it.

    ``(C, H, W) -> (C, S, S)`` (and ``(C, H, W, D) -> (C, S, S, S)``), built on MONAI's
    ``CenterSpatialCrop`` and ``Resize``. MetaTensor inputs keep their meta and get an updated affine.

    Output dtype: with ``mode="nearest"`` / ``"nearest-exact"`` (use it for masks) the input dtype is
    kept, so integer labels stay integer and no new label value can appear; any other mode returns
    float32.

    Args:
        spatial_size: output spatial size ``S``; an int means the same size along every spatial axis.
        mode: interpolation mode of ``torch.nn.functional.interpolate``: ``"area"`` (default, good for
            down-sampling images), ``"bilinear"``, ``"bicubic"``, ``"nearest"`` (masks), ...
        crop_to_square: centre crop to the smallest spatial side first; with ``False`` the whole image is
            resized and its aspect ratio changes.
        align_corners: forwarded to ``Resize`` (only for the linear / cubic modes).
        anti_aliasing: Gaussian smoothing before down-sampling (``Resize(anti_aliasing=...)``); ignored
            for nearest modes.

    Raises:
        ValueError: non-positive ``spatial_size``; image without channel dimension or whose number of
            spatial dims does not match a sequence ``spatial_size``.

    Example::

        crop_resize = CropResize(128)
        crop_resize(np.zeros((1, 512, 600)))  # -> (1, 128, 128)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        spatial_size: int | Sequence[int],
        mode: str = InterpolateMode.AREA.value,
        crop_to_square: bool = True,
        align_corners: bool | None = None,
        anti_aliasing: bool = False,
    ) -> None:
        sizes = ensure_tuple(spatial_size)
        if not sizes or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"CropResize: spatial_size must be positive, got {spatial_size}.")
        self.spatial_size = spatial_size
        self.mode = InterpolateMode(mode).value
        self.crop_to_square = crop_to_square
        self.align_corners = align_corners
        self.anti_aliasing = anti_aliasing and self.mode not in LABEL_SAFE_MODES

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Crop and resize ``img`` ``(C, *spatial)``; returns the input's array type."""
        spatial_dims = img.ndim - 1
        if spatial_dims < 2:
            raise ValueError(
                f"CropResize expects a channel-first image (C, H, W[, D]), got shape {tuple(img.shape)} for "
                f"{describe_source('image', source_name(img))}; add EnsureChannelFirst(d) before it."
            )
        if isinstance(self.spatial_size, int):
            size = (self.spatial_size,) * spatial_dims
        else:
            size = tuple(int(s) for s in self.spatial_size)
            if len(size) != spatial_dims:
                raise ValueError(
                    f"CropResize: spatial_size={tuple(size)} has {len(size)} dims but "
                    f"{describe_source('image', source_name(img))} of shape {tuple(img.shape)} has {spatial_dims}."
                )
        out = img
        if self.crop_to_square:
            side = min(int(s) for s in img.shape[1:])
            out = CenterSpatialCrop(roi_size=(side,) * spatial_dims)(out)
        out = Resize(
            spatial_size=size,
            mode=self.mode,
            align_corners=self.align_corners if self.mode not in LABEL_SAFE_MODES + ("area",) else None,
            anti_aliasing=self.anti_aliasing,
        )(out)
        dtype = img.dtype if self.mode in LABEL_SAFE_MODES else torch.float32
        out, *_ = convert_to_dst_type(out, img, dtype=dtype)
        return out
