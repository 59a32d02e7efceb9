"""Sample grids from fixed latents, so training progress can be watched image by image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_synth.handlers.quality import real_pairs_sample
from monai_synth.transforms import DecodePairedd
from monai_synth.utils.io import save_png_atomic
from monai_synth.utils.visualize import condition_grid, pair_grid

__all__ = ["PairedSampleGridSaver"]


class PairedSampleGridSaver:
    """Every ``interval`` iterations, render the generator's pairs for fixed latents to a PNG grid.

    Files: ``<output_dir>/iteration_XXXXXXX.png`` and ``<output_dir>/latest.png`` (written atomically).
    Each cell shows the image and the image with the decoded mask in colour.

    Args:
        generator: network mapping ``(N, latent_dim)`` latents to ``(N, C + M, H, W)`` pairs in [-1, 1].
        latents: ``(N, latent_dim)`` fixed latents (e.g. ``latents_from_seeds(range(16), 400)``).
        output_dir: folder of the grids.
        image_channels: ``C``.
        num_classes: ``K`` (decides the mask decoding).
        interval: iterations between grids; a last grid is always written at the end.
        columns: cells per row.
        mode: what the generator draws: ``"paired"`` (image + mask), ``"image"`` (image only: cells show
            the image twice, without overlay), ``"mask"`` (mask channels only: labels on black) or
            ``"conditional"`` (C-SG: one row per fixed real mask, ``[mask | image for latent 1 | ...]`` for
            the first ``latents_per_mask`` latents).
        masks: conditional mode: the fixed masks, encoded ``(N, M, H, W)``, or a dataset of pairs to draw
            ``num_masks`` of them from (with ``seed``) when the first grid is rendered.
        num_masks: masks drawn from a dataset.
        latents_per_mask: latents per mask row.
        seed: seed of the mask draw.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        latents: torch.Tensor,
        output_dir: str | Path,
        image_channels: int,
        num_classes: int,
        interval: int = 200,
        columns: int = 4,
        mode: str = "paired",
        masks: torch.Tensor | Sequence[dict[str, Any]] | None = None,
        num_masks: int = 4,
        latents_per_mask: int = 8,
        seed: int = 0,
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.generator = generator
        self.latents = latents
        self.output_dir = Path(output_dir)
        if mode == "conditional" and masks is None:
            raise ValueError("PairedSampleGridSaver: conditional mode needs the fixed masks (masks=...).")
        self.image_channels = int(image_channels)
        self.decode = DecodePairedd(
            "pair",
            "image",
            "label",
            image_channels=image_channels,
            num_classes=num_classes,
            mode="paired" if mode == "conditional" else mode,
        )
        self._mask_source = masks
        self.masks: torch.Tensor | None = None
        self.num_masks = int(num_masks)
        self.latents_per_mask = int(latents_per_mask)
        self.seed = int(seed)
        self.mode = mode
        self.interval = int(interval)
        self.columns = columns
        self.last_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def _fixed_masks(self) -> torch.Tensor:
        if self.masks is None:
            source = self._mask_source
            if isinstance(source, torch.Tensor):
                self.masks = source.float().cpu()
            else:
                self.masks = real_pairs_sample(source, self.num_masks, self.seed)[:, self.image_channels :]
        return self.masks

    @torch.no_grad()
    def _render_conditional(self, device: torch.device | str):
        masks = self._fixed_masks()
        latents = self.latents[: self.latents_per_mask]
        n, per = len(masks), len(latents)
        was_training = self.generator.training
        self.generator.eval()
        try:
            images = self.generator(
                latents.repeat(n, 1).to(device), mask=masks.repeat_interleave(per, dim=0).to(device)
            ).float()
        finally:
            self.generator.train(was_training)
        pairs = torch.cat([images[::per].cpu(), masks], dim=1)
        labels = self.decode({"pair": pairs})["label"]
        return condition_grid(labels, images.cpu().reshape(n, per, *images.shape[1:]))

    @torch.no_grad()
    def render(self, device: torch.device | str = "cpu"):
        if self.mode == "conditional":
            return self._render_conditional(device)
        was_training = self.generator.training
        self.generator.eval()
        try:
            pairs = self.generator(self.latents.to(device)).float().cpu()
        finally:
            self.generator.train(was_training)
        out = self.decode({"pair": pairs})
        images = out.get("image", torch.full_like(pairs[:, :1], -1.0))
        labels = out.get("label", torch.zeros_like(pairs[:, :1], dtype=torch.int64))
        return pair_grid(images, labels, columns=self.columns)

    def __call__(self, engine: Engine) -> None:
        grid = self.render(engine.state.device)
        path = self.output_dir / f"iteration_{engine.state.iteration:07d}.png"
        save_png_atomic(path, grid)
        save_png_atomic(self.output_dir / "latest.png", grid)
        self.last_path = path
