"""Sample grids from fixed latents, so training progress can be watched image by image."""

from __future__ import annotations

from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monai_synth.transforms import DecodePairedd
from monai_synth.utils.io import save_png_atomic
from monai_synth.utils.visualize import pair_grid

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
            the image twice, without overlay) or ``"mask"`` (mask channels only: labels on black).
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
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.generator = generator
        self.latents = latents
        self.output_dir = Path(output_dir)
        self.decode = DecodePairedd(
            "pair", "image", "label", image_channels=image_channels, num_classes=num_classes, mode=mode
        )
        self.mode = mode
        self.interval = int(interval)
        self.columns = columns
        self.last_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    @torch.no_grad()
    def render(self, device: torch.device | str = "cpu"):
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
