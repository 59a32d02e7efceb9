"""StyleGAN2 (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020).

Mapping network, skip-architecture synthesis network with modulated/demodulated convolutions, noise
inputs and a learned constant 4 x 4 input, and a residual discriminator with minibatch standard
deviation, written in plain PyTorch (no compiled plugins) so they run on CPU and GPU alike.

Three modes share the networks (Vu et al. 2023 naming; the DatasetGAN backbone is ``image``):

- ``"image"``: the generator draws ``image_channels`` channels.
- ``"paired"`` (B-SG): ``image_channels`` image channels followed by ``mask_channels`` mask channels,
  the paired encoding of :class:`monai_synth.transforms.EncodePaired`, generated and judged together.
- ``"mask"`` (M-SG): only the ``mask_channels`` mask channels.
- ``"conditional"`` (C-SG, Vu et al. Fig. 2): the generator draws ``image_channels`` image channels for a
  given label mask (``mask_channels`` channels of the paired encoding), which is resampled (area or
  nearest) to every synthesis layer's resolution and concatenated with the output of that layer's
  modulated / demodulated convolution, so every following convolution and image output sees it; the
  discriminator judges the paired tensor ``image + mask`` and gets the mask again, resampled, before
  every residual block. The latent sets the appearance, the mask the anatomy.

Feature maps for the DatasetGAN style interpreter are a first-class output: ``generator(z,
return_features=True)`` returns a :class:`StyleGAN2Output` whose ``features`` lists two maps per
resolution block, coarse to fine (the 4 x 4 block: the learned constant and its first convolution;
every other block: its upsampling convolution and its second convolution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_synth.networks.blocks import MinibatchStdDev
from monai_synth.networks.blocks.equalized import EqualizedConv2d, EqualizedLinear
from monai_synth.networks.blocks.fir import FIRUpsample2d
from monai_synth.networks.blocks.modulated import NOISE_MODES, FromImage, StyleLayer, ToImage
from monai_synth.networks.latents import sample_latents

__all__ = [
    "STYLEGAN2_MODES",
    "CONDITION_RESAMPLING",
    "MappingNetwork",
    "StyleGAN2Output",
    "StyleGAN2Generator",
    "StyleGAN2Discriminator",
    "stylegan2_channels",
    "mode_channels",
    "mode_channel_range",
    "encode_condition",
    "resize_condition",
]

STYLEGAN2_MODES = ("image", "paired", "mask", "conditional")
CONDITION_RESAMPLING = ("area", "nearest")


def mode_channels(mode: str, image_channels: int, mask_channels: int) -> int:
    """Number of generated / discriminated channels in a mode (see the module docstring)."""
    if mode not in STYLEGAN2_MODES:
        raise ValueError(f"mode must be one of {STYLEGAN2_MODES}, got {mode!r}.")
    if mode in ("paired", "mask", "conditional") and mask_channels < 1:
        raise ValueError(f"mode {mode!r} needs mask_channels >= 1, got {mask_channels}.")
    if mode in ("image", "paired", "conditional") and image_channels < 1:
        raise ValueError(f"mode {mode!r} needs image_channels >= 1, got {image_channels}.")
    return {
        "image": image_channels,
        "paired": image_channels + mask_channels,
        "mask": mask_channels,
        "conditional": image_channels,
    }[mode]


def mode_channel_range(mode: str, image_channels: int, mask_channels: int) -> tuple[int, int]:
    """``(start, stop)`` of the channels a mode reads from a paired ``image + mask`` tensor.

    Conditional mode reads the whole pair: the image it learns and the mask it is conditioned on.
    """
    n = mode_channels(mode, image_channels, mask_channels)
    if mode == "conditional":
        return 0, n + mask_channels
    start = image_channels if mode == "mask" else 0
    return start, start + n


def encode_condition(labels: torch.Tensor, mask_channels: int, owner: str = "StyleGAN2Generator") -> torch.Tensor:
    """Integer labels ``(B, 1, H, W)`` -> the paired encoding's mask channels ``(B, M, H, W)`` in {-1, +1}.

    ``M == 1``: binary, ``+1`` foreground; ``M == K > 2``: one-hot over ``K`` classes (as
    :class:`monai_synth.transforms.EncodePaired`).

    Raises:
        ValueError: not one channel, or labels outside ``0 .. K - 1`` (more classes than the generator knows).
    """
    num_classes = 2 if mask_channels == 1 else int(mask_channels)
    if labels.ndim != 4 or labels.shape[1] != 1:
        raise ValueError(f"{owner}: integer masks must be (B, 1, H, W), got {tuple(labels.shape)}.")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{owner}: the mask holds labels {low}..{high} but the generator was trained on {num_classes} classes "
            f"(0..{num_classes - 1}); map the mask to those classes first."
        )
    labels = labels.long()
    if mask_channels == 1:
        return labels.float() * 2 - 1
    return F.one_hot(labels[:, 0], num_classes).permute(0, 3, 1, 2).float() * 2 - 1


def resize_condition(mask: torch.Tensor, size: int, method: str = "area") -> torch.Tensor:
    """Resample an encoded mask ``(B, M, H, W)`` to ``size x size``: ``"area"`` (class fractions, scaled to
    [-1, 1]) or ``"nearest"``; the mask itself when it has that size."""
    if mask.shape[-1] == size and mask.shape[-2] == size:
        return mask
    if method == "area" and size < mask.shape[-1]:
        return F.interpolate(mask, size=(size, size), mode="area")
    return F.interpolate(mask, size=(size, size), mode="nearest")


def _check_resolution(owner: str, image_size: int) -> int:
    if isinstance(image_size, bool) or int(image_size) != image_size:
        raise ValueError(f"{owner}: image_size must be an integer, got {image_size!r}.")
    image_size = int(image_size)
    if image_size < 8 or image_size > 1024 or image_size & (image_size - 1):
        raise ValueError(f"{owner}: image_size must be a power of two in [8, 1024], got {image_size}.")
    return image_size


def stylegan2_channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: ``min(channel_base // resolution, channel_max)`` (at least 1)."""
    return max(1, min(channel_base // resolution, channel_max))


class MappingNetwork(nn.Module):
    """``z -> w``: 2nd-moment normalisation of z, then ``num_layers`` equalised FC layers (lr multiplier 0.01).

    Tracks the moving average ``w_avg`` of w during training (decay ``w_avg_beta``) for the truncation trick.
    """

    def __init__(
        self, z_dim: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01, w_avg_beta: float = 0.995
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MappingNetwork: num_layers must be >= 1, got {num_layers}.")
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[EqualizedLinear(a, b, lr_multiplier=lr_multiplier, activation=True) for a, b in zip(dims[:-1], dims[1:])]
        )
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool | None = None) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.layers(z)
        if self.training if update_w_avg is None else update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation_psi)
        return w


@dataclass
class StyleGAN2Output:
    """What :class:`StyleGAN2Generator` returns with ``return_features=True``.

    Attributes:
        image: ``(B, out_channels, R, R)`` generated tensor (not clamped; about [-1, 1]).
        features: two ``(B, C_r, r, r)`` maps per resolution ``r = 4 .. R``, coarse to fine.
        ws: the ``(B, num_ws, w_dim)`` per-layer latents that produced it (w+).
    """

    image: torch.Tensor
    features: list[torch.Tensor]
    ws: torch.Tensor


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (config F architecture, skip outputs) for image, paired, mask or conditional mode.

    Args:
        image_size: output side, a power of two in [8, 1024].
        image_channels: image channels ``C`` (1 for CT/X-ray, more for multi-modal MRI).
        mask_channels: mask channels ``M`` of the paired encoding (1 for a binary mask, ``K`` one-hot
            channels for ``K`` classes); unused in image mode.
        mode: ``"image"``, ``"paired"`` (B-SG), ``"mask"`` (M-SG) or ``"conditional"`` (C-SG: draws the
            image channels for the mask given as ``mask=`` to every call).
        z_dim: latent size (512 in the paper).
        w_dim: intermediate latent size (512).
        mapping_layers: mapping depth (8 in StyleGAN2; StyleGAN2-ADA's small-data configs use 2).
        channel_base: feature maps at resolution ``r`` are ``min(channel_base // r, channel_max)``
            (32768 and 512 for config F; e.g. 2048 and 128 for a CPU-sized model).
        channel_max: see ``channel_base``.
        condition_resampling: conditional mode: how the mask reaches coarser layers, ``"area"`` (class
            fractions) or ``"nearest"``.

    ``forward(z)`` returns the generated tensor so the network drops into code written for any
    ``z -> image`` generator (sample grids, the paired generation inferer); ``return_features=True``
    returns a :class:`StyleGAN2Output` with the per-layer feature maps.

    Example::

        g = StyleGAN2Generator(64, image_channels=1, mask_channels=1, mode="paired", z_dim=64, w_dim=64,
                               channel_base=1024, channel_max=64)
        out = g(torch.randn(2, 64), noise_mode="const", return_features=True)
        out.image.shape            # (2, 2, 64, 64)
        [f.shape[-1] for f in out.features]   # [4, 4, 8, 8, 16, 16, 32, 32, 64, 64]

        c = StyleGAN2Generator(64, image_channels=1, mask_channels=6, mode="conditional", z_dim=64, w_dim=64)
        c(torch.randn(2, 64), mask=labels)  # labels (2, 1, 64, 64) int in 0..5, or encoded (2, 6, 64, 64)
    """

    def __init__(
        self,
        image_size: int,
        image_channels: int = 1,
        mask_channels: int = 0,
        mode: str = "image",
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 32768,
        channel_max: int = 512,
        condition_resampling: str = "area",
    ) -> None:
        super().__init__()
        self.image_size = _check_resolution("StyleGAN2Generator", image_size)
        self.out_channels = mode_channels(mode, image_channels, mask_channels)
        if condition_resampling not in CONDITION_RESAMPLING:
            raise ValueError(
                f"condition_resampling must be one of {CONDITION_RESAMPLING}, got {condition_resampling!r}."
            )
        #: mask channels concatenated at every synthesis layer (conditional mode), else 0
        self.cond_channels = int(mask_channels) if mode == "conditional" else 0
        self.condition_resampling = condition_resampling
        self._config = {
            "image_size": self.image_size,
            "image_channels": int(image_channels),
            "mask_channels": int(mask_channels),
            "mode": mode,
            "z_dim": int(z_dim),
            "w_dim": int(w_dim),
            "mapping_layers": int(mapping_layers),
            "channel_base": int(channel_base),
            "channel_max": int(channel_max),
        }
        if self.cond_channels:  # older exports have no such key
            self._config["condition_resampling"] = condition_resampling
        self.mode = mode
        self.image_channels = int(image_channels)
        self.mask_channels = int(mask_channels)
        self.z_dim = int(z_dim)
        self.w_dim = int(w_dim)
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        log2 = int(math.log2(self.image_size))
        self.resolutions = [2**i for i in range(2, log2 + 1)]
        self.num_ws = 2 * log2 - 2
        ch = {r: stylegan2_channels(r, channel_base, channel_max) for r in self.resolutions}
        self.const = nn.Parameter(torch.randn(ch[4], 4, 4))
        self.convs0 = nn.ModuleList()  # upsampling layer of each block (None-like Identity for 4 x 4)
        self.convs1 = nn.ModuleList()
        self.to_images = nn.ModuleList()
        cc = self.cond_channels
        for r in self.resolutions:
            if r == 4:
                self.convs0.append(nn.Identity())
            else:
                self.convs0.append(StyleLayer(ch[r // 2] + cc, ch[r], w_dim, r, up=True))
            self.convs1.append(StyleLayer(ch[r] + cc, ch[r], w_dim, r))
            self.to_images.append(ToImage(ch[r] + cc, self.out_channels, w_dim))
        self.upsample = FIRUpsample2d()
        self.feature_channels = [c for r in self.resolutions for c in (ch[r], ch[r])]

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-friendly), stored in checkpoints and exports."""
        return dict(self._config)

    def sample_z(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num, z_dim)`` N(0, 1) latents on the network's device."""
        return sample_latents(num, self.z_dim, generator=generator, distribution="normal").to(self.const.device)

    def map(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        style_mixing_prob: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``z -> ws (B, num_ws, w_dim)``; with ``style_mixing_prob`` > 0 (training), each sample switches,
        with that probability, to the w of a second random z from a random layer on (style mixing regularisation)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"StyleGAN2Generator: z must be (B, {self.z_dim}), got {tuple(z.shape)}.")
        w = self.mapping(z, truncation_psi)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if style_mixing_prob > 0:
            b = z.shape[0]
            cutoff = torch.randint(1, self.num_ws, (b,), generator=generator).to(z.device)
            use = (torch.rand(b, generator=generator) < style_mixing_prob).to(z.device)
            cutoff = torch.where(use, cutoff, torch.full_like(cutoff, self.num_ws))
            w2 = self.mapping(torch.randn(b, self.z_dim, generator=generator).to(z), truncation_psi, update_w_avg=False)
            layer = torch.arange(self.num_ws, device=z.device)[None, :, None]
            ws = torch.where(layer >= cutoff[:, None, None], w2[:, None], ws)
        return ws

    def condition(self, mask: torch.Tensor | None, batch: int) -> dict[int, torch.Tensor] | None:
        """The conditioning mask at every synthesis resolution: ``{r: (B, M, r, r)}`` (``None`` unconditional).

        Args:
            mask: ``(B or 1, M, R, R)`` encoded mask channels in [-1, 1] (the paired encoding), or integer
                labels ``(B or 1, 1, R, R)`` in ``0 .. K - 1`` (encoded here); ``R`` is ``image_size``.
            batch: the latents' batch size (a single mask is shared by all of them).

        Raises:
            ValueError: a mask in unconditional mode, none in conditional mode, or a mask of another size,
                channel count or class count.
        """
        if not self.cond_channels:
            if mask is not None:
                raise ValueError(f"StyleGAN2Generator: a {self.mode}-mode generator takes no mask.")
            return None
        if mask is None:
            raise ValueError(
                "StyleGAN2Generator: a conditional (C-SG) generator needs the label mask it draws an image for "
                "(mask=...)."
            )
        mask = torch.as_tensor(mask).as_subclass(torch.Tensor).to(self.const.device)
        if mask.ndim != 4 or mask.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"StyleGAN2Generator: the mask must be (B, {self.cond_channels}, {self.image_size}, {self.image_size}) "
                f"(or integer labels (B, 1, {self.image_size}, {self.image_size})), got {tuple(mask.shape)}; the "
                f"generator was trained at {self.image_size} x {self.image_size}."
            )
        if not mask.dtype.is_floating_point:
            mask = encode_condition(mask, self.cond_channels)
        if mask.shape[1] != self.cond_channels:
            raise ValueError(
                f"StyleGAN2Generator: the mask has {mask.shape[1]} channels but the generator was trained on "
                f"{self.cond_channels} mask channels."
            )
        if mask.shape[0] not in (1, batch):
            raise ValueError(f"StyleGAN2Generator: {mask.shape[0]} masks for {batch} latents (give 1 or {batch}).")
        mask = mask.float().expand(batch, -1, -1, -1)
        return {r: resize_condition(mask, r, self.condition_resampling) for r in self.resolutions}

    def noise_shapes(self) -> list[tuple[int, int]]:
        """Spatial size of each synthesis layer's noise input, in layer order (every convolution: 1 + 2 per block after 4 x 4)."""
        sizes = [4]
        for k in range(1, len(self.convs1)):
            sizes += [4 * 2**k] * 2
        return [(r, r) for r in sizes]

    def const_noise(self) -> list[torch.Tensor]:
        """The constant noise of every synthesis layer (``(1, 1, r, r)`` each, layer order): what ``"const"`` uses."""
        layers = [self.convs1[0]] + [c for pair in zip(self.convs0[1:], self.convs1[1:]) for c in pair]
        return [layer.noise.const_noise for layer in layers]

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str | None = None,
        return_features: bool = False,
        noise: Sequence[torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor | StyleGAN2Output:
        """``ws (B, num_ws, w_dim)`` (or ``(B, w_dim)``, broadcast) -> image, or :class:`StyleGAN2Output`.

        ``noise_mode`` ``None`` means ``"random"`` in training mode and ``"const"`` in eval mode, so an
        eval-mode generator is a deterministic function of its latents (reproducible generation per seed).
        ``noise``: explicit per-layer noise (``(B or 1, 1, r, r)`` each, the sizes of :meth:`noise_shapes`),
        e.g. optimised by a projector; it overrides ``noise_mode``.
        ``mask``: conditional mode only, see :meth:`condition`; it is concatenated with the output of every
        synthesis layer (and the learned constant) before the next convolution and every image output.
        ``features`` hold the layers' own maps, without the mask channels.
        """
        if noise is not None:
            shapes = [tuple(n.shape[-2:]) for n in noise]
            if shapes != self.noise_shapes():
                raise ValueError(f"StyleGAN2Generator: noise must have sizes {self.noise_shapes()}, got {shapes}.")
        layer_noise = iter(noise) if noise is not None else None

        def next_noise():
            return next(layer_noise) if layer_noise is not None else None

        if noise_mode is None:
            noise_mode = "random" if self.training else "const"
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
        if ws.ndim == 2:
            ws = ws[:, None].repeat(1, self.num_ws, 1)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"StyleGAN2Generator: ws must be (B, {self.num_ws}, {self.w_dim}) or (B, {self.w_dim}), "
                f"got {tuple(ws.shape)}."
            )
        masks = self.condition(mask, ws.shape[0])

        def cond(x: torch.Tensor, r: int) -> torch.Tensor:
            return x if masks is None else torch.cat([x, masks[r].to(x.dtype)], dim=1)

        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        features: list[torch.Tensor] = []
        image = None
        for k, (r, conv0, conv1, to_image) in enumerate(
            zip(self.resolutions, self.convs0, self.convs1, self.to_images)
        ):
            if k == 0:
                features.append(x)
                x = conv1(cond(x, r), ws[:, 0], noise_mode, next_noise())
            else:
                x = conv0(cond(x, r // 2), ws[:, 2 * k - 1], noise_mode, next_noise())
                features.append(x)
                x = conv1(cond(x, r), ws[:, 2 * k], noise_mode, next_noise())
            features.append(x)
            y = to_image(cond(x, r), ws[:, 2 * k + 1])
            image = y if image is None else self.upsample(image) + y
        if return_features:
            return StyleGAN2Output(image=image, features=features, ws=ws)
        return image

    def forward(
        self,
        z: torch.Tensor | None = None,
        ws: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str | None = None,
        return_features: bool = False,
        noise: Sequence[torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor | StyleGAN2Output:
        """Generate from ``z`` ``(B, z_dim)``, or from ``ws`` (w ``(B, w_dim)`` or w+ ``(B, num_ws, w_dim)``).

        ``noise_mode``: ``"random"``, ``"const"`` or ``"none"``; ``None`` picks ``"random"`` in training mode
        and ``"const"`` in eval mode. ``noise``: explicit per-layer noise (see :meth:`synthesis`).
        ``mask``: the label mask of a conditional generator (see :meth:`condition`).
        """
        if (z is None) == (ws is None):
            raise ValueError("StyleGAN2Generator: give exactly one of z or ws.")
        if ws is None:
            ws = self.map(z, truncation_psi)
        return self.synthesis(ws, noise_mode, return_features, noise, mask=mask)


class _DiscriminatorBlock(nn.Module):
    """Residual block: two 3 x 3 convs (the second downsampling) plus a 1 x 1 downsampling skip, / sqrt(2).

    In conditional mode ``in_channels`` counts the mask channels concatenated to its input.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: from-image, residual blocks down to 4 x 4, minibatch stddev, conv, 2 FC.

    Args:
        image_size: input side (power of two in [8, 1024]).
        image_channels / mask_channels / mode: as :class:`StyleGAN2Generator`; the discriminator judges
            the same channels the generator draws. Conditional mode (C-SG, Vu et al. Fig. 2(b)(d)): it judges
            the pair ``image + mask`` (the mask concatenated before from-image) and concatenates the mask,
            resampled, with the input of every residual block.
        channel_base / channel_max: feature maps, as the generator.
        mbstd_group_size: minibatch standard deviation group (4; 0 disables it).
        condition_resampling: conditional mode: ``"area"`` or ``"nearest"`` resampling of the mask.

    Returns ``(B, 1)`` logits.
    """

    def __init__(
        self,
        image_size: int,
        image_channels: int = 1,
        mask_channels: int = 0,
        mode: str = "image",
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        condition_resampling: str = "area",
    ) -> None:
        super().__init__()
        self.image_size = _check_resolution("StyleGAN2Discriminator", image_size)
        start, stop = mode_channel_range(mode, image_channels, mask_channels)
        self.in_channels = stop - start
        if condition_resampling not in CONDITION_RESAMPLING:
            raise ValueError(
                f"condition_resampling must be one of {CONDITION_RESAMPLING}, got {condition_resampling!r}."
            )
        self.cond_channels = int(mask_channels) if mode == "conditional" else 0
        self.condition_resampling = condition_resampling
        self._config = {
            "image_size": self.image_size,
            "image_channels": int(image_channels),
            "mask_channels": int(mask_channels),
            "mode": mode,
            "channel_base": int(channel_base),
            "channel_max": int(channel_max),
            "mbstd_group_size": int(mbstd_group_size),
        }
        if self.cond_channels:
            self._config["condition_resampling"] = condition_resampling
        log2 = int(math.log2(self.image_size))
        ch = {2**i: stylegan2_channels(2**i, channel_base, channel_max) for i in range(2, log2 + 1)}
        self.from_image = FromImage(self.in_channels, ch[self.image_size])
        cc = self.cond_channels
        self.blocks = nn.Sequential(*[_DiscriminatorBlock(ch[2**i] + cc, ch[2 ** (i - 1)]) for i in range(log2, 2, -1)])
        self.mbstd = MinibatchStdDev(mbstd_group_size) if mbstd_group_size > 0 else None
        c4 = ch[4]
        self.conv = EqualizedConv2d(c4 + (1 if self.mbstd is not None else 0), c4, 3, activation=True)
        self.fc = EqualizedLinear(c4 * 16, c4, activation=True)
        self.out = EqualizedLinear(c4, 1)

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"StyleGAN2Discriminator: expected (B, {self.in_channels}, {self.image_size}, {self.image_size}) "
                f"({self._config['mode']} mode), got {tuple(x.shape)}."
            )
        if not self.cond_channels:
            x = self.blocks(self.from_image(x))
        else:  # the pair already holds the mask (before from-image); again before every block
            mask = x[:, self.in_channels - self.cond_channels :]
            x = self.from_image(x)
            for block in self.blocks:
                x = block(torch.cat([x, resize_condition(mask, x.shape[-1], self.condition_resampling).to(x.dtype)], 1))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))
