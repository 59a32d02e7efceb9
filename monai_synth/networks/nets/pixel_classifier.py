"""DatasetGAN pixel-classifier ensemble over StyleGAN2 feature maps, without materialising pixel vectors.

DatasetGAN (Zhang et al. 2021; Fan et al. for StyleGAN2) labels a generated image by classifying every
pixel from the concatenation of all generator feature maps upsampled to the image size (thousands of
channels per pixel). The reference implementation builds that tensor for every annotated image and
stores every pixel vector, which costs ~160 GB for 16 images at 512 x 512.

Here the first linear layer is split by feature map: with ``W = [W_1 | ... | W_L]``,
``W up(concat(f_1..f_L)) = sum_l up(W_l f_l)`` because upsampling (bilinear or nearest) is linear and
acts on the spatial axes while ``W_l`` acts on channels. So the order is free per map: a small map is
projected at its own resolution first (a 1 x 1 convolution) and only the projected channels are
upsampled, a large map with few channels is upsampled first; and only the pixels needed are ever
upsampled -- a random pixel batch in training (where the raw features are sampled, then projected), a
chunk of rows at inference. Memory depends on the batch, not on how many images are annotated.

All ``n`` members are evaluated together (vectorised): their first layers are one 1 x 1 convolution with
``n * hidden`` output channels, the later layers batched matrix products with per-member weights,
batch norm per member (one ``BatchNorm1d`` over ``n * hidden`` features).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
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

    def _first_weight(self, index: int) -> torch.Tensor:
        """Block of the first layer acting on feature map ``index``: ``(n * h1, c)``."""
        start = sum(self.feature_channels[:index])
        c = self.feature_channels[index]
        return self.w1[:, :, start : start + c].reshape(-1, c)

    def _interpolation(self, r: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``(size, r)`` matrix ``A`` with 1D ``F.interpolate`` (this ensemble's mode) ``= A @ x``.

        Built by interpolating the identity, so it reproduces PyTorch's weights exactly; 2D bilinear and
        nearest upsampling are separable, ``up(X) = A @ X @ A.T``, and as matrix products they run at
        BLAS speed although ``A`` has at most two non-zeros per row.
        """
        eye = torch.eye(r, device=device, dtype=dtype)[None]  # (1, r, r): channel c = unit vector e_c
        kwargs = {"align_corners": False} if self.upsample_mode == "bilinear" else {}
        mode = "linear" if self.upsample_mode == "bilinear" else "nearest"
        return F.interpolate(eye, size=size, mode=mode, **kwargs)[0].T  # (size, r)

    def _sample(self, maps: torch.Tensor, coords: torch.Tensor, size: int) -> torch.Tensor:
        """Values of ``maps`` upsampled to ``size`` at integer pixels ``coords`` ``(B, P, 2)`` (row, col)."""
        if self.upsample_mode == "nearest":
            # F.interpolate(nearest) picks floor(i * r / size); reproduce it exactly
            r = maps.shape[-1]
            src = torch.div(coords * r, size, rounding_mode="floor")
            b = torch.arange(maps.shape[0], device=maps.device)[:, None]
            return maps[b, :, src[..., 0], src[..., 1]].permute(0, 2, 1)  # (B, C, P)
        # pixel centres of the output grid in [-1, 1] (align_corners=False, as F.interpolate)
        grid = (coords.flip(-1).to(maps.dtype) + 0.5) / size * 2 - 1  # (x, y)
        sampled = F.grid_sample(maps, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)
        return sampled[..., 0]  # (B, C, P)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """``(N, n * h1)`` first-layer pre-activations (bias not yet added) -> ``(n, N, K)`` logits.

        In eval mode without autograd (inference) each bias and batch norm are folded into one scale and
        shift applied in place with the ReLU, so no second ``N x n * h1`` buffer is made.
        """
        n, (h1, h2) = self.num_members, self.hidden_channels
        if not torch.is_grad_enabled() and not self.training:
            (scale1, shift1), (scale2, shift2) = (
                self._folded_norm(self.bn1, self.b1),
                self._folded_norm(self.bn2, self.b2),
            )
            h = h.mul_(scale1.reshape(-1).to(h.dtype)).add_(shift1.reshape(-1).to(h.dtype)).relu_()
            h = torch.bmm(h.reshape(-1, n, h1).transpose(0, 1), self.w2.transpose(1, 2).to(h.dtype))  # (n, N, h2)
            h = h.mul_(scale2[:, None].to(h.dtype)).add_(shift2[:, None].to(h.dtype)).relu_()
        else:
            h = F.relu(self.bn1(h + self.b1.reshape(1, n * h1))).reshape(-1, n, h1).transpose(0, 1)  # (n, N, h1)
            h = torch.baddbmm(self.b2[:, None, :], h, self.w2.transpose(1, 2))  # (n, N, h2)
            h = F.relu(self.bn2(h.transpose(0, 1).reshape(-1, n * h2))).reshape(-1, n, h2).transpose(0, 1)
        return torch.baddbmm(self.b3[:, None, :], h, self.w3.transpose(1, 2))  # (n, N, K)

    @staticmethod
    def _folded_norm(bn: nn.BatchNorm1d, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode batch norm after a linear layer with ``bias (n, h)`` as ``x * scale + shift`` (``(n, h)`` each)."""
        scale = (bn.weight * torch.rsqrt(bn.running_var + bn.eps)).reshape(bias.shape)
        return scale, bn.bias.reshape(bias.shape) + (bias - bn.running_mean.reshape(bias.shape)) * scale

    def forward_pixels(self, features: Sequence[torch.Tensor], coords: torch.Tensor, image_size: int) -> torch.Tensor:
        """Member logits ``(n, B * P, K)`` at pixels ``coords`` ``(B, P, 2)`` of ``image_size`` x ``image_size`` images.

        For a pixel batch the raw features are sampled first (a few channels per map, no gradient needed
        through the frozen generator) and the first layer is one matrix product on ``B * P`` vectors:
        cheaper than projecting whole maps to ``n * h1`` channels when ``P`` is not much larger than the
        maps, and its backward pass is a single matrix product.
        """
        self._check_features(features)
        sampled = torch.cat([self._sample(f, coords, image_size) for f in features], dim=1)  # (B, total, P)
        b, c, p = sampled.shape
        vectors = sampled.permute(0, 2, 1).reshape(b * p, c)
        return self._head(vectors @ self.w1.reshape(-1, c).T.to(vectors.dtype))

    def _project_first(self, r: int, c: int, size: int) -> bool:
        """Whether projecting ``c`` channels at resolution ``r`` before upsampling costs fewer products.

        Per image: projecting first costs ``r*r*c*N`` (``N = n * h1``) plus the separable upsampling of
        ``N`` channels as matrix products, ``N*size*r*(r + size)``; projecting last costs ``size**2*c*N``
        plus upsampling ``c`` channels.
        """
        n1 = self.num_members * self.hidden_channels[0]
        upsample = size * r * (r + size)
        return r * r * c * n1 + upsample * n1 < size * size * c * n1 + upsample * c

    @staticmethod
    def _upsample_rows(maps: torch.Tensor, a: torch.Tensor, rows: slice) -> torch.Tensor:
        """Rows ``rows`` of channels-last ``maps (B, r, r, C)`` upsampled by ``A``: ``(B, R, S, C)``.

        Two matrix products on contiguous channels-last data (no transposed copies of the wide result).
        """
        b, r, _, c = maps.shape
        t = torch.matmul(a[rows], maps.reshape(b, r, r * c)).reshape(-1, r, c)  # (B * R, r, C)
        return torch.matmul(a, t).reshape(b, -1, a.shape[0], c)

    def forward(
        self, features: Sequence[torch.Tensor], image_size: int, rows_per_chunk: int | None = None
    ) -> torch.Tensor:
        """Member logits for every pixel: ``(n, B, K, S, S)``, computed a chunk of image rows at a time
        (:meth:`chunks`; consume those directly to keep only per-pixel summaries)."""
        b = features[0].shape[0]
        parts = [
            logits.reshape(self.num_members, b, rows.stop - rows.start, image_size, -1)
            for rows, logits in self.chunks(features, image_size, rows_per_chunk)
        ]
        return torch.cat(parts, dim=2).permute(0, 1, 4, 2, 3)

    def chunks(
        self, features: Sequence[torch.Tensor], image_size: int, rows_per_chunk: int | None = None
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(rows, logits)`` per chunk of image rows: member logits ``(n, B * R * S, K)`` of those rows
        (pixel order: image, row, column).

        Maps are grouped by resolution; each group takes the cheaper of two exact orders (see
        :meth:`_project_first`): projected to ``n * h1`` channels at its own resolution, summed, and then
        upsampled (small maps with many channels), or upsampled and then projected (large maps with few
        channels). Only the rows of the current chunk are ever upsampled, so memory is bounded by the
        chunk and the projected small maps.

        Args:
            rows_per_chunk: image rows per chunk; by default as many as keep a chunk near 2048 pixels over
                the batch.
        """
        self._check_features(features)
        b = features[0].shape[0]
        if rows_per_chunk is None:
            rows_per_chunk = max(1, 2048 // (b * image_size))
        by_resolution: dict[int, list[int]] = {}
        for index, f in enumerate(features):
            by_resolution.setdefault(f.shape[-1], []).append(index)
        first, late, late_index = [], [], []
        for r, indices in by_resolution.items():
            ref = features[indices[0]]
            a = self._interpolation(r, image_size, ref.device, ref.dtype)
            channels = sum(features[i].shape[1] for i in indices)
            if self._project_first(r, channels, image_size):
                projected = None  # channels-last (B, r, r, n * h1), summed over the maps of this resolution
                for i in indices:
                    part = features[i].permute(0, 2, 3, 1) @ self._first_weight(i).T.to(ref.dtype)
                    projected = part if projected is None else projected.add_(part)
                first.append((projected, a))
            else:
                late += [(features[i].permute(0, 2, 3, 1).contiguous(), a) for i in indices]
                late_index += indices
        late_weight = torch.cat([self._first_weight(i) for i in late_index], dim=1).T if late else None
        n1 = self.num_members * self.hidden_channels[0]
        # the column step of every project-first resolution is one product: [A_4 | A_8 | ...] @ [T_4; T_8; ...]
        a_all = torch.cat([a for _, a in first], dim=1) if first else None  # (S, sum r)
        buffer = None  # without autograd one buffer serves every chunk (fresh multi-MB tensors cost page faults)
        if first and not torch.is_grad_enabled():
            buffer = features[0].new_empty(b * rows_per_chunk * image_size * n1)
        for start in range(0, image_size, rows_per_chunk):
            rows = slice(start, min(start + rows_per_chunk, image_size))
            num = b * (rows.stop - rows.start) * image_size
            h = None
            if first:
                rows_up = torch.cat(
                    [
                        torch.matmul(a[rows], maps.reshape(b, maps.shape[1], -1)).reshape(num // image_size, -1, n1)
                        for maps, a in first
                    ],
                    dim=1,
                )  # (B * R, sum r, n * h1): each resolution upsampled along rows
                a_batch = a_all.expand(rows_up.shape[0], -1, -1)
                if buffer is None:
                    h = torch.matmul(a_batch, rows_up).reshape(num, n1)
                else:
                    h = torch.matmul(a_batch, rows_up, out=buffer[: num * n1].view(-1, image_size, n1)).view(num, n1)
            if late:
                raw = torch.cat([self._upsample_rows(f, a, rows) for f, a in late], dim=-1).reshape(num, -1)
                weight = late_weight.to(raw.dtype)
                if h is None:
                    h = raw @ weight
                elif buffer is None:
                    h = h + raw @ weight
                else:
                    h.addmm_(raw, weight)
            yield rows, self._head(h)  # (n, B * R * S, K)

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
