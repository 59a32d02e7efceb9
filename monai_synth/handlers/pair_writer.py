"""Write the generated pairs an evaluator produces, named by their latent seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_synth.data import orientation as orient
from monai_synth.utils.visualize import to_uint8

__all__ = ["GeneratedPairWriter"]


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class GeneratedPairWriter:
    """After each evaluator iteration, save every decoded pair as ``seed_XXXXXXXX_{image,label}.nii.gz``.

    Expects ``engine.state.output`` to be decollated (a list of dicts, one per pair) holding the image
    under ``image_key`` (``(C, H, W)`` in [-1, 1]) and the label map under ``label_key``
    (``(1, H, W)``), and ``engine.state.batch`` the matching items with their ``seed``.

    Args:
        output_dir: folder of the pairs.
        image_key: key of the decoded image.
        label_key: key of the decoded label map.
        save_png: also write 8-bit PNG previews.
        map_keys: keys of per-pixel float maps written when present, as ``<name>_<key without "gen_">.nii.gz``
            (the style interpreter's ``gen_uncertainty``).
        generator_config: the generator export's config (``GenerationParts.config``): files follow its
            orientation record (:mod:`monai_synth.data.orientation`) so that they load like the training
            sources; ``None`` or an export without the record writes the pre-contract layout (with a warning).
            Images with ``C > 1`` channels are written one file per channel (``<name>_image_c0.nii.gz``, ...).
    """

    def __init__(
        self,
        output_dir: str | Path,
        image_key: str = "gen_image",
        label_key: str = "gen_label",
        save_png: bool = False,
        map_keys: tuple[str, ...] = ("gen_uncertainty",),
        generator_config: dict[str, Any] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.image_key = image_key
        self.label_key = label_key
        self.save_png = save_png
        self.map_keys = tuple(map_keys)
        self.written: list[Path] = []
        self.orientation = orient.export_orientation(generator_config or {}, "GeneratedPairWriter's generator_config")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs, batch = engine.state.output, engine.state.batch
        if not isinstance(outputs, list) or not isinstance(batch, list):
            raise ValueError("GeneratedPairWriter needs a decollating evaluator (decollate=True).")
        for out, item in zip(outputs, batch):
            name = f"seed_{int(_numpy(item['seed'])):08d}"
            if self.image_key not in out and self.label_key not in out:
                raise ValueError(
                    f"GeneratedPairWriter: the output holds neither {self.image_key!r} nor {self.label_key!r}."
                )
            if self.image_key in out:  # image-only generators (StyleGAN2 image mode) write no label
                image = _numpy(out[self.image_key]).astype(np.float32)
                self.written += orient.save_image(self.output_dir / f"{name}_image.nii.gz", image, self.orientation)
                if self.save_png:
                    orient.save_preview(self.output_dir / f"{name}_image.png", to_uint8(image[0]), self.orientation)
            if self.label_key in out:  # mask-only generators (M-SG) write no image
                label = _numpy(out[self.label_key]).astype(np.uint8)
                path = orient.save_label(self.output_dir / f"{name}_label.nii.gz", label, self.orientation)
                if self.image_key not in out:
                    self.written.append(path)
                if self.save_png:
                    orient.save_preview(self.output_dir / f"{name}_label.png", label[0], self.orientation)
            for key in self.map_keys:
                if key in out:
                    suffix = key.removeprefix("gen_")
                    orient.save_map(self.output_dir / f"{name}_{suffix}.nii.gz", _numpy(out[key]), self.orientation)
