"""Segment real images with a GAN inside a MONAI pipeline: project into W+, label with the style interpreter.

:class:`ProjectionSegmentationInferer` is the MONAI ``Inferer`` form of DatasetGAN's project-then-classify
path (:func:`~monai_synth.apps.datasetgan.segment_real_images` is the file-to-file form used by
``segment.json``), so a user's ``SupervisedEvaluator`` can score the GAN as a segmenter with MONAI metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer

from monai_synth.data import orientation as orient
from monai_synth.networks.nets.pixel_classifier import PixelClassifierEnsemble

from .style_interpreter import StyleInterpreterInferer

__all__ = ["ProjectionSegmentationInferer"]

_OUTPUTS = ("probabilities", "label", "all")


class ProjectionSegmentationInferer(Inferer):
    """Real images ``(B, C, S, S)`` in [-1, 1] -> class probabilities ``(B, K, S, S)`` (or every output).

    Each batch is projected into the generator's W+ space (:class:`~monai_synth.apps.datasetgan.GANProjector`,
    gradients enabled inside, so it also runs under an evaluator's ``torch.no_grad``), then the
    projections' features are labelled by the pixel-classifier ensemble given as ``network``
    (:class:`~monai_synth.inferers.StyleInterpreterInferer`). Images are expected as MONAI's default
    ``LoadImage`` returns them (the orientation contract of :mod:`monai_synth.data.orientation`): they are
    turned into the generator's layout before projection and the outputs turned back, so predictions align
    with the user's labels. Intensities must already be scaled like the generator's training data and the
    size must be ``S`` (e.g. ``ScaleIntensityRange`` + ``Resize``).

    Args:
        generator: a :class:`~monai_synth.networks.nets.StyleGAN2Generator` (image or paired mode).
        discriminator: its discriminator for the perceptual term, or ``None`` (pixel loss only).
        orientation: the generator export's orientation record (``config["data"]["orientation"]``);
            ``None`` assumes inputs already in the generator's layout.
        output: ``"probabilities"`` (default; for ``AsDiscrete(argmax=True)`` + ``DiceMetric``),
            ``"label"`` ``(B, 1, S, S)`` majority vote, or ``"all"``: a dict with ``label``,
            ``probabilities``, ``uncertainty (B, 1, S, S)``, ``uncertainty_score (B,)``,
            ``reconstruction (B, C, S, S)`` and ``psnr (B,)``.
        projector_kwargs: :class:`~monai_synth.apps.datasetgan.GANProjector` settings (``num_steps``,
            ``optimize_noise``, ``perceptual_weight``, ``seed``, ...).

    Example::

        inferer = ProjectionSegmentationInferer.from_export("runs/datasetgan/generator.pt", num_steps=300)
        ensemble, _ = load_interpreter("runs/datasetgan/interpreter.pt", "runs/datasetgan/generator.pt")
        evaluator = SupervisedEvaluator(device, loader, ensemble, inferer=inferer, postprocessing=...,
                                        key_val_metric={"dice": MeanDice(...)})
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module | None = None,
        orientation: dict[str, Any] | None = None,
        output: str = "probabilities",
        **projector_kwargs: Any,
    ) -> None:
        super().__init__()
        # imported here: monai_synth.apps builds on monai_synth.inferers, not the other way round
        from monai_synth.apps.datasetgan.projection import GANProjector

        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {list(_OUTPUTS)}, got {output!r}.")
        self.projector = GANProjector(generator, discriminator, **projector_kwargs)
        self.interpreter = StyleInterpreterInferer(generator, latent_kind="w")
        self.orientation = orientation
        self.output = output

    @classmethod
    def from_export(
        cls,
        generator_path: str | Path,
        device: str | torch.device = "cpu",
        checkpoint_path: str | Path | None = None,
        **kwargs: Any,
    ) -> ProjectionSegmentationInferer:
        """Build from a ``datasetgan`` ``generator.pt`` (and its training checkpoint for the discriminator)."""
        from monai_synth.utils.export import load_discriminator, load_generator

        generator, config = load_generator(generator_path, device, bundle="datasetgan", conditional=False)
        discriminator = load_discriminator(checkpoint_path, device) if checkpoint_path is not None else None
        orientation = orient.export_orientation(config, generator_path)
        return cls(generator, discriminator, orientation=orientation, **kwargs)

    def __call__(self, inputs: torch.Tensor, network: PixelClassifierEnsemble, *args: Any, **kwargs: Any):
        """Segment ``inputs (B, C, S, S)`` with the ensemble ``network``; see the class docstring for outputs."""
        images = orient.from_file_layout(torch.as_tensor(inputs).float(), self.orientation)
        with torch.enable_grad():
            projected = self.projector(images)
        out = self.interpreter(projected.ws, network, noise=projected.noise)

        def back(x: torch.Tensor) -> torch.Tensor:
            return orient.to_file_layout(x, self.orientation).contiguous()

        if self.output == "probabilities":
            return back(out["probabilities"])
        if self.output == "label":
            return back(out["label"])
        return {
            "label": back(out["label"]),
            "probabilities": back(out["probabilities"]),
            "uncertainty": back(out["uncertainty"]),
            "uncertainty_score": out["uncertainty_score"],
            "reconstruction": back(projected.image),
            "psnr": projected.psnr,
        }
