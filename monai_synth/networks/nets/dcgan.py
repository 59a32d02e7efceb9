"""Paired DCGAN of Neff et al. (2017): one generator draws an image *and* its segmentation mask.

Neff, Payer, Stern, Urschler, "Generative Adversarial Network based Synthesis for Supervised Medical
Image Segmentation", OAGM/AAPR 2017. The networks are a DCGAN (Radford et al., 2016) whose generator
outputs the image channels and the mask channels together, and whose discriminator judges the
image-mask pair. Inputs and outputs follow the paired encoding of ``docs/DESIGN.md``: ``C`` image
channels followed by ``M`` mask channels (``M = 1`` for a binary mask, ``M = K`` one-hot channels
otherwise), all in [-1, 1].

Paper settings (the defaults here): 128 x 128 images, ``z`` of dimension 400 drawn from U[-1, 1],
generator feature maps (512, 256, 128, 128, 128), discriminator feature maps (128, 128, 256, 512, 512),
5 x 5 kernels, weights N(0, 0.05). Smaller settings for CPU work the same way, e.g.
``PairedDCGANGenerator(image_size=32, channels=(128, 64, 32))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution
from torch import nn

from monai_synth.networks.blocks import MinibatchStdDev

__all__ = [
    "MIN_FEATURE_SIZE",
    "PairedDCGANGenerator",
    "PairedDCGANDiscriminator",
    "init_dcgan_weights",
]

MIN_FEATURE_SIZE = 4
"""Smallest feature map side (pixels) allowed at the coarse end of either network (4 x 4 in the paper)."""


def _check_architecture(owner: str, image_size: int, channels: Sequence[int], kernel_size: int) -> tuple[int, ...]:
    """Validate the shared settings and return ``channels`` as a tuple of ints.

    Raises:
        ValueError: ``image_size`` not a power of two or too small for ``len(channels)`` stride-2 layers,
            empty or non-positive ``channels``, even or non-positive ``kernel_size``.
    """
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ValueError(f"{owner}: image_size must be a positive integer, got {image_size!r}.")
    image_size = int(image_size)
    if image_size & (image_size - 1):
        raise ValueError(
            f"{owner}: image_size must be a power of two (every layer halves or doubles the resolution), "
            f"got {image_size}; resize the data to e.g. 64 or 128."
        )
    channels = tuple(channels)
    if not channels or any(isinstance(c, bool) or int(c) != c or c < 1 for c in channels):
        raise ValueError(f"{owner}: channels must be a non-empty sequence of positive integers, got {channels!r}.")
    channels = tuple(int(c) for c in channels)
    coarse = image_size // 2 ** len(channels)
    if coarse < MIN_FEATURE_SIZE:
        raise ValueError(
            f"{owner}: image_size={image_size} is too small for len(channels)={len(channels)} stride-2 layers "
            f"(coarsest map would be {image_size / 2 ** len(channels):g} px, need >= {MIN_FEATURE_SIZE}); "
            f"use image_size >= {MIN_FEATURE_SIZE * 2 ** len(channels)} or fewer channels."
        )
    if isinstance(kernel_size, bool) or int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"{owner}: kernel_size must be an odd positive integer (5 in the paper), got {kernel_size!r}; "
            "odd kernels keep 'same' padding exact so each layer halves or doubles the size."
        )
    return channels


def init_dcgan_weights(module: nn.Module, std: float = 0.05) -> nn.Module:
    """Initialise ``module`` and its children in place, DCGAN style; returns ``module``.

    - Convolution, transposed convolution and linear weights: N(0, ``std``). Neff et al. used
      ``std = 0.05`` for all convolutional layers (Radford et al. used 0.02).
    - Batch-norm scales: N(1, ``std``), as in the reference PyTorch DCGAN. The paper only states the
      convolution initialisation; drawing BN scales from N(0, std) too would start every BN layer
      close to zeroing its output and flip the sign of half the channels, so we centre them on 1.
    - All biases (and batch-norm shifts): 0.

    Args:
        module: network (or single layer) to initialise.
        std: standard deviation of the normal distributions.

    Returns:
        ``module``, for chaining (``init_dcgan_weights(net)`` or ``net.apply(init_dcgan_weights)``).

    Raises:
        ValueError: ``std`` is not positive.
    """
    if not std > 0:
        raise ValueError(f"init_dcgan_weights: std must be > 0, got {std}.")
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):  # Conv1-3d and ConvTranspose1-3d
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, mean=1.0, std=std)
            nn.init.zeros_(m.bias)
    return module


class PairedDCGANGenerator(nn.Module):
    """DCGAN generator producing image and mask channels together (Neff et al., 2017).

    ``z (B, latent_dim)`` -> linear -> ``(B, channels[0], s0, s0)`` with ``s0 = image_size / 2**len(channels)``
    -> BN + ReLU -> ``len(channels) - 1`` fractionally strided 5 x 5 convolutions (stride 2) through
    ``channels[1:]``, each with BN + ReLU -> a last fractionally strided convolution to ``out_channels``
    -> tanh. Every transposed convolution doubles the resolution, so the output is
    ``(B, out_channels, image_size, image_size)`` in [-1, 1].

    Args:
        image_size: output side ``H = W``; a power of two with ``image_size / 2**len(channels) >= 4``.
        out_channels: image channels + mask channels of the paired encoding (e.g. 2 = 1 image + 1 binary
            mask; 5 = 1 image + 4 one-hot classes); see ``monai_synth.transforms.mask_channels``.
        latent_dim: length of ``z`` (400 in the paper).
        channels: feature maps from the coarsest layer up ((512, 256, 128, 128, 128) in the paper);
            its length sets the number of layers.
        kernel_size: odd convolution kernel size (5 in the paper).

    Raises:
        ValueError: invalid ``image_size`` / ``channels`` / ``kernel_size`` combination, ``out_channels < 1``
            or ``latent_dim < 1``.

    Example::

        G = PairedDCGANGenerator(image_size=128, out_channels=2)
        pairs = G(monai_synth.networks.latents.latents_from_seeds(range(16), latent_dim=400))   # (16, 2, 128, 128) in [-1, 1]
    """

    def __init__(
        self,
        image_size: int = 128,
        out_channels: int = 2,
        latent_dim: int = 400,
        channels: Sequence[int] = (512, 256, 128, 128, 128),
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        channels = _check_architecture(owner, image_size, channels, kernel_size)
        for name, value in (("out_channels", out_channels), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}.")
        self.image_size = int(image_size)
        self.out_channels = int(out_channels)
        self.latent_dim = int(latent_dim)
        self.channels = channels
        self.kernel_size = int(kernel_size)
        self.start_size = self.image_size // 2 ** len(channels)
        self.config: dict[str, Any] = {
            "image_size": self.image_size,
            "out_channels": self.out_channels,
            "latent_dim": self.latent_dim,
            "channels": list(channels),
            "kernel_size": self.kernel_size,
        }

        # Biases are left out wherever batch norm follows: its shift makes them redundant.
        self.project = nn.Linear(self.latent_dim, channels[0] * self.start_size**2, bias=False)
        self.project_norm = nn.Sequential(nn.BatchNorm2d(channels[0]), nn.ReLU())
        self.upsample = nn.Sequential(
            *(
                Convolution(
                    spatial_dims=2,
                    in_channels=c_in,
                    out_channels=c_out,
                    strides=2,
                    kernel_size=self.kernel_size,
                    is_transposed=True,
                    act="RELU",
                    norm="BATCH",
                    bias=False,
                )
                for c_in, c_out in zip(channels[:-1], channels[1:], strict=False)
            )
        )
        self.to_output = Convolution(
            spatial_dims=2,
            in_channels=channels[-1],
            out_channels=self.out_channels,
            strides=2,
            kernel_size=self.kernel_size,
            is_transposed=True,
            conv_only=True,
        )
        self.output_act = nn.Tanh()
        init_dcgan_weights(self)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (a copy), e.g. to store beside a checkpoint and compare on load."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self.config.items()}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generate image-mask pairs.

        Args:
            z: latents ``(B, latent_dim)`` (``(B, latent_dim, 1, 1)`` is accepted too), U[-1, 1] as in training.

        Returns:
            ``(B, out_channels, image_size, image_size)`` in [-1, 1]: image channels, then mask channels.

        Raises:
            ValueError: ``z`` does not have shape ``(B, latent_dim)``.
        """
        if z.ndim == 4 and z.shape[2] == 1 and z.shape[3] == 1:  # written out so that torch.jit.script compiles it
            z = z.flatten(1)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"PairedDCGANGenerator: expected latents of shape (B, latent_dim={self.latent_dim}), got "
                f"{list(z.shape)}; draw them with monai_synth.networks.latents.sample_latents(num, latent_dim={self.latent_dim}) or check the "
                "latent_dim setting."
            )
        x = self.project(z).view(z.shape[0], self.channels[0], self.start_size, self.start_size)
        x = self.project_norm(x)
        x = self.upsample(x)
        return self.output_act(self.to_output(x))


class PairedDCGANDiscriminator(nn.Module):
    """DCGAN discriminator judging image-mask pairs (Neff et al., 2017).

    ``(B, in_channels, image_size, image_size)`` -> ``len(channels)`` strided 5 x 5 convolutions (stride 2)
    through ``channels``, each followed by batch norm (except the first, as in DCGAN) and LeakyReLU(0.2)
    -> flatten -> linear -> one logit per item ``(B, 1)``. Returns logits: apply the sigmoid inside the
    loss (``BCEWithLogitsLoss``), which is numerically safer than a sigmoid output layer.

    Args:
        image_size: input side ``H = W``; a power of two with ``image_size / 2**len(channels) >= 4``.
        in_channels: image channels + mask channels of the paired encoding (must match the generator's
            ``out_channels``).
        channels: feature maps from the input layer down ((128, 128, 256, 512, 512) in the paper).
        kernel_size: odd convolution kernel size (5 in the paper).
        minibatch_std: group size of a minibatch standard deviation layer (``MinibatchStdDev``) before the
            logit, or 0 for none (the paper). Not in Neff et al.; it lets the discriminator see how varied a
            batch is and so counters the mode collapse small DCGANs are prone to.

    Raises:
        ValueError: invalid ``image_size`` / ``channels`` / ``kernel_size`` combination or ``in_channels < 1``.
    """

    def __init__(
        self,
        image_size: int = 128,
        in_channels: int = 2,
        channels: Sequence[int] = (128, 128, 256, 512, 512),
        kernel_size: int = 5,
        minibatch_std: int = 0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        channels = _check_architecture(owner, image_size, channels, kernel_size)
        if isinstance(minibatch_std, bool) or int(minibatch_std) != minibatch_std or minibatch_std < 0:
            raise ValueError(f"{owner}: minibatch_std must be an integer >= 0 (0 = off), got {minibatch_std!r}.")
        if isinstance(in_channels, bool) or int(in_channels) != in_channels or in_channels < 1:
            raise ValueError(f"{owner}: in_channels must be an integer >= 1, got {in_channels!r}.")
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.channels = channels
        self.kernel_size = int(kernel_size)
        self.final_size = self.image_size // 2 ** len(channels)
        self.config: dict[str, Any] = {
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "channels": list(channels),
            "kernel_size": self.kernel_size,
            "minibatch_std": int(minibatch_std),
        }

        self.features = nn.Sequential(
            *(
                Convolution(
                    spatial_dims=2,
                    in_channels=c_in,
                    out_channels=c_out,
                    strides=2,
                    kernel_size=self.kernel_size,
                    act=("leakyrelu", {"negative_slope": 0.2}),
                    norm=None if i == 0 else "BATCH",
                    bias=i == 0,
                )
                for i, (c_in, c_out) in enumerate(zip((self.in_channels, *channels[:-1]), channels, strict=False))
            )
        )
        self.batch_stats = MinibatchStdDev(int(minibatch_std)) if minibatch_std else nn.Identity()
        stats_channels = 1 if minibatch_std else 0
        self.to_logit = nn.Linear((channels[-1] + stats_channels) * self.final_size**2, 1)
        init_dcgan_weights(self)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (a copy), e.g. to store beside a checkpoint and compare on load."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self.config.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score image-mask pairs.

        Args:
            x: paired batch ``(B, in_channels, image_size, image_size)`` in [-1, 1].

        Returns:
            logits ``(B, 1)`` (real > 0 > synthetic once trained).

        Raises:
            ValueError: wrong rank, channel count (names ``in_channels``) or spatial size (names ``image_size``).
        """
        owner = type(self).__name__
        if x.ndim != 4:
            raise ValueError(f"{owner}: expected a batch (B, C, H, W), got shape {tuple(x.shape)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{owner}: input has {x.shape[1]} channels but in_channels={self.in_channels}; it must equal the "
                "image channels + mask channels of the paired encoding (the generator's out_channels)."
            )
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"{owner}: input is {tuple(x.shape[2:])} but image_size={self.image_size}; resize the data or set "
                "image_size to match."
            )
        return self.to_logit(self.batch_stats(self.features(x)).flatten(1))
