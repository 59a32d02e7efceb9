"""SemanticGAN generator (Li et al., "Semantic Segmentation with Generative Models", CVPR 2021).

A :class:`~monai_synth.networks.nets.StyleGAN2Generator` (image mode) with a second output branch: at every
resolution a modulated 1 x 1 "to-mask" layer reads the same synthesis features as the to-image layer and
its ``K`` logits are accumulated over resolutions exactly like the skip-architecture image outputs
(upsample the running sum, add the new level). The synthesis layers, noise, mapping network and image
outputs are the parent's own modules; only ``to_masks`` is new.

``forward(z)`` / ``synthesis(ws)`` return the paired encoding ``(B, C + M, S, S)`` (image channels, then
the soft mask: ``2 p(foreground) - 1`` for ``K == 2``, else ``2 softmax - 1`` per class), so the network
drops into everything written for a paired generator (sample grids, quality handler, the paired-data
factory, :class:`~monai_synth.apps.datasetgan.GANProjector`). :meth:`SemanticStyleGAN2Generator.synthesize`
returns the image and the raw logits, optionally with the mask branch cut off from the synthesis graph
(``detach_mask_input``): how the trainer keeps ``D_m``'s gradient out of the image synthesis branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from monai_synth.networks.blocks.modulated import ToImage

from .stylegan2 import StyleGAN2Generator, StyleGAN2Output, stylegan2_channels

__all__ = ["SemanticStyleGAN2Generator", "encode_mask_logits"]


def encode_mask_logits(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, S, S)`` logits -> the soft paired-encoding mask channels in [-1, 1].

    ``K == 2``: one channel ``2 softmax[:, 1] - 1`` (the binary encoding of
    :class:`~monai_synth.transforms.EncodePaired`); ``K > 2``: ``2 softmax - 1`` (its one-hot encoding).
    A confident prediction equals the encoding of its argmax label.
    """
    probabilities = torch.softmax(logits.float(), dim=1).to(logits.dtype)
    if logits.shape[1] == 2:
        probabilities = probabilities[:, 1:]
    return probabilities * 2 - 1


class SemanticStyleGAN2Generator(StyleGAN2Generator):
    """StyleGAN2 generator with an image branch and a ``K``-class mask branch (SemanticGAN).

    Args:
        image_size: output side, a power of two in [8, 1024].
        image_channels: image channels ``C``.
        num_classes: classes ``K`` of the mask branch, background included (>= 2).
        z_dim, w_dim, mapping_layers, channel_base, channel_max: as :class:`StyleGAN2Generator`.
        mode, mask_channels: stored in :meth:`get_config` for the paired-generator contract; must be
            ``"paired"`` and ``1 if K == 2 else K`` when given.

    Raises:
        ValueError: ``num_classes < 2``, or ``mode`` / ``mask_channels`` that contradict ``num_classes``.

    Example::

        g = SemanticStyleGAN2Generator(32, image_channels=1, num_classes=6, z_dim=32, w_dim=32,
                                       channel_base=256, channel_max=32)
        image, logits = g.synthesize(g.map(torch.randn(2, 32)))   # (2, 1, 32, 32), (2, 6, 32, 32)
        g(torch.randn(2, 32)).shape                               # (2, 7, 32, 32): image + soft one-hot mask
    """

    def __init__(
        self,
        image_size: int,
        image_channels: int = 1,
        num_classes: int = 2,
        z_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 32768,
        channel_max: int = 512,
        mode: str = "paired",
        mask_channels: int | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"SemanticStyleGAN2Generator: num_classes must be an integer >= 2, got {num_classes!r}.")
        num_classes = int(num_classes)
        encoded = 1 if num_classes == 2 else num_classes
        if mode != "paired" or (mask_channels is not None and int(mask_channels) != encoded):
            raise ValueError(
                f"SemanticStyleGAN2Generator draws paired outputs with {encoded} mask channel(s) for {num_classes} "
                f"classes; got mode={mode!r}, mask_channels={mask_channels!r}."
            )
        super().__init__(
            image_size,
            image_channels=image_channels,
            mask_channels=0,
            mode="image",
            z_dim=z_dim,
            w_dim=w_dim,
            mapping_layers=mapping_layers,
            channel_base=channel_base,
            channel_max=channel_max,
        )
        self.num_classes = num_classes
        self.mode = "paired"
        self.mask_channels = encoded
        self.out_channels = self.image_channels + encoded
        self._config.update({"mode": "paired", "mask_channels": encoded, "num_classes": num_classes})
        self.to_masks = nn.ModuleList(
            [ToImage(stylegan2_channels(r, channel_base, channel_max), num_classes, w_dim) for r in self.resolutions]
        )

    def image_branch_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the mask branch's (mapping, constant, synthesis layers, image outputs)."""
        mask_ids = {id(p) for p in self.to_masks.parameters()}
        return [p for p in self.parameters() if id(p) not in mask_ids]

    def synthesize(
        self,
        ws: torch.Tensor,
        noise_mode: str | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        detach_mask_input: bool = False,
        return_features: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, StyleGAN2Output]:
        """``ws`` -> ``(image (B, C, S, S), mask logits (B, K, S, S))`` [, the parent's output with features].

        Args:
            ws: ``(B, num_ws, w_dim)`` or ``(B, w_dim)``.
            noise_mode, noise: as :meth:`StyleGAN2Generator.synthesis`.
            detach_mask_input: the mask branch reads detached synthesis features and styles, so a loss on
                the logits reaches only ``to_masks`` (the SemanticGAN rule for ``D_m``).
            return_features: also return the parent's :class:`StyleGAN2Output` (image, features, ws).
        """
        out = super().synthesis(ws, noise_mode=noise_mode, return_features=True, noise=noise)
        logits = None
        for k, to_mask in enumerate(self.to_masks):
            x, w = out.features[2 * k + 1], out.ws[:, 2 * k + 1]  # the input of this level's to-image layer
            if detach_mask_input:
                x, w = x.detach(), w.detach()
            y = to_mask(x, w)
            logits = y if logits is None else self.upsample(logits) + y
        if return_features:
            return out.image, logits, out
        return out.image, logits

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str | None = None,
        return_features: bool = False,
        noise: Sequence[torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor | StyleGAN2Output:
        """The paired encoding ``(B, C + M, S, S)``: image then :func:`encode_mask_logits` (or a
        :class:`StyleGAN2Output` holding it with ``return_features``). ``mask`` must be ``None``: the
        SemanticGAN generator draws its masks, it is not conditioned on one."""
        if mask is not None:
            raise ValueError("SemanticStyleGAN2Generator draws its own masks: it takes no conditioning mask.")
        image, logits, out = self.synthesize(ws, noise_mode=noise_mode, noise=noise, return_features=True)
        pair = torch.cat([image, encode_mask_logits(logits)], dim=1)
        if return_features:
            return StyleGAN2Output(image=pair, features=out.features, ws=out.ws)
        return pair

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)
