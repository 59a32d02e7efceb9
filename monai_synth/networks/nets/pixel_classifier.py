"""DatasetGAN pixel-classifier ensemble over StyleGAN2 feature maps, without materialising pixel vectors.

DatasetGAN (Zhang et al. 2021; Fan et al. for StyleGAN2) labels a generated image by classifying every
pixel from the concatenation of all generator feature maps upsampled to the image size (thousands of
channels per pixel). The reference implementation builds that tensor for every annotated image and
stores every pixel vector, which costs ~160 GB for 16 images at 512 x 512.

Here the first linear layer is split by feature map: with ``W = [W_1 | ... | W_L]``,
``W up(concat(f_1..f_L)) = sum_l up(W_l f_l)`` because upsampling (bilinear or nearest) is linear and
acts on the spatial axes while ``W_l`` acts on channels. So each map is projected at its own, small,
resolution first (a 1 x 1 convolution), and only the ``n_members * hidden`` projected channels are
upsampled -- and only at the pixels needed (a random pixel batch in training, a chunk of rows at
inference). Memory depends on the batch, not on how many images are annotated.

All ``n`` members are evaluated together (vectorised): their first layers are one 1 x 1 convolution with
``n * hidden`` output channels, the later layers batched matrix products with per-member weights,
batch norm per member (one ``BatchNorm1d`` over ``n * hidden`` features).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PixelClassifierEnsemble", "majority_vote", "jensen_shannon_disagreement"]


def majority_vote(member_logits: torch.Tensor) -> torch.Tensor:
    """Most frequent arg-max class over members; ties go to the lowest class index.

    Args:
        member_logits: ``(n, N, K)`` logits of ``n`` members for ``N`` pixels.

    Returns:
        ``(N,)`` int64 labels.
    """
    n, _, k = member_logits.shape
    votes = F.one_hot(member_logits.argmax(dim=2), k).sum(dim=0)  # (N, K)
    return votes.argmax(dim=1)


def jensen_shannon_disagreement(member_probabilities: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence across members: ``H(mean p) - mean H(p)`` (nats).

    0 when every member predicts the same distribution; at most ``log(min(n, K))``.

    Args:
        member_probabilities: ``(n, N, K)`` softmax outputs.

    Returns:
        ``(N,)`` divergence per pixel.
    """

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * torch.log(p.clamp_min(eps))).sum(dim=-1)

    return entropy(member_probabilities.mean(dim=0)) - entropy(member_probabilities).mean(dim=0)


class PixelClassifierEnsemble(nn.Module):
    """``n`` DatasetGAN pixel classifiers (Linear-BN-ReLU, Linear-BN-ReLU, Linear) trained and run together.

    Args:
        feature_channels: channel count of each generator feature map, in the generator's order
            (``StyleGAN2Generator.feature_channels``); their sum is the per-pixel vector length.
        num_classes: ``K`` classes (background included).
        num_members: ensemble size ``n`` (10 in the papers).
        hidden_channels: widths of the two hidden layers ((256, 128) in the papers).
        upsample_mode: ``"bilinear"`` (default) or ``"nearest"``: how feature maps reach the image size.

    Every member is Kaiming-initialised from its own draw, so members differ. Use :meth:`forward` with the
    feature maps and an image size (full maps, processed in row chunks), or :meth:`forward_pixels` with
    pixel coordinates (training on a random pixel batch). :meth:`reference_forward` is the
    straightforward upsample-and-concatenate computation, kept to test that both agree.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        num_classes: int,
        num_members: int = 10,
        hidden_channels: Sequence[int] = (256, 128),
        upsample_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        feature_channels = [int(c) for c in feature_channels]
        if not feature_channels or any(c < 1 for c in feature_channels):
            raise ValueError(f"feature_channels must be positive channel counts, got {feature_channels}.")
        if num_classes < 2 or num_members < 1 or len(hidden_channels) != 2:
            raise ValueError(
                "PixelClassifierEnsemble needs num_classes >= 2, num_members >= 1 and two hidden widths, got "
                f"{num_classes}, {num_members}, {tuple(hidden_channels)}."
            )
        if upsample_mode not in ("bilinear", "nearest"):
            raise ValueError(f"upsample_mode must be 'bilinear' or 'nearest', got {upsample_mode!r}.")
        self.feature_channels = feature_channels
        self.num_classes = int(num_classes)
        self.num_members = n = int(num_members)
        h1, h2 = (int(h) for h in hidden_channels)
        self.hidden_channels = (h1, h2)
        self.upsample_mode = upsample_mode
        total = sum(feature_channels)
        # per member (n, out, in) weights, Kaiming-uniform like nn.Linear, each member its own draw
        self.w1 = nn.Parameter(torch.empty(n, h1, total))
        self.b1 = nn.Parameter(torch.empty(n, h1))
        self.w2 = nn.Parameter(torch.empty(n, h2, h1))
        self.b2 = nn.Parameter(torch.empty(n, h2))
        self.w3 = nn.Parameter(torch.empty(n, self.num_classes, h2))
        self.b3 = nn.Parameter(torch.empty(n, self.num_classes))
        for w, b in ((self.w1, self.b1), (self.w2, self.b2), (self.w3, self.b3)):
            for m in range(n):
                nn.init.kaiming_uniform_(w[m], a=math.sqrt(5))
                bound = 1 / math.sqrt(w.shape[2])
                nn.init.uniform_(b[m], -bound, bound)
        self.bn1 = nn.BatchNorm1d(n * h1)
        self.bn2 = nn.BatchNorm1d(n * h2)

    def get_config(self) -> dict[str, Any]:
        return {
            "feature_channels": self.feature_channels,
            "num_classes": self.num_classes,
            "num_members": self.num_members,
            "hidden_channels": list(self.hidden_channels),
            "upsample_mode": self.upsample_mode,
        }

    # ------------------------------------------------------------------ first layer, factored
    def _check_features(self, features: Sequence[torch.Tensor]) -> None:
        channels = [f.shape[1] for f in features]
        if channels != self.feature_channels:
            raise ValueError(
                f"PixelClassifierEnsemble was built for feature maps with channels {self.feature_channels}, "
                f"got {channels}: use the generator it was trained with."
            )

    def _projected(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each map through its block of the first layer at its own resolution: ``(B, n * h1, r, r)``."""
        self._check_features(features)
        out, start = [], 0
        for f in features:
            c = f.shape[1]
            w = self.w1[:, :, start : start + c].reshape(-1, c)  # (n * h1, c)
            out.append(F.conv2d(f, w[:, :, None, None].to(f.dtype)))
            start += c
        return out

    def _sample(self, maps: torch.Tensor, coords: torch.Tensor, size: int) -> torch.Tensor:
        """Values of ``maps`` upsampled to ``size`` at integer pixels ``coords`` ``(B, P, 2)`` (row, col)."""
        # pixel centres of the output grid in [-1, 1] (align_corners=False, as F.interpolate)
        grid = (coords.flip(-1).to(maps.dtype) + 0.5) / size * 2 - 1  # (x, y)
        if self.upsample_mode == "nearest":
            # F.interpolate(nearest) picks floor(i * r / size); reproduce it exactly
            r = maps.shape[-1]
            src = torch.div(coords * r, size, rounding_mode="floor")
            b = torch.arange(maps.shape[0], device=maps.device)[:, None]
            return maps[b, :, src[..., 0], src[..., 1]].permute(0, 2, 1)  # (B, C, P)
        sampled = F.grid_sample(maps, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)
        return sampled[..., 0]  # (B, C, P)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """``(N, n * h1)`` first-layer pre-activations (bias not yet added) -> ``(n, N, K)`` logits."""
        n, (h1, h2) = self.num_members, self.hidden_channels
        h = h + self.b1.reshape(1, n * h1)
        h = F.relu(self.bn1(h)).reshape(-1, n, h1).transpose(0, 1)  # (n, N, h1)
        h = torch.baddbmm(self.b2[:, None, :], h, self.w2.transpose(1, 2))  # (n, N, h2)
        h = F.relu(self.bn2(h.transpose(0, 1).reshape(-1, n * h2))).reshape(-1, n, h2).transpose(0, 1)
        return torch.baddbmm(self.b3[:, None, :], h, self.w3.transpose(1, 2))  # (n, N, K)

    def forward_pixels(self, features: Sequence[torch.Tensor], coords: torch.Tensor, image_size: int) -> torch.Tensor:
        """Member logits ``(n, B * P, K)`` at pixels ``coords`` ``(B, P, 2)`` of ``image_size`` x ``image_size`` images."""
        total = None
        for maps in self._projected(features):
            values = self._sample(maps, coords, image_size)
            total = values if total is None else total + values
        b, c, p = total.shape
        return self._head(total.permute(0, 2, 1).reshape(b * p, c))

    def forward(self, features: Sequence[torch.Tensor], image_size: int, rows_per_chunk: int = 32) -> torch.Tensor:
        """Member logits for every pixel: ``(n, B, K, S, S)``, computed ``rows_per_chunk`` image rows at a time."""
        projected = self._projected(features)
        b = features[0].shape[0]
        device = features[0].device
        cols = torch.arange(image_size, device=device)
        chunks = []
        for start in range(0, image_size, rows_per_chunk):
            rows = torch.arange(start, min(start + rows_per_chunk, image_size), device=device)
            coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(1, -1, 2).expand(b, -1, -1)
            total = sum(self._sample(maps, coords, image_size) for maps in projected)  # (B, C, P)
            logits = self._head(total.permute(0, 2, 1).reshape(-1, total.shape[1]))  # (n, B * P, K)
            chunks.append(logits.reshape(self.num_members, b, len(rows), image_size, -1))
        return torch.cat(chunks, dim=2).permute(0, 1, 4, 2, 3)

    def reference_forward(self, features: Sequence[torch.Tensor], image_size: int) -> torch.Tensor:
        """The straightforward path: upsample every map, concatenate, apply the full first layer.

        Memory grows with ``sum(channels) * image_size**2`` per image: for tests and small sizes only.
        """
        self._check_features(features)
        kwargs = {"align_corners": False} if self.upsample_mode == "bilinear" else {}
        full = torch.cat(
            [F.interpolate(f, size=(image_size, image_size), mode=self.upsample_mode, **kwargs) for f in features], 1
        )
        b = full.shape[0]
        vectors = full.permute(0, 2, 3, 1).reshape(-1, full.shape[1])  # (B * S * S, total)
        h = torch.einsum("pc,noc->pno", vectors, self.w1).reshape(vectors.shape[0], -1)
        logits = self._head(h)
        return logits.reshape(self.num_members, b, image_size, image_size, -1).permute(0, 1, 4, 2, 3)
