"""Clean-up of generated label maps: largest connected component per class and hole filling.

Neff et al. (2017) post-processed every generated mask with a threshold, a largest-component filter
and hole filling before training a segmentation network on it. The threshold step is the decoding of
the GAN's mask channels and is not repeated here:

- paired GAN output ``(C + M, H, W)``: ``DecodePaired(image_channels, num_classes, threshold=...)`` (binary:
  ``channel > threshold``; multi-class: argmax);
- a lone binary mask channel in [-1, 1]: MONAI's ``AsDiscrete(threshold=t, dtype=torch.int64)`` (``>= t``).

The paper thresholded at pixel value 150 of 0..255, i.e. ``150 / 127.5 - 1 ~ 0.18`` in [-1, 1]; our
default is the neutral 0.0 (the midpoint between the encoded background -1 and foreground +1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type
from scipy import ndimage

from monai_synth.transforms.utils import describe_source, source_name

__all__ = ["PostprocessMask", "mask_change_fraction"]


def mask_change_fraction(before: NdarrayOrTensor, after: NdarrayOrTensor) -> float:
    """Fraction of pixels whose label differs between ``before`` and ``after``.

    Args:
        before: label map, any shape (e.g. ``(1, H, W)``), numpy or torch.
        after: label map of the same shape.

    Returns:
        ``mean(before != after)`` in [0, 1] (0.0 for empty arrays).

    Raises:
        ValueError: the shapes differ.
    """
    a, *_ = convert_data_type(before, np.ndarray)
    b, *_ = convert_data_type(after, np.ndarray)
    if a.shape != b.shape:
        raise ValueError(f"mask_change_fraction: shapes differ, before {a.shape} vs after {b.shape}.")
    if a.size == 0:
        return 0.0
    return float(np.count_nonzero(a != b)) / a.size


class PostprocessMask(Transform):
    """Keep the largest connected component of every foreground class and fill enclosed holes.

    Works on an integer label map ``(1, *spatial)`` with values ``0..K-1`` (0 = background), e.g. the
    label decoded from a paired GAN output by ``DecodePaired``. Steps, per foreground class, in the
    order of Neff et al.:

    1. remove components smaller than ``min_size`` pixels (if ``min_size > 0``);
    2. keep only the largest remaining component, or the ``num_components`` largest (if ``keep_largest``;
       ties go to the component met first in raster order). Removed pixels become background;
    3. fill holes (if ``fill_holes``): a connected region of background that does not touch the image
       border and borders exactly one class takes that class. Background bordered by several classes
       (e.g. the gap between two organs) and other classes nested inside a class are left alone.

    Why not MONAI's ``KeepLargestConnectedComponent`` / ``FillHoles``: the former needs scikit-image,
    which monai_synth does not depend on (``scipy.ndimage.label`` gives the same components), and
    ``FillHoles`` treats everything that is not label ``l`` as a possible hole of ``l``, so in a multi-class
    map it overwrites a class enclosed by another one (e.g. a lesion inside an organ). On binary masks
    the hole filling matches MONAI's ``FillHoles`` with the same ``connectivity``.

    Args:
        num_classes: ``K``, background included (2 for a binary mask).
        keep_largest: keep only the largest component(s) per class.
        num_components: how many largest components ``keep_largest`` keeps: one number for every class
            or one per foreground class (``K - 1`` values). A binary lung mask with both lungs in label 1
            (e.g. chest X-ray) needs 2; separate left/right lung labels need 1.
        fill_holes: fill background enclosed by a single class.
        min_size: drop components with fewer pixels than this (0 keeps all); with ``keep_largest`` a
            class whose largest component is smaller disappears.
        connectivity: maximum number of orthogonal hops for neighbours (1 = 4-connected in 2D,
            ``None`` = full, 8-connected in 2D, as MONAI's default). Used for components and holes alike.

    Returns (from ``__call__``):
        the cleaned label map, same shape, array type and dtype as the input.

    Raises:
        ValueError: bad settings, input not ``(1, *spatial)``, or labels outside ``0..K-1``.

    Example::

        image, label = DecodePaired(image_channels=1, num_classes=2)(fake_pair)
        clean = PostprocessMask(num_classes=2)(label)
        change = mask_change_fraction(label, clean)
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        num_classes: int,
        keep_largest: bool = True,
        fill_holes: bool = True,
        min_size: int = 0,
        connectivity: int | None = None,
        num_components: int | Sequence[int] = 1,
    ) -> None:
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(
                f"PostprocessMask: num_classes must be an integer >= 2 (background included), got {num_classes!r}."
            )
        if isinstance(min_size, bool) or int(min_size) != min_size or min_size < 0:
            raise ValueError(f"PostprocessMask: min_size must be an integer >= 0 (pixels), got {min_size!r}.")
        if connectivity is not None and (int(connectivity) != connectivity or connectivity < 1):
            raise ValueError(f"PostprocessMask: connectivity must be None or an integer >= 1, got {connectivity!r}.")
        self.num_classes = int(num_classes)
        foreground = self.num_classes - 1
        counts = tuple(num_components) if isinstance(num_components, Sequence) else (num_components,) * foreground
        if len(counts) != foreground or any(isinstance(c, bool) or int(c) != c or c < 1 for c in counts):
            raise ValueError(
                f"PostprocessMask: num_components must be an integer >= 1 or one per foreground class "
                f"({self.num_classes - 1} values for num_classes={self.num_classes}), got {num_components!r}."
            )
        self.num_components = tuple(int(c) for c in counts)
        self.keep_largest = bool(keep_largest)
        self.fill_holes = bool(fill_holes)
        self.min_size = int(min_size)
        self.connectivity = connectivity

    def __call__(self, label: NdarrayOrTensor, filename: str | None = None) -> NdarrayOrTensor:
        """Clean ``label`` ``(1, *spatial)``; ``filename`` names the source in errors (else MetaTensor meta)."""
        name = filename or source_name(label)
        labels, *_ = convert_data_type(label, np.ndarray)
        if labels.ndim < 3 or labels.shape[0] != 1:
            raise ValueError(
                f"PostprocessMask expects an integer label map of shape (1, H, W[, D]), got {labels.shape} for "
                f"{describe_source('label', name)}; decode GAN mask channels with DecodePaired first."
            )
        values = np.unique(labels)
        bad = values[(values < 0) | (values >= self.num_classes) | (values != np.round(values))]
        if bad.size:
            raise ValueError(
                f"PostprocessMask: {describe_source('label', name)} has values {bad[:20].tolist()} outside the "
                f"integer labels 0..{self.num_classes - 1} (num_classes={self.num_classes}); check num_classes."
            )
        spatial = labels[0].astype(np.int64)
        structure = ndimage.generate_binary_structure(spatial.ndim, self.connectivity or spatial.ndim)
        if self.keep_largest or self.min_size > 0:
            spatial = self._filter_components(spatial, structure)
        if self.fill_holes:
            spatial = self._fill_enclosed_background(spatial, structure)
        out, *_ = convert_to_dst_type(spatial[None], label)
        return out

    def _filter_components(self, labels: np.ndarray, structure: np.ndarray) -> np.ndarray:
        """Per class: drop components below ``min_size`` and, if asked, all but the largest ones."""
        out = labels.copy()
        for cls in range(1, self.num_classes):
            components, n = ndimage.label(labels == cls, structure=structure)
            if n == 0:
                continue
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            keep = sizes >= max(self.min_size, 1)
            if self.keep_largest:
                # stable sort: among equal sizes the component met first in raster order wins
                largest = np.argsort(-sizes, kind="stable")[: self.num_components[cls - 1]]
                keep[np.setdiff1d(np.arange(n + 1), largest)] = False
            out[(components > 0) & ~keep[components]] = 0
        return out

    def _fill_enclosed_background(self, labels: np.ndarray, structure: np.ndarray) -> np.ndarray:
        """Give every background region that touches exactly one class (and not the border) that class."""
        background = labels == 0
        regions, n = ndimage.label(background, structure=structure)
        if n == 0:
            return labels
        open_region = np.zeros(n + 1, dtype=bool)
        for axis in range(regions.ndim):  # regions on the image border are never holes
            open_region[np.take(regions, 0, axis=axis)] = True
            open_region[np.take(regions, -1, axis=axis)] = True
        neighbour_count = np.zeros(n + 1, dtype=np.int64)
        owner = np.zeros(n + 1, dtype=np.int64)
        for cls in range(1, self.num_classes):
            near = ndimage.binary_dilation(labels == cls, structure=structure) & background
            touched = np.zeros(n + 1, dtype=bool)
            touched[regions[near]] = True
            neighbour_count += touched
            owner[touched] = cls
        fill_value = np.where((neighbour_count == 1) & ~open_region, owner, 0)
        fill_value[0] = 0
        out = labels.copy()
        out[background] = fill_value[regions[background]]
        return out
