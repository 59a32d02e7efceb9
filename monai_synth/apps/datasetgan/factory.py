"""DatasetGAN labelling factory: generator + trained style interpreter -> uncertainty-filtered pairs.

:class:`InterpreterDatasetFactory` draws images with a StyleGAN2 generator, labels them with the style
interpreter's majority vote (:class:`~monai_synth.inferers.StyleInterpreterInferer`), scores each by the
ensemble's disagreement and, once every shard exists, drops the most uncertain fraction (DatasetGAN,
Zhang et al. 2021, keeps the 90 % most certain). Everything else -- seeds, shards, resume, atomic NIfTI
pairs, post-processing, de-duplication, datalist and manifest -- is the paired factory's.

:func:`dataset_factory` picks the label source for the ``datasetgan`` bundle's ``generate.json``: the
interpreter when its checkpoint exists, else the paired generator's own mask channels;
:func:`inference_parts` does the same for ``inference.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose

from monai_synth.apps.generation import (
    ConditionalDatasetFactory,
    GenerationParts,
    PairedDatasetFactory,
    generator_inference,
    pair_postprocessing,
    resolve_num_components,
)
from monai_synth.inferers import SeedLatents, StyleInterpreterInferer, latent_spec
from monai_synth.metrics.mask_fidelity import fidelity_scorer
from monai_synth.utils.export import file_sha256, load_generator, load_interpreter

__all__ = ["InterpreterDatasetFactory", "dataset_factory", "inference_parts", "resolve_label_source"]

logger = logging.getLogger(__name__)


def resolve_label_source(label_source: str, interpreter_path: str | Path | None) -> str:
    """``"interpreter"`` or ``"generator"``; ``"auto"`` is the interpreter when ``interpreter_path`` exists."""
    if label_source not in ("auto", "interpreter", "generator"):
        raise ValueError(f"label_source must be 'auto', 'interpreter' or 'generator', got {label_source!r}.")
    if label_source == "auto":
        label_source = "interpreter" if interpreter_path and Path(interpreter_path).is_file() else "generator"
        logger.info("label_source auto -> %s", label_source)
    if label_source == "interpreter" and not (interpreter_path and Path(interpreter_path).is_file()):
        raise FileNotFoundError(
            f"label_source 'interpreter' needs the trained interpreter, but {interpreter_path} does not exist; run "
            "train_interpreter.json first (or --label_source generator for a paired generator's own masks)."
        )
    return label_source


class InterpreterDatasetFactory(PairedDatasetFactory):
    """Labelled-data factory whose labels come from a trained style interpreter.

    Sample ``i`` is the generator's image for latent seed ``seed * 10**6 + i`` (N(0, 1) z, constant noise)
    and the interpreter's majority vote over it, post-processed and de-duplicated exactly as in
    :class:`~monai_synth.apps.generation.PairedDatasetFactory` (read its docstring for the output layout, shards,
    resume, shrinking and the lock). The generator and the interpreter see the same full batches on a fixed
    seed grid, so for a given ``batch_size`` a pair is bit-identical whatever the sharding, resumption or
    extension; across batch sizes or machines labels are identical and images equal to float tolerance. Each pair's ``uncertainty_score`` (mean of its ``top_fraction`` highest per-pixel
    Jensen-Shannon disagreements) goes to the manifest. When every shard exists, the ``drop_fraction``
    most uncertain non-duplicate pairs are left out of ``datalist.json``; their files stay on disk and the
    manifest says why (``kept: false``, ``reason``). The filter is a run-level choice, not part of the
    settings fingerprint: rerunning with another ``drop_fraction`` reuses every shard and only rewrites
    the manifest and datalist.

    Args:
        generator_path: exported StyleGAN2 ``generator.pt`` (image or paired mode).
        interpreter_path: ``interpreter.pt`` trained on this generator.
        output_dir: output folder.
        drop_fraction: fraction of the non-duplicate pairs, the most uncertain, left out (0 keeps all).
        top_fraction: fraction of the most uncertain pixels averaged into a pair's score.
        truncation_psi: truncation of the latents toward the mean w (1 = none).
        rows_per_chunk: interpreter rows per chunk (``None``: about 1024 pixels per chunk).
        num_components: components kept per class by post-processing, or ``"auto"`` (from the
            generator's training data, else 1).
        kwargs: the remaining :class:`~monai_synth.apps.generation.PairedDatasetFactory` settings.
    """

    def __init__(
        self,
        generator_path: str | Path,
        interpreter_path: str | Path,
        output_dir: str | Path,
        num_samples: int = 100,
        seed: int = 0,
        batch_size: int = 16,
        drop_fraction: float = 0.1,
        top_fraction: float = 0.1,
        truncation_psi: float = 1.0,
        rows_per_chunk: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0 <= drop_fraction < 1:
            raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction}.")
        super().__init__(
            generator_path, output_dir, num_samples=num_samples, seed=seed, batch_size=batch_size, **kwargs
        )
        self.interpreter_path = Path(interpreter_path)
        self.ensemble, checkpoint = load_interpreter(
            self.interpreter_path, self.generator_path, self.device, self.fingerprint["generator_sha256"]
        )
        self.drop_fraction = float(drop_fraction)
        self.num_classes = self.ensemble.num_classes
        self.postprocessing = self._postprocessing()  # the interpreter's classes, its output dict
        self.inferer = StyleInterpreterInferer(
            self.network, "z", rows_per_chunk=rows_per_chunk, top_fraction=top_fraction, truncation_psi=truncation_psi
        )
        self.label_names = checkpoint.get("label_names")
        self.fingerprint.update(
            {
                "label_source": "interpreter",
                "interpreter_sha256": file_sha256(self.interpreter_path),
                "top_fraction": float(top_fraction),
                "truncation_psi": float(truncation_psi),
            }
        )
        self.fingerprint.pop("threshold", None)  # labels are votes, not thresholded mask channels

    def _label_names(self) -> dict[str, str]:
        if self.label_names and len(self.label_names) == self.num_classes:
            return dict(self.label_names)
        return super()._label_names()

    def _check_mode(self) -> None:
        if self.mode not in ("image", "paired"):
            raise ValueError(
                f"{self.generator_path} is a {self.mode}-mode generator; the style interpreter labels the images of "
                "an image- or paired-mode StyleGAN2."
            )

    def _postprocessing(self) -> Compose:
        return pair_postprocessing(
            self.image_channels, self.num_classes, num_components=self.num_components, label_source="interpreter"
        )

    def _draw(self, seeds: list[int]) -> tuple[list[Any], list[dict[str, Any]]]:
        out = self.inferer(self._latents(seeds), self.ensemble)
        items = [{key: out[key][k].cpu() for key in ("image", "label", "uncertainty")} for k in range(len(seeds))]
        scores = out["uncertainty_score"].cpu().tolist()
        return items, [{"uncertainty_score": round(float(s), 6)} for s in scores]

    def _select(self, entries: list[dict]) -> tuple[list[dict], dict[str, Any]]:
        candidates = [e for e in entries if e["kept"]]
        num_drop = int(round(len(candidates) * self.drop_fraction))
        # most uncertain first; ties by index so the choice is deterministic
        ranked = sorted(candidates, key=lambda e: (-e["uncertainty_score"], e["index"]))
        dropped = {e["id"] for e in ranked[:num_drop]}
        threshold = ranked[num_drop - 1]["uncertainty_score"] if num_drop else None
        selected = []
        for entry in entries:
            if entry["id"] in dropped:
                entry = {
                    **entry,
                    "kept": False,
                    "reason": f"uncertainty {entry['uncertainty_score']:.4g} is among the {self.drop_fraction:.0%} "
                    f"most uncertain pairs (>= {threshold:.4g})",
                }
            selected.append(entry)
        kept = [e["uncertainty_score"] for e in selected if e["kept"]]
        lost = [e["uncertainty_score"] for e in candidates if e["id"] in dropped]
        summary = {
            "label_source": "interpreter",
            "drop_fraction": self.drop_fraction,
            "num_dropped_uncertain": num_drop,
            "uncertainty_threshold": threshold,
            "mean_uncertainty_kept": round(float(np.mean(kept)), 6) if kept else None,
            "mean_uncertainty_dropped": round(float(np.mean(lost)), 6) if lost else None,
        }
        return selected, summary


def dataset_factory(
    generator_path: str | Path,
    output_dir: str | Path,
    label_source: str = "auto",
    interpreter_path: str | Path | None = None,
    drop_fraction: float = 0.1,
    top_fraction: float = 0.1,
    truncation_psi: float = 1.0,
    mask_generator_path: str | Path | None = None,
    masks_from: str | Path | None = None,
    latents_per_mask: int = 1,
    fidelity_model: str | Path | None = None,
    fidelity_data: Any = None,
    fidelity_epochs: int = 30,
    min_mask_fidelity: float | None = None,
    **kwargs: Any,
) -> PairedDatasetFactory:
    """The ``datasetgan`` generation factory for ``label_source`` (``"auto"``, ``"interpreter"``, ``"generator"``).

    ``"generator"`` uses a paired generator's own mask channels, or a mask generator's masks alone
    (:class:`PairedDatasetFactory`; the interpreter settings are ignored); ``"interpreter"`` uses
    :class:`InterpreterDatasetFactory`. With ``mask_generator_path`` or ``masks_from`` the generator is a
    conditional (C-SG) one and :class:`~monai_synth.apps.generation.ConditionalDatasetFactory` draws images
    for those masks (MC-SG), scored for mask fidelity with ``fidelity_model`` or a small U-Net trained on
    ``fidelity_data`` (see :func:`~monai_synth.metrics.mask_fidelity.fidelity_scorer`).
    """
    if mask_generator_path or masks_from:
        _, config = load_generator(generator_path, "cpu", bundle="datasetgan")
        device = kwargs.get("device", "cpu")
        fidelity = fidelity_scorer(
            int(config["data"]["num_classes"]),
            int(config["data"]["image_size"]),
            model_path=fidelity_model,
            data=fidelity_data,
            epochs=fidelity_epochs,
            seed=int(kwargs.get("seed", 0)),
            device=device,
        )
        return ConditionalDatasetFactory(
            generator_path,
            output_dir,
            mask_generator_path=mask_generator_path,
            masks_from=masks_from,
            latents_per_mask=latents_per_mask,
            fidelity=fidelity,
            min_mask_fidelity=min_mask_fidelity,
            truncation_psi=truncation_psi,
            **kwargs,
        )
    if resolve_label_source(label_source, interpreter_path) == "generator":
        return PairedDatasetFactory(generator_path, output_dir, **kwargs)
    kwargs.pop("threshold", None)
    return InterpreterDatasetFactory(
        generator_path,
        interpreter_path,
        output_dir,
        drop_fraction=drop_fraction,
        top_fraction=top_fraction,
        truncation_psi=truncation_psi,
        **kwargs,
    )


def inference_parts(
    generator_path: str | Path,
    interpreter_path: str | Path | None = None,
    label_source: str = "auto",
    device: str | torch.device = "cpu",
    threshold: float = 0.0,
    truncation_psi: float = 1.0,
) -> GenerationParts:
    """The evaluator parts of the ``datasetgan`` ``inference.json`` for ``label_source``.

    ``"generator"``: the StyleGAN2 generator's own output, decoded by its mode (image / paired / mask).
    ``"interpreter"``: the network is the style interpreter, the inferer a
    :class:`~monai_synth.inferers.StyleInterpreterInferer` on the generator (labels, uncertainty maps).
    Both post-process the labels with the components count of the generator's training masks.

    Raises:
        ValueError: a generator of another bundle, or an interpreter trained on another generator.
        FileNotFoundError: ``label_source="interpreter"`` without the interpreter file.
    """
    if resolve_label_source(label_source, interpreter_path) == "generator":
        return generator_inference(generator_path, device, threshold, truncation_psi, bundle="datasetgan")
    generator, config = load_generator(generator_path, device, bundle="datasetgan", conditional=False)
    ensemble, _ = load_interpreter(interpreter_path, generator_path, device)
    postprocessing = pair_postprocessing(
        int(config["data"]["image_channels"]),
        ensemble.num_classes,
        num_components=resolve_num_components("auto", config),
        label_source="interpreter",
    )
    inferer = StyleInterpreterInferer(generator, truncation_psi=truncation_psi)
    return GenerationParts(ensemble, inferer, SeedLatents(*latent_spec(config)), postprocessing, config)
