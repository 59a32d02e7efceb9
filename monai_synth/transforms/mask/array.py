"""Mask transforms: raw masks to integer labels, and the paired image + mask encoding of docs/DESIGN.md."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from monai.config import NdarrayOrTensor
from monai.networks.utils import one_hot
from monai.transforms import AsDiscrete, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_synth.transforms.utility.array import EnsurePairedShape
from monai_synth.transforms.utils import describe_source, source_name

__all__ = ["mask_channels", "MapMaskValues", "OneHotMask", "EncodePaired", "DecodePaired"]

_MAX_LISTED_VALUES = 20


def _format_values(values: torch.Tensor) -> str:
    """``"[3, 7.5, 128]"`` for a 1-D tensor of distinct values (long lists are cut with a count)."""
    items = [int(v) if float(v).is_integer() else round(float(v), 6) for v in values.tolist()]
    text = ", ".join(str(v) for v in items[:_MAX_LISTED_VALUES])
    if len(items) > _MAX_LISTED_VALUES:
        text += f", ... ({len(items)} distinct values)"
    return f"[{text}]"


def _check_num_classes(num_classes: int, owner: str) -> int:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"{owner}: num_classes must be an integer >= 2 (background included), got {num_classes}.")
    return int(num_classes)


def mask_channels(num_classes: int) -> int:
    """Number of mask channels ``M`` in the paired encoding: 1 for binary (``K == 2``), else ``K``.

    Raises:
        ValueError: ``num_classes < 2``.
    """
    k = _check_num_classes(num_classes, "mask_channels")
    return 1 if k == 2 else k


def _check_labels(labels: torch.Tensor, num_classes: int, owner: str, name: str | None) -> None:
    """Raise unless every value of ``labels`` is an integer in ``0..num_classes-1``."""
    values = torch.unique(labels)
    bad = (values < 0) | (values >= num_classes)
    if values.dtype.is_floating_point:
        bad |= ~torch.isfinite(values) | (values != torch.round(values))
    bad = values[bad]
    if bad.numel():
        raise ValueError(
            f"{owner}: {describe_source('label', name)} has values {_format_values(bad)} outside the integer labels "
            f"0..{num_classes - 1} (num_classes={num_classes}); map the raw mask with MapMaskValues first or fix "
            "num_classes."
        )


class MapMaskValues(Transform):
    """Turn a raw mask into integer labels ``0..K-1`` of shape ``(1, H, W)``, dtype int64.

    Exactly one rule applies:

    - ``threshold``: ``mask > threshold -> 1`` else 0, for anti-aliased binary masks (e.g. ``127`` for the
      0..255 Shenzhen lung masks).
    - ``mapping``: explicit ``{raw value: label}``, e.g. ``{0: 0, 255: 1}`` or ``{0: 0, 1: 1, 2: 2}``; raw values
      are matched with a relative/absolute tolerance of 1e-6.
    - neither: values are kept but must already be integers in ``0..num_classes-1`` (``>= 0`` when
      ``num_classes`` is ``None``).

    Values no rule covers raise a ``ValueError`` listing them and the file (``strict=True``); with
    ``strict=False`` they become background (0) and a warning lists them. Nothing is dropped silently.

    Multi-channel masks (e.g. RGB(A) PNG masks) are reduced to one channel when all channels are identical;
    a constant alpha channel (last of 2 or 4 channels) is ignored. Differing channels raise.

    The output is int64 (what MONAI losses, metrics and ``one_hot`` expect) in the input's array type;
    MetaTensor meta is kept.

    Args:
        mapping: raw value -> label. Labels must be integers >= 0 (and < ``num_classes`` when given).
        threshold: binarisation threshold; excludes ``mapping``; implies ``num_classes == 2``.
        num_classes: number of classes ``K`` including background, to validate the labels; optional.
        strict: raise on values not covered (default) instead of mapping them to background with a warning.

    Raises:
        ValueError: both ``mapping`` and ``threshold`` given, bad mapping labels (at construction); mask
            without channel dimension, differing channels, NaN/inf values, or (strict) uncovered values
            (at call time, naming the file).

    Example::

        MapMaskValues(threshold=127)(png_mask)  # (1, H, W) 0..255 -> (1, H, W) {0, 1}
        MapMaskValues(mapping={0: 0, 500: 1, 600: 2})(ct_mask)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        mapping: Mapping[int | float, int] | None = None,
        threshold: float | None = None,
        num_classes: int | None = None,
        strict: bool = True,
    ) -> None:
        if mapping is not None and threshold is not None:
            raise ValueError("MapMaskValues: give either mapping= or threshold=, not both.")
        if num_classes is not None:
            num_classes = _check_num_classes(num_classes, "MapMaskValues")
        if threshold is not None and num_classes not in (None, 2):
            raise ValueError(f"MapMaskValues: threshold= makes binary labels {{0, 1}} but num_classes={num_classes}.")
        if mapping is not None:
            if len(mapping) == 0:
                raise ValueError("MapMaskValues: mapping is empty; give {raw value: label, ...}.")
            for raw, lab in mapping.items():
                if int(lab) != lab or lab < 0 or (num_classes is not None and lab >= num_classes):
                    upper = "" if num_classes is None else f" < num_classes={num_classes}"
                    raise ValueError(
                        f"MapMaskValues: mapping {raw!r}: {lab!r} must map to an integer label >= 0{upper}."
                    )
            self._raw = torch.tensor([float(k) for k in mapping], dtype=torch.float64)
            self._lab = torch.tensor([int(v) for v in mapping.values()], dtype=torch.int64)
        self.mapping = None if mapping is None else dict(mapping)
        self.threshold = threshold
        self.num_classes = num_classes
        self.strict = strict

    def __call__(self, mask: NdarrayOrTensor, filename: str | None = None) -> NdarrayOrTensor:
        """Map ``mask`` ``(C, *spatial)`` to labels ``(1, *spatial)``; ``filename`` overrides meta for errors."""
        name = filename or source_name(mask)
        t = convert_to_tensor(mask, track_meta=False)
        if t.ndim < 3:
            raise ValueError(
                f"MapMaskValues expects a channel-first mask (C, H, W[, D]), got shape {tuple(t.shape)} for "
                f"{describe_source('label', name)}; add EnsureChannelFirst(d) before it."
            )
        t = self._single_channel(t, name)
        if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            raise ValueError(f"MapMaskValues: {describe_source('label', name)} contains NaN or infinite values.")
        if self.threshold is not None:
            labels = (t > self.threshold).to(torch.int64)
        else:
            values, inverse = torch.unique(t, return_inverse=True)
            lut, covered = self._lookup(values.to(torch.float64))
            uncovered = values[~covered]
            if uncovered.numel():
                self._report(uncovered, name)
                lut[~covered] = 0
            labels = lut[inverse]
        out, *_ = convert_to_dst_type(labels, mask, dtype=torch.int64)
        return out

    def _lookup(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Label for each distinct raw value and whether a rule covers it."""
        if self.mapping is not None:
            close = torch.isclose(values[:, None], self._raw[None, :], rtol=1e-6, atol=1e-6)
            covered = close.any(dim=1)
            lut = self._lab[close.float().argmax(dim=1)]
            return lut.clone(), covered
        covered = (values == torch.round(values)) & (values >= 0)
        if self.num_classes is not None:
            covered &= values < self.num_classes
        return torch.round(values).to(torch.int64), covered

    def _report(self, uncovered: torch.Tensor, name: str | None) -> None:
        if self.mapping is not None:
            rule = f"that are not in mapping keys {_format_values(self._raw)}"
            hint = "add them to mapping, or use threshold= for anti-aliased binary masks"
        else:
            k = self.num_classes
            allowed = ">= 0" if k is None else f"in 0..{k - 1} (num_classes={k})"
            rule = f"that are not integer labels {allowed}"
            hint = "give mapping= or threshold= (e.g. threshold=127 for anti-aliased 0..255 masks)"
        message = f"MapMaskValues: {describe_source('label', name)} has values {_format_values(uncovered)} {rule}"
        if self.strict:
            raise ValueError(f"{message}; {hint}, or set strict=False to map them to background.")
        warnings.warn(f"{message}; they were set to background (0) because strict=False.", stacklevel=3)

    @staticmethod
    def _single_channel(t: torch.Tensor, name: str | None) -> torch.Tensor:
        if t.shape[0] == 1:
            return t
        if bool((t == t[:1]).all()):
            return t[:1]
        # a constant alpha channel (grey + alpha or RGB + alpha PNG) carries no label information
        if t.shape[0] in (2, 4) and bool((t[-1] == t[-1].flatten()[0]).all()):
            rest = t[:-1]
            if bool((rest == rest[:1]).all()):
                return rest[:1]
        raise ValueError(
            f"MapMaskValues: {describe_source('label', name)} has {t.shape[0]} channels with different values "
            f"(shape {tuple(t.shape)}); colour-coded masks are not supported, convert the mask to a single-channel "
            "label image first."
        )


class OneHotMask(Transform):
    """One-hot encode integer labels ``(1, H, W)`` in ``0..K-1`` to ``(K, H, W)`` float32 {0, 1}.

    Wraps MONAI ``AsDiscrete(to_onehot=K)`` after checking the label values (MONAI would fail with an
    index error or, on some devices, silently produce garbage for out-of-range labels).

    Args:
        num_classes: ``K``, background included; >= 2.

    Raises:
        ValueError: labels that are not integers in ``0..K-1`` (naming the file from meta).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_num_classes(num_classes, "OneHotMask")
        self._onehot = AsDiscrete(to_onehot=self.num_classes, dtype=torch.float32)

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        """One-hot ``label`` ``(1, *spatial)`` -> ``(K, *spatial)``."""
        t = convert_to_tensor(label, track_meta=False)
        if t.ndim < 2 or t.shape[0] != 1:
            raise ValueError(
                f"OneHotMask expects labels of shape (1, H, W[, D]), got {tuple(t.shape)} for "
                f"{describe_source('label', source_name(label))}."
            )
        _check_labels(t, self.num_classes, "OneHotMask", source_name(label))
        out, *_ = convert_to_dst_type(self._onehot(t), label, dtype=torch.float32)
        return out


def _channel_axis(x: NdarrayOrTensor, spatial_dims: int, owner: str, what: str) -> int:
    """0 for ``(C, *spatial)``, 1 for batched ``(B, C, *spatial)``."""
    if x.ndim not in (spatial_dims + 1, spatial_dims + 2):
        raise ValueError(
            f"{owner}: {describe_source(what, source_name(x))} has shape {tuple(x.shape)}; expected "
            f"(C, {spatial_dims} spatial dims) or batched (B, C, {spatial_dims} spatial dims) for "
            f"spatial_dims={spatial_dims}."
        )
    return x.ndim - spatial_dims - 1


class EncodePaired(Transform):
    """Stack an image in [-1, 1] and its integer label into one ``(C + M, H, W)`` tensor in [-1, 1].

    The encoding of docs/DESIGN.md that paired GANs see:

    - ``K == 2``: ``M = 1`` mask channel, ``+1`` foreground, ``-1`` background.
    - ``K > 2``: ``M = K`` one-hot channels (background included) scaled to ``{-1, +1}``.

    Batched input ``(B, C, H, W)`` + ``(B, 1, H, W)`` -> ``(B, C + M, H, W)`` works too.
    Output float32 in the image's array type (MetaTensor meta of the image kept).

    Args:
        num_classes: ``K``, background included; >= 2.
        spatial_dims: number of spatial dims (2 for slices); tells ``(C, H, W)`` from batched input.
        tolerance: how far outside [-1, 1] image values may be (rounding); they are clamped to [-1, 1].

    Raises:
        ValueError: image and label shapes differ (naming both shapes and files), label values not integers
            in ``0..K-1``, label with more than one channel, image outside ``[-1 - tolerance, 1 + tolerance]``
            or not finite (hint: apply ``NormalizeToRange`` first).

    Example::

        pair = EncodePaired(num_classes=2)(image, label)  # (1, H, W) + (1, H, W) -> (2, H, W)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_classes: int, spatial_dims: int = 2, tolerance: float = 1e-3) -> None:
        self.num_classes = _check_num_classes(num_classes, "EncodePaired")
        self.mask_channels = mask_channels(self.num_classes)
        self.spatial_dims = spatial_dims
        self.tolerance = tolerance
        self._pair_check = EnsurePairedShape(label_channels=1, spatial_dims=spatial_dims)

    def __call__(
        self,
        image: NdarrayOrTensor,
        label: NdarrayOrTensor,
        image_name: str | None = None,
        label_name: str | None = None,
    ) -> NdarrayOrTensor:
        """Encode ``image`` ``([B,] C, *spatial)`` + ``label`` ``([B,] 1, *spatial)`` -> ``([B,] C + M, *spatial)``."""
        image_name = image_name or source_name(image)
        label_name = label_name or source_name(label)
        axis = _channel_axis(image, self.spatial_dims, "EncodePaired", "image")
        self._pair_check(image, label, image_name=image_name, label_name=label_name)
        img = convert_to_tensor(image, dtype=torch.float32, track_meta=False)
        lab = convert_to_tensor(label, track_meta=False)
        if not bool(torch.isfinite(img).all()):
            raise ValueError(f"EncodePaired: {describe_source('image', image_name)} contains NaN or infinite values.")
        lo, hi = float(img.min()), float(img.max())
        if lo < -1.0 - self.tolerance or hi > 1.0 + self.tolerance:
            raise ValueError(
                f"EncodePaired: {describe_source('image', image_name)} has values in [{lo:g}, {hi:g}], outside "
                f"[-1, 1] (tolerance {self.tolerance:g}); normalise it first, e.g. with NormalizeToRange(d)."
            )
        _check_labels(lab, self.num_classes, "EncodePaired", label_name)
        lab = lab.to(torch.int64)
        if self.num_classes == 2:
            mask = lab.to(torch.float32) * 2.0 - 1.0
        else:
            mask = one_hot(lab, self.num_classes, dim=axis, dtype=torch.float32) * 2.0 - 1.0
        out = torch.cat([img.clamp(-1.0, 1.0), mask], dim=axis)
        out, *_ = convert_to_dst_type(out, image, dtype=torch.float32)
        return out


class DecodePaired(Transform):
    """Split a paired tensor ``(C + M, H, W)`` (e.g. a GAN output) into image and integer label.

    Inverse of :class:`EncodePaired`, robust to outputs that are not clean: mask channels may hold any
    real value. Binary (``K == 2``): ``label = channel > threshold``; multi-class: ``argmax`` over the ``K``
    mask channels, ties go to the lowest class index (``torch.argmax`` returns the first maximum).
    The image channels are clamped to [-1, 1].

    Returns ``(image (C, H, W) float32 in [-1, 1], label (1, H, W) int64 in 0..K-1)``, or batched
    ``(B, C, H, W), (B, 1, H, W)`` for input ``(B, C + M, H, W)``, in the input's array type.

    Args:
        image_channels: ``C``, the number of image channels.
        num_classes: ``K``, background included; >= 2.
        threshold: binary decision threshold on the mask channel (mask values live in [-1, 1]; default 0).
        spatial_dims: number of spatial dims (2 for slices); tells ``(C, H, W)`` from batched input.

    Raises:
        ValueError: wrong number of channels (names ``image_channels`` and ``num_classes``) or NaN values.

    Example::

        image, label = DecodePaired(image_channels=1, num_classes=2)(generator(z))
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, image_channels: int, num_classes: int, threshold: float = 0.0, spatial_dims: int = 2) -> None:
        if int(image_channels) != image_channels or image_channels < 1:
            raise ValueError(f"DecodePaired: image_channels must be an integer >= 1, got {image_channels}.")
        self.image_channels = int(image_channels)
        self.num_classes = _check_num_classes(num_classes, "DecodePaired")
        self.mask_channels = mask_channels(self.num_classes)
        self.threshold = threshold
        self.spatial_dims = spatial_dims

    def __call__(self, x: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        """Decode ``x`` ``([B,] C + M, *spatial)`` -> ``(image ([B,] C, *spatial), label ([B,] 1, *spatial))``."""
        axis = _channel_axis(x, self.spatial_dims, "DecodePaired", "paired tensor")
        expected = self.image_channels + self.mask_channels
        if x.shape[axis] != expected:
            raise ValueError(
                f"DecodePaired: {describe_source('paired tensor', source_name(x))} of shape {tuple(x.shape)} has "
                f"{x.shape[axis]} channels but image_channels={self.image_channels} + mask channels "
                f"{self.mask_channels} (num_classes={self.num_classes}) = {expected}; check both settings."
            )
        t = convert_to_tensor(x, track_meta=False)
        if t.dtype.is_floating_point and bool(torch.isnan(t).any()):
            raise ValueError(
                f"DecodePaired: {describe_source('paired tensor', source_name(x))} contains NaN values "
                "(a diverged generator?); they cannot be decoded."
            )
        image, mask = torch.split(t, [self.image_channels, self.mask_channels], dim=axis)
        image = image.to(torch.float32).clamp(-1.0, 1.0)
        if self.num_classes == 2:
            label = (mask > self.threshold).to(torch.int64)
        else:
            label = torch.argmax(mask, dim=axis, keepdim=True)
        image_out, *_ = convert_to_dst_type(image, x, dtype=torch.float32)
        label_out, *_ = convert_to_dst_type(label, x, dtype=torch.int64)
        return image_out, label_out
