"""SemanticGAN as a MONAI segmenter: encode to w+, refine by optimisation, read the mask branch.

:class:`SemanticGANInferer` is the MONAI ``Inferer`` form of SemanticGAN inference (Li et al. 2021, Sec. 3.3),
so a ``SupervisedEvaluator`` can score it beside a U-Net; ``bundles/semanticgan/configs/segment.json``
(:func:`~monai_synth.apps.semanticgan.segment_images`) is its file-to-file form.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer
from monai.metrics import PSNRMetric

from monai_synth.data import orientation as orient

__all__ = ["SemanticGANInferer"]

_OUTPUTS = ("probabilities", "label", "all")


class SemanticGANInferer(Inferer):
    """Real images ``(B, C, S, S)`` in [-1, 1] -> class probabilities ``(B, K, S, S)`` (or every output).

    Each batch is encoded to w+ by ``E`` (or starts from the mean w without one), refined by ``num_steps``
    steps of :class:`~monai_synth.apps.datasetgan.GANProjector` (pixel + ``D_r``-feature reconstruction
    loss; 0 steps: the encoder's answer as is), and the generator's mask branch at the result gives the
    segmentation. Gradients are enabled inside, so it also runs under an evaluator's ``torch.no_grad``.
    Inputs follow the orientation contract of :mod:`monai_synth.data.orientation` (as MONAI's ``LoadImage``
    returns them), scaled like the generator's training data and of size ``S``.

    Args:
        generator: a :class:`~monai_synth.networks.nets.SemanticStyleGAN2Generator`.
        discriminator: ``D_r`` for the perceptual term (``None``: pixel loss only).
        encoder: ``E`` (a w+ :class:`~monai_synth.networks.nets.LatentEncoder`), or ``None``.
        orientation: the generator export's orientation record; ``None``: inputs already in its layout.
        num_steps: optimisation steps after the encoder (0: none; needs an encoder or uses the mean w).
        output: ``"probabilities"``, ``"label"`` ``(B, 1, S, S)`` or ``"all"``: a dict with ``label``,
            ``probabilities``, ``uncertainty`` ``(B, 1, S, S)`` (normalised entropy), ``reconstruction``
            ``(B, C, S, S)`` and ``psnr`` ``(B,)``.
        projector_kwargs: further :class:`~monai_synth.apps.datasetgan.GANProjector` settings
            (``learning_rate``, ``perceptual_weight``, ``seed``, ...).

    Example::

        inferer = SemanticGANInferer.from_export("runs/sgan/generator.pt", "runs/sgan/encoder.pt",
                                                 checkpoint_path="runs/sgan/checkpoints/checkpoint_last.pt")
        evaluator = SupervisedEvaluator(device, loader, inferer.generator, inferer=inferer,
                                        postprocessing=..., key_val_metric={"dice": MeanDice(...)})
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module | None = None,
        encoder: torch.nn.Module | None = None,
        orientation: dict[str, Any] | None = None,
        num_steps: int = 100,
        output: str = "probabilities",
        **projector_kwargs: Any,
    ) -> None:
        super().__init__()
        # imported here: monai_synth.apps builds on monai_synth.inferers, not the other way round
        from monai_synth.apps.datasetgan.projection import GANProjector
        from monai_synth.networks.nets import SemanticStyleGAN2Generator

        if not isinstance(generator, SemanticStyleGAN2Generator):
            raise ValueError(f"SemanticGANInferer needs a SemanticStyleGAN2Generator, got {type(generator).__name__}.")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {list(_OUTPUTS)}, got {output!r}.")
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}.")
        self.generator = generator.eval().requires_grad_(False)
        self.encoder = encoder.eval().requires_grad_(False) if encoder is not None else None
        self.num_steps = int(num_steps)
        self.projector = None
        if self.num_steps > 0:
            self.projector = GANProjector(generator, discriminator, num_steps=self.num_steps, encoder=self.encoder,
                                          **projector_kwargs)  # fmt: skip
        self.orientation = orientation
        self.output = output
        self.export_config: dict[str, Any] | None = None  # the generator export's config (from_export)

    @classmethod
    def from_export(
        cls,
        generator_path: str | Path,
        encoder_path: str | Path | None = None,
        checkpoint_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> SemanticGANInferer:
        """Build from a ``semanticgan`` ``generator.pt``, its ``encoder.pt`` and training checkpoint (``D_r``)."""
        from monai_synth.apps.semanticgan.encoder import load_encoder
        from monai_synth.utils.export import load_discriminator, load_generator

        generator, config = load_generator(generator_path, device, bundle="semanticgan")
        encoder = load_encoder(encoder_path, generator_path, device) if encoder_path is not None else None
        discriminator = load_discriminator(checkpoint_path, device) if checkpoint_path is not None else None
        orientation = orient.export_orientation(config, generator_path)
        inferer = cls(generator, discriminator, encoder, orientation=orientation, **kwargs)
        inferer.export_config = config
        return inferer

    def segment(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output for ``images (B, C, S, S)`` in the generator's layout (see the class docstring)."""
        g = self.generator
        device = g.const.device
        images = images.to(device=device, dtype=torch.float32)
        if self.projector is not None:
            self.projector.check_images(images)
            with torch.enable_grad():
                projected = self.projector(images)
            ws, reconstruction, psnr = projected.ws, projected.image, projected.psnr
        else:
            with torch.no_grad():
                ws = self.encoder(images) if self.encoder is not None else g.mapping.w_avg[None].expand(len(images), -1)
                reconstruction = g.synthesize(ws, noise_mode="const")[0].clamp(-1, 1)
            psnr = PSNRMetric(max_val=2.0, reduction="none")(reconstruction, images.clamp(-1, 1)).reshape(-1).cpu()
        with torch.no_grad():
            _, logits = g.synthesize(ws, noise_mode="const")
            probabilities = torch.softmax(logits.float(), dim=1)
            entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(dim=1, keepdim=True)
        return {
            "probabilities": probabilities,
            "label": probabilities.argmax(dim=1, keepdim=True),
            "uncertainty": entropy / math.log(probabilities.shape[1]),
            "reconstruction": reconstruction,
            "psnr": psnr,
        }

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module | None = None, *args: Any, **kwargs: Any):
        """Segment ``inputs (B, C, S, S)``; ``network`` (what an evaluator passes) must be the inferer's generator."""
        if network is not None and network is not self.generator:
            raise ValueError("SemanticGANInferer: the evaluator's network must be the inferer's own generator.")
        images = orient.from_file_layout(torch.as_tensor(inputs).float(), self.orientation)
        out = self.segment(images)

        def back(x: torch.Tensor) -> torch.Tensor:
            return orient.to_file_layout(x, self.orientation).contiguous()

        if self.output == "probabilities":
            return back(out["probabilities"])
        if self.output == "label":
            return back(out["label"])
        return {k: back(v) if v.ndim == 4 else v for k, v in out.items()}
