"""Checks that an image and its mask belong together before any paired transform uses them."""

from __future__ import annotations

from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends

from monai_synth.transforms.utils import describe_source, source_name

__all__ = ["EnsurePairedShape"]


class EnsurePairedShape(Transform):
    """Raise a clear error when an image and its label do not pair up; return both unchanged otherwise.

    Checks (on channel-first arrays, image ``(C, H, W)``, label ``(L, H, W)``, or batched
    ``(B, C, H, W)`` / ``(B, L, H, W)``):

    - image and label have the same spatial shape;
    - the image has ``image_channels`` channels and the label ``label_channels`` channels, when set.

    Args:
        image_channels: expected number of image channels ``C``, or ``None`` to accept any.
        label_channels: expected number of label channels (1 after ``MapMaskValues``), or ``None``.
        spatial_dims: number of spatial dims; the channel axis is the one just before them.
            ``None`` means channel-first unbatched (channel axis 0).

    Raises:
        ValueError: naming both files (from MetaTensor meta or the ``*_name`` arguments), both shapes and
            the setting involved.

    Example::

        image, label = EnsurePairedShape(image_channels=1)(image, label)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, image_channels: int | None = None, label_channels: int | None = None, spatial_dims: int | None = None
    ) -> None:
        for setting, value in (("image_channels", image_channels), ("label_channels", label_channels)):
            if value is not None and int(value) < 1:
                raise ValueError(f"EnsurePairedShape: {setting} must be >= 1 or None, got {value}.")
        self.image_channels = image_channels
        self.label_channels = label_channels
        self.spatial_dims = spatial_dims

    def __call__(
        self,
        image: NdarrayOrTensor,
        label: NdarrayOrTensor,
        image_name: str | None = None,
        label_name: str | None = None,
    ) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        """Check the pair; ``image_name`` / ``label_name`` override the file names found in meta."""
        image_desc = describe_source("image", image_name or source_name(image))
        label_desc = describe_source("label", label_name or source_name(label))
        channel_axis = 0 if self.spatial_dims is None else image.ndim - self.spatial_dims - 1
        if image.ndim != label.ndim or image.ndim < 2 or channel_axis < 0:
            raise ValueError(
                f"{image_desc} has shape {tuple(image.shape)} and {label_desc} has shape {tuple(label.shape)}: "
                "both must be channel-first with the same number of dims; add EnsureChannelFirst(d) before this."
            )
        image_spatial = tuple(image.shape[channel_axis + 1 :])
        label_spatial = tuple(label.shape[channel_axis + 1 :])
        if image_spatial != label_spatial or tuple(image.shape[:channel_axis]) != tuple(label.shape[:channel_axis]):
            raise ValueError(
                f"Image and label shapes differ: {image_desc} has shape {tuple(image.shape)} (spatial "
                f"{image_spatial}) but {label_desc} has shape {tuple(label.shape)} (spatial {label_spatial}). "
                "Check that the files pair up, or resample the label onto the image grid."
            )
        if self.image_channels is not None and image.shape[channel_axis] != self.image_channels:
            raise ValueError(
                f"{image_desc} has {image.shape[channel_axis]} channels (shape {tuple(image.shape)}) but "
                f"image_channels={self.image_channels}; convert the image or set image_channels="
                f"{image.shape[channel_axis]}."
            )
        if self.label_channels is not None and label.shape[channel_axis] != self.label_channels:
            raise ValueError(
                f"{label_desc} has {label.shape[channel_axis]} channels (shape {tuple(label.shape)}) but "
                f"label_channels={self.label_channels}; map the mask to one label channel with MapMaskValues."
            )
        return image, label
