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
    # arg-max as K - 1 comparisons of whole (n, N) slices (first maximum kept, as argmax): fast in either
    # memory layout, where argmax over a non-contiguous axis of a few classes is 20x slower
    best, choice = (
        member_logits[..., 0],
        torch.zeros(member_logits.shape[:2], dtype=torch.long, device=member_logits.device),
    )
    for c in range(1, k):
        logits = member_logits[..., c]
        choice.masked_fill_(logits > best, c)
        best = torch.maximum(best, logits)
    votes = F.one_hot(choice, k).sum(dim=0)  # (N, K)
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


_CHUNK_PIXELS = 1024  # default pixels per chunk: the first-layer activations (1024 x n * h1, 10 MB) stay in cache
_PROJECT_PIXELS = 2048  # source pixels projected per product at inference: a band of rows, not the whole map
_TILE = 8  # output columns per tile (at most)
_UPSAMPLE_COST = 4  # a multiply-add of the banded upsampling costs about 4 of a large matrix product (measured) of the column upsampling: few source columns per tile, few tiles


def _row_bands(a: torch.Tensor, starts: Sequence[int], rows: int) -> list[tuple[int, int]]:
    """Per chunk of ``rows`` output rows from each of ``starts``: the source rows ``[lo, hi)`` that hold every
    non-zero of those rows of the interpolation matrix ``a (S, r)``."""
    support = (a != 0).cpu()
    bands = []
    for start in starts:
        used = torch.nonzero(support[start : start + rows].any(0)).flatten()
        bands.append((int(used[0]), int(used[-1]) + 1))
    return bands


def _column_tiles(
    matrices: Sequence[torch.Tensor], size: int, tile: int, constant: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """Column upsampling of several resolutions as one batched product over tiles of ``tile`` output columns.

    Tile ``t`` of every resolution's interpolation matrix ``A_r (S, r)`` has its non-zeros in a few
    consecutive source columns, a window of ``K_r`` columns starting at ``start_r[t]``. Concatenating the
    windows of all resolutions, ``sum_r A_r[tile t] @ X_r = W_t @ gather_t(X)`` with ``W_t (tile, K)``, ``K =
    sum_r K_r``: the upsampling and the sum over resolutions are one product of ``K`` terms per output,
    instead of ``sum_r r`` for the dense matrices.

    Args:
        matrices: ``A_r`` ``(S, r)`` per resolution, in the order of the gathered rows.
        size: ``S``, a multiple of ``tile``.
        tile: output columns per tile.
        constant: append a weight-1 column to every tile (for a constant row, see :func:`_gather_index`).

    Returns:
        ``(weights (T, tile, K), starts (T,) per resolution, widths K_r per resolution)``, ``T = S / tile``.
    """
    tiles = size // tile
    weights, starts, widths = [], [], []
    for a in matrices:
        r = a.shape[1]
        support = (a != 0).cpu().reshape(tiles, tile, r).any(1)  # (T, r): source columns each tile reads
        lo = support.int().argmax(1)
        hi = r - support.flip(1).int().argmax(1)
        width = int((hi - lo).max())
        start = torch.minimum(lo, torch.tensor(r - width))
        columns = (start[:, None] + torch.arange(width)).to(a.device)  # (T, K_r)
        tile_rows = a.reshape(tiles, tile, r)
        weights.append(torch.gather(tile_rows, 2, columns[:, None, :].expand(-1, tile, -1)))
        starts.append(start)
        widths.append(width)
    if constant:
        weights.append(torch.ones_like(weights[0][:, :, :1]))
    return torch.cat(weights, dim=2), starts, widths


def _gather_index(
    starts: Sequence[torch.Tensor],
    widths: Sequence[int],
    resolutions: Sequence[int],
    rows: int,
    device: torch.device,
    constant: bool = False,
) -> torch.Tensor:
    """Row index into the stacked row-upsampled maps (per resolution ``(rows, r)`` blocks of pixels) that
    lays out each tile's windows (:func:`_column_tiles`): ``(rows * T * K,)``, order (row, tile, window).

    ``constant``: row 0 of the stack is a constant row (the folded bias), read last by every tile.
    """
    parts, offset = [], int(constant)
    row = torch.arange(rows)[:, None, None]
    for start, width, r in zip(starts, widths, resolutions):
        parts.append(offset + row * r + (start[:, None] + torch.arange(width))[None])  # (rows, T, K_r)
        offset += rows * r
    if constant:
        parts.append(torch.zeros_like(parts[0][:, :, :1]))
    return torch.cat(parts, dim=2).reshape(-1).to(device)


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
        """Whether projecting ``c`` channels at resolution ``r`` before upsampling costs less.

        Per image, with ``N = n * h1``: projecting first costs ``r*r*c*N`` products plus the banded upsampling of
        ``N`` channels (about ``2 + tile * r / size`` gathered source columns per output in the column step
        (:func:`_column_tiles`), two per output row in the row step), counted ``_UPSAMPLE_COST`` times
        because it moves memory rather than multiplying; projecting last costs ``size**2*c*N`` products plus
        upsampling ``c`` channels (rows banded, columns one dense product). A map at the image size is
        never upsampled.
        """
        if r >= size:
            return False
        n1 = self.num_members * self.hidden_channels[0]
        columns = 2 + _TILE * r / size
        first = r * r * c * n1 + _UPSAMPLE_COST * n1 * (size * size * columns + size * r * 2)
        last = size * size * c * n1 + size * size * r * c + size * r * c * 2
        return first < last

    def forward(
        self, features: Sequence[torch.Tensor], image_size: int, rows_per_chunk: int | None = None
    ) -> torch.Tensor:
        """Member logits for every pixel: ``(n, B, K, S, S)``, computed a chunk of image rows at a time
        (:meth:`chunks`; consume those directly to keep only per-pixel summaries)."""
        per_image: dict[int, list[torch.Tensor]] = {}
        for image, rows, logits in self.chunks(features, image_size, rows_per_chunk):
            per_image.setdefault(image, []).append(
                logits.reshape(self.num_members, rows.stop - rows.start, image_size, -1)
            )
        images = [torch.cat(per_image[i], dim=1) for i in sorted(per_image)]
        return torch.stack(images, dim=1).permute(0, 1, 4, 2, 3)

    def chunks(
        self, features: Sequence[torch.Tensor], image_size: int, rows_per_chunk: int | None = None
    ) -> Iterator[tuple[int, slice, torch.Tensor]]:
        """Yield ``(image, rows, logits)`` per chunk of one image's rows: member logits ``(n, R * S, K)`` of
        those rows of image ``image`` (pixel order: row, column).

        Maps are grouped by resolution; each group takes the cheaper of two exact orders (see
        :meth:`_project_first`). Small maps with many channels are projected to ``n * h1`` channels at their
        own resolution (all maps and members of a resolution in one product per band of about
        ``_PROJECT_PIXELS`` source pixels, into a sliding window of projected rows: at inference a projected
        map never exists whole, each source row is projected once), then upsampled a chunk of rows at a time: rows by a banded product (only the few source rows a chunk needs), columns
        for every projected resolution at once by one gather and one batched product over tiles of
        ``_TILE`` output columns (each tile reads the few source columns it needs from each resolution),
        which also sums the resolutions. Maps at the image size (and large maps with few channels) are
        added by one product on their raw channels. The interpolation weights are PyTorch's own (see
        :meth:`_interpolation`), so the result equals upsample-and-concatenate up to float rounding.

        Without autograd in eval mode the batch norms are folded into the first two layers (scale into
        the weights, shift as the initial value of the products), every chunk reuses the same buffers
        and the members' second and third layers are one batched product each.

        Args:
            rows_per_chunk: image rows per chunk; by default as many as make about 1024 pixels.
        """
        self._check_features(features)
        s, b = image_size, features[0].shape[0]
        # one dtype for every tensor (under autocast the maps may come in two): the finest map's
        dtype, device = features[-1].dtype, features[-1].device
        features = [f.to(dtype) for f in features]
        n, (h1, h2) = self.num_members, self.hidden_channels
        n1 = n * h1
        rows_per_chunk = max(1, min(s, rows_per_chunk or _CHUNK_PIXELS // s))
        fast = not torch.is_grad_enabled() and not self.training
        w1 = self.w1.reshape(n1, -1)
        shift1 = scale1 = None
        if fast:  # eval batch norm after the first layer: scale into its weights, shift as the products' start
            scale1, shift1 = self._folded_norm(self.bn1, self.b1)
            scale1, shift1 = scale1.reshape(-1, 1), shift1.reshape(1, 1, n1).to(dtype)
        by_resolution: dict[int, list[int]] = {}
        for index, f in enumerate(features):
            by_resolution.setdefault(f.shape[-1], []).append(index)
        first, late = [], []  # (resolution, map indices, (c, N) weight block transposed, interpolation (S, r))
        for r, indices in by_resolution.items():
            starts = [sum(self.feature_channels[:i]) for i in indices]
            weight = torch.cat([w1[:, a : a + self.feature_channels[i]] for a, i in zip(starts, indices)], 1)
            if fast:  # folded scale applied to this block only: no second copy of the whole first layer
                weight.mul_(scale1)
            a = self._interpolation(r, s, device, dtype)
            if self._project_first(r, weight.shape[1], s):
                first.append((r, indices, weight.T.to(dtype), a))
            else:  # at the image size the interpolation is the identity: no upsampling
                late.append((r, indices, weight.T.to(dtype), a if r != s else None))
        late_weight = torch.cat([weight for _, _, weight, _ in late]) if late else None  # (sum c, N)
        tile = math.gcd(s, _TILE)
        resolutions = [r for r, *_ in first]
        # fast: row 0 of the stacked rows is the folded shift, read by every tile with weight 1 (no extra pass)
        columns = _column_tiles([a for *_, a in first], s, tile, constant=fast) if first else None
        starts = list(range(0, s, rows_per_chunk))
        bands = {r: _row_bands(a, starts, rows_per_chunk) for r, _, _, a in first + late if a is not None}
        gathers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per chunk height (the last may be shorter)
        if fast:  # one set of buffers for every chunk: fresh multi-MB tensors cost page faults
            stacked = features[0].new_empty((1 + rows_per_chunk * sum(resolutions)) * n1)
            stacked[:n1] = shift1.reshape(-1)
            gathered = features[0].new_empty(rows_per_chunk * (columns[0].numel() // tile if first else 0) * n1)
            hidden = features[0].new_empty(rows_per_chunk * s * n1)
            second = features[0].new_empty(n * rows_per_chunk * s * h2)
            scale2, shift2 = self._folded_norm(self.bn2, self.b2)
            w2 = (self.w2 * scale2[:, :, None]).transpose(1, 2).to(dtype)  # (n, h1, h2)
            shift2, b3, w3 = shift2[:, None].to(dtype), self.b3[:, :, None].to(dtype), self.w3.to(dtype)
        # first layer of every member on each projected resolution, one product per band of source rows into a
        # sliding window of projected rows (r_w, r * N), channels-last: the rows the next chunks need, never
        # the whole projected map (with autograd: the whole map, no window reused in place)
        windows = []
        for r, _, _, _ in first:
            widest = max(hi - lo for lo, hi in bands[r])
            capacity = r if not fast else min(r, widest + max(1, _PROJECT_PIXELS // r))
            windows.append(features[0].new_empty((capacity, r * n1)) if fast else None)
        for image in range(b):
            held = [(0, 0)] * len(first)  # source rows [lo, hi) each window holds
            if not fast:
                windows = [
                    self._project(features, image, indices, weight, 0, r).reshape(r, r * n1)
                    for r, indices, weight, _ in first
                ]
                held = [(0, r) for r, *_ in first]
            for chunk, start in enumerate(starts):
                rows = slice(start, min(start + rows_per_chunk, s))
                height = rows.stop - start
                num = height * s
                h = None
                if first:
                    if height not in gathers:
                        index = _gather_index(columns[1], columns[2], resolutions, height, device, constant=fast)
                        gathers[height] = (index, columns[0].repeat(height, 1, 1))  # (R * T, tile, K)
                    index, tiles = gathers[height]
                    offset = n1 if fast else 0
                    ups = []  # rows of each resolution, upsampled along rows (banded): (R, r * N)
                    for j, (r, indices, weight, a) in enumerate(first):
                        lo, hi = bands[r][chunk]
                        if hi > held[j][1]:
                            held[j] = self._slide(windows[j], held[j], lo, hi, features, image, indices, weight)
                        band, src = a[rows, lo:hi], windows[j][lo - held[j][0] : hi - held[j][0]]
                        if fast:
                            ups.append(
                                torch.matmul(band, src, out=stacked[offset : offset + height * r * n1].view(height, -1))
                            )
                            offset += height * r * n1
                        else:
                            ups.append(band @ src)
                    if fast:  # gather each tile's source columns, then one batched product: (R * T, tile, N)
                        g = torch.index_select(
                            stacked[:offset].view(-1, n1), 0, index, out=gathered[: index.numel() * n1].view(-1, n1)
                        )
                        out = hidden[: num * n1].view(tiles.shape[0], tile, n1)
                        h = torch.bmm(tiles, g.view(tiles.shape[0], -1, n1), out=out).view(num, n1)
                    else:
                        g = torch.cat([u.reshape(-1, n1) for u in ups]).index_select(0, index)
                        h = torch.bmm(tiles, g.view(tiles.shape[0], -1, n1)).reshape(num, n1)
                if late:  # raw channels of every late map (upsampled if smaller than the image), one product
                    x = []
                    for r, indices, _, a in late:  # maps of one resolution, concatenated a chunk of rows at a time
                        maps = [features[i][image] for i in indices]  # (C, r, r) each
                        if a is None:  # (C, R, S) -> (R * S, C), a transposed view
                            x += [m[:, rows].reshape(m.shape[0], num).T for m in maps]
                        else:
                            lo, hi = bands[r][chunk]
                            band = torch.cat([m[:, lo:hi] for m in maps])  # (C, hi - lo, r)
                            x.append(self._upsample_rows(band, a, rows, (lo, hi)).to(dtype))
                    x = x[0] if len(x) == 1 else torch.cat(x, dim=1)
                    if h is None and fast:
                        h = torch.addmm(shift1[0, 0], x, late_weight, out=hidden[: num * n1].view(num, n1))
                    elif h is None:
                        h = x @ late_weight
                    elif fast:
                        h.addmm_(x, late_weight)
                    else:
                        h = h + x @ late_weight
                if not fast:
                    yield image, rows, self._head(h)
                    continue
                h = h.relu_().view(num, n, h1).transpose(0, 1)  # (n, R * S, h1), members strided
                h = torch.baddbmm(shift2, h, w2, out=second[: n * num * h2].view(n, num, h2)).relu_()
                # (n, K, R * S) in memory: per-pixel reductions over K (softmax, vote) then run along pixels
                yield image, rows, torch.baddbmm(b3, w3, h.transpose(1, 2)).transpose(1, 2)  # (n, R * S, K)

    @staticmethod
    def _project(
        features: Sequence[torch.Tensor],
        image: int,
        indices: Sequence[int],
        weight: torch.Tensor,
        lo: int,
        hi: int,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Source rows ``[lo, hi)`` of image ``image``'s maps ``indices`` (one resolution ``r``) through the
        first layer's block ``weight (C, N)``: ``((hi - lo) * r, N)`` channels-last (into ``out`` if given)."""
        x = torch.cat([features[i][image][:, lo:hi] for i in indices])  # (C, hi - lo, r)
        x = x.reshape(x.shape[0], -1).T
        return torch.matmul(x, weight) if out is None else torch.matmul(x, weight, out=out)

    def _slide(
        self,
        window: torch.Tensor,
        held: tuple[int, int],
        lo: int,
        hi: int,
        features: Sequence[torch.Tensor],
        image: int,
        indices: Sequence[int],
        weight: torch.Tensor,
    ) -> tuple[int, int]:
        """Move the projected-row ``window (capacity, r * N)`` from source rows ``held`` to ``[lo, lo + capacity)``
        (clipped at ``r``): rows still held are moved to the front, only new rows are projected. ``lo`` never
        decreases from chunk to chunk, so every source row is projected once per image.

        Returns:
            The source rows ``[lo, end)`` the window now holds (``end >= hi``).
        """
        start, end = held
        r = features[indices[0]].shape[-1]
        kept = max(0, end - lo)
        if kept:
            window[:kept] = window[lo - start : end - start].clone()
        new_end = min(r, lo + window.shape[0])
        out = window[kept : new_end - lo].view(-1, window.shape[1] // r)
        self._project(features, image, indices, weight, lo + kept, new_end, out=out)
        return lo, new_end

    @staticmethod
    def _upsample_rows(maps: torch.Tensor, a: torch.Tensor, rows: slice, band: tuple[int, int]) -> torch.Tensor:
        """Rows ``rows`` of maps upsampled by ``A (S, r)`` as pixel vectors ``(R * S, C)``.

        ``maps``: ``(C, hi - lo, r)``, the maps' source rows ``band = [lo, hi)``, which hold every non-zero of
        ``A[rows]``.
        """
        lo, hi = band
        t = torch.matmul(a[rows, lo:hi], maps)  # (C, R, r)
        return torch.matmul(t, a.T).reshape(maps.shape[0], -1).T

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
