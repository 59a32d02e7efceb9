"""Intensity transforms that map raw medical image intensities to the [-1, 1] range GANs expect."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import (
    NormalizeIntensity,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Transform,
)
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_synth.transforms.utils import describe_source, source_name

__all__ = ["NormalizeToRange", "NORMALIZE_MODES"]

NORMALIZE_MODES = ("window", "percentile", "zscore", "minmax", "fixed")


class NormalizeToRange(Transform):
    """Map a channel-first image ``(C, H, W)`` or ``(C, H, W, D)`` to float32 values in [-1, 1].

    Modes (all outputs are clipped to [-1, 1]):

    - ``"window"``: CT window ``window=(center, width)`` in HU, e.g. lung ``(-600, 1500)``,
      mediastinal ``(40, 400)``; ``center - width / 2 -> -1``, ``center + width / 2 -> +1``.
    - ``"percentile"``: robust MRI normalisation; the ``percentiles`` (default 0.5 and 99.5) of each
      channel map to -1 and +1, values outside are clipped.
    - ``"zscore"``: ``(x - mean) / std`` per channel, clipped at ``+-zscore_clip`` and divided by it.
    - ``"minmax"``: channel minimum -> -1, maximum -> +1.
    - ``"fixed"``: a known range ``input_range=(a_min, a_max)``, e.g. ``(0, 255)`` for 8-bit X-ray.

    Constant channels never produce NaN: they become all -1 in ``"minmax"`` and ``"percentile"``
    modes and all 0 in ``"zscore"`` mode (``"window"`` / ``"fixed"`` map them through the range).
    Built on MONAI's ``ScaleIntensityRange``, ``ScaleIntensityRangePercentiles`` and
    ``NormalizeIntensity``.

    Args:
        mode: one of ``"window"``, ``"percentile"``, ``"zscore"``, ``"minmax"``, ``"fixed"``.
        window: ``(center, width)`` in HU, required for (and only used by) ``mode="window"``.
        percentiles: ``(lower, upper)`` percentiles in [0, 100] for ``mode="percentile"``.
        zscore_clip: clipping value (in standard deviations) for ``mode="zscore"``; > 0.
        channel_wise: compute statistics per channel (``"percentile"``, ``"zscore"``, ``"minmax"``);
            otherwise over the whole image.
        input_range: ``(a_min, a_max)``, required for (and only used by) ``mode="fixed"``.

    Raises:
        ValueError: unknown mode, missing/invalid ``window`` or ``input_range``, invalid percentiles or
            clip value (at construction); image without a channel dimension or with NaN/inf values (at
            call time, naming the file when the image is a MetaTensor).

    Example::

        norm = NormalizeToRange(mode="window", window=(-600, 1500))  # lung window
        x = norm(ct_slice)  # (1, H, W) HU -> (1, H, W) in [-1, 1]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        mode: str = "minmax",
        window: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        zscore_clip: float = 3.0,
        channel_wise: bool = True,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        if mode not in NORMALIZE_MODES:
            raise ValueError(f"NormalizeToRange: unknown mode={mode!r}; choose one of {NORMALIZE_MODES}.")
        if mode == "window":
            if window is None or len(window) != 2:
                raise ValueError(
                    "NormalizeToRange(mode='window') needs window=(center, width) in HU, "
                    "e.g. (-600, 1500) for lung or (40, 400) for mediastinum."
                )
            if window[1] <= 0:
                raise ValueError(f"NormalizeToRange: window width must be > 0, got window={tuple(window)}.")
        elif window is not None:
            raise ValueError(
                f"NormalizeToRange: window={tuple(window)} is only used with mode='window' (got {mode!r})."
            )
        if mode == "fixed":
            if input_range is None or len(input_range) != 2 or input_range[1] <= input_range[0]:
                raise ValueError(
                    "NormalizeToRange(mode='fixed') needs input_range=(a_min, a_max) with a_min < a_max, "
                    f"e.g. (0, 255) for 8-bit images; got input_range={input_range}."
                )
        elif input_range is not None:
            raise ValueError(
                f"NormalizeToRange: input_range={tuple(input_range)} is only used with mode='fixed' (got {mode!r})."
            )
        lower, upper = percentiles
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(
                f"NormalizeToRange: percentiles must satisfy 0 <= lower < upper <= 100, got {percentiles}."
            )
        if zscore_clip <= 0:
            raise ValueError(f"NormalizeToRange: zscore_clip must be > 0, got {zscore_clip}.")

        self.mode = mode
        self.window = None if window is None else (float(window[0]), float(window[1]))
        self.percentiles = (float(lower), float(upper))
        self.zscore_clip = float(zscore_clip)
        self.channel_wise = channel_wise
        self.input_range = None if input_range is None else (float(input_range[0]), float(input_range[1]))

        if mode == "window":
            center, width = self.window  # type: ignore[misc]
            self._scaler = ScaleIntensityRange(center - width / 2, center + width / 2, -1.0, 1.0, clip=True)
        elif mode == "fixed":
            a_min, a_max = self.input_range  # type: ignore[misc]
            self._scaler = ScaleIntensityRange(a_min, a_max, -1.0, 1.0, clip=True)
        elif mode == "zscore":
            self._scaler = NormalizeIntensity(channel_wise=channel_wise, dtype=np.float32)
        else:  # minmax is the 0th..100th percentile range
            lo, hi = (0.0, 100.0) if mode == "minmax" else self.percentiles
            # channel looping is done in _robust_scale so that constant channels skip MONAI's divide-by-zero path
            self._scaler = ScaleIntensityRangePercentiles(lo, hi, -1.0, 1.0, clip=True, channel_wise=False)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Normalise ``img`` ``(C, *spatial)`` to [-1, 1]; returns the input's array type, float32."""
        if img.ndim < 3:
            raise ValueError(
                f"NormalizeToRange expects a channel-first image (C, H, W[, D]), got shape {tuple(img.shape)} "
                f"for {describe_source('image', source_name(img))}; add EnsureChannelFirst(d) before it."
            )
        t = convert_to_tensor(img, track_meta=False)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"NormalizeToRange: {describe_source('image', source_name(img))} contains NaN or infinite values; "
                "fix or exclude the file before normalising."
            )
        if self.mode in ("window", "fixed"):
            out = self._scaler(img)
        elif self.mode == "zscore":
            out = convert_to_tensor(self._scaler(img), track_meta=False)
            out = torch.clamp(out, -self.zscore_clip, self.zscore_clip) / self.zscore_clip
        else:
            out = self._robust_scale(t)
        out, *_ = convert_to_dst_type(out, img, dtype=torch.float32)
        return out

    def _robust_scale(self, t: torch.Tensor) -> torch.Tensor:
        groups = [t[c : c + 1] for c in range(t.shape[0])] if self.channel_wise else [t]
        scaled = []
        for g in groups:
            if bool(g.max() == g.min()):
                scaled.append(torch.full_like(g, -1.0, dtype=torch.float32))
            else:
                scaled.append(convert_to_tensor(self._scaler(g), dtype=torch.float32, track_meta=False))
        return torch.cat(scaled, dim=0)
