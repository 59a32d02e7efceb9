"""MC-SG (Vu et al.): masks from a mask generator (M-SG) or the user, images from a conditional StyleGAN2 (C-SG).

:class:`ConditionalDatasetFactory` writes the labelled-data factory's usual output (NIfTI pairs,
datalist, manifest; sharded, resumable, de-duplicated) for pairs whose label is the conditioning mask
and whose image the C-SG draws for it: either the M-SG's post-processed mask of the same seed
(``mask_generator_path``), or the user's own masks (``masks_from``, ``latents_per_mask`` images per mask: a
mask-preserving augmentation). With a mask-fidelity scorer (:mod:`monai_synth.metrics.mask_fidelity`) each
pair gets ``mask_fidelity`` (Dice of a segmentation of the image against the mask) in the manifest, the
run summary holds their statistics, and ``min_mask_fidelity`` leaves the pairs below it out of the datalist.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose

from monai_synth.data import orientation as orient
from monai_synth.inferers import latent_spec
from monai_synth.metrics.mask_fidelity import MaskFidelity, fidelity_summary
from monai_synth.networks.latents import latents_from_seeds
from monai_synth.networks.nets import encode_condition
from monai_synth.utils.export import file_sha256, load_generator

from .factory import _SEEDS_PER_RUN, PairedDatasetFactory
from .postprocessing import pair_postprocessing

__all__ = ["ConditionalDatasetFactory", "load_condition_masks", "mask_files"]

_MASK_SUFFIXES = (".nii.gz", ".nii", ".png")


def mask_files(masks_from: str | Path) -> list[Path]:
    """The mask files a ``masks_from`` names: a datalist JSON (every entry's ``"label"``, paths relative to
    it) or a folder (its ``*_label.nii.gz`` files when there are any, e.g. a generated set's ``pairs/``,
    else every NIfTI / PNG file), sorted.

    Raises:
        FileNotFoundError: nothing there.
        ValueError: a datalist without labels, or a folder without mask files (naming it).
    """
    source = Path(masks_from)
    if source.is_file():
        data = json.loads(source.read_text())
        entries = [e for key, v in data.items() if isinstance(v, list) for e in v if isinstance(e, dict)]
        labels = [e["label"] for e in entries if e.get("label")]
        if not labels:
            raise ValueError(f"{source} lists no entry with a 'label'; masks_from needs masks.")
        return [p if Path(p).is_absolute() else source.parent / p for p in map(Path, labels)]
    if not source.is_dir():
        raise FileNotFoundError(f"masks_from {source} is neither a datalist JSON nor a folder.")
    files = sorted(p for p in source.iterdir() if p.name.endswith(_MASK_SUFFIXES))
    labelled = [p for p in files if p.name.endswith(("_label.nii.gz", "_label.nii"))]
    if not (labelled or files):
        raise ValueError(f"{source} holds no mask files (.nii.gz, .nii or .png).")
    return labelled or files


def load_condition_masks(
    masks_from: str | Path, config: dict[str, Any], generator_path: str | Path = "the generator"
) -> tuple[torch.Tensor, list[str]]:
    """Read user masks for a conditional generator: ``(N, 1, S, S)`` int64 labels (internal layout) and names.

    Files are read like the generated pairs are written (:mod:`monai_synth.data.orientation`), so the masks
    of a generated set, or masks drawn on its images, come back in the generator's layout.

    Raises:
        ValueError: a mask of another size than the generator's, with labels outside ``0 .. K - 1`` (more
            classes than it was trained on) or with more than one channel -- each naming the file.
    """
    data = config["data"]
    size, num_classes = int(data["image_size"]), int(data["num_classes"])
    orientation = data.get("orientation")
    masks, names = [], []
    for path in mask_files(masks_from):
        array = np.asarray(orient.load_image(path))
        file_format = "png" if orient.is_picture(path) else "nifti"
        array = np.asarray(orient.from_file_layout(np.squeeze(array, 0) if array.ndim == 3 else array, orientation,
                                                   file_format))  # fmt: skip
        if array.ndim != 2:
            raise ValueError(f"{path}: a mask must be one 2D label map, got shape {array.shape}.")
        if array.shape != (size, size):
            raise ValueError(
                f"{path}: the mask is {array.shape[0]} x {array.shape[1]} but {generator_path} draws {size} x {size} "
                "images; resample the masks (nearest) to that size."
            )
        if not np.all(np.mod(array, 1) == 0) or array.min() < 0 or array.max() >= num_classes:
            raise ValueError(
                f"{path}: the mask holds values {array.min():g}..{array.max():g} but {generator_path} was trained on "
                f"{num_classes} classes (integer labels 0..{num_classes - 1}); map the mask to those classes."
            )
        masks.append(torch.as_tensor(array.astype(np.int64))[None])
        names.append(str(path))
    return torch.stack(masks), names


class ConditionalDatasetFactory(PairedDatasetFactory):
    """NIfTI pairs from a conditional StyleGAN2 (C-SG) and masks from an M-SG or from the user (MC-SG).

    Sample ``i`` uses latent seed ``seed * 10**6 + i`` for both generators (each with its own latent
    size): the M-SG draws the mask (decoded and post-processed as generated masks always are), then the
    C-SG draws the image for that mask, so the written label is exactly the conditioning mask. With
    ``masks_from`` the mask of sample ``i`` is user mask ``i // latents_per_mask`` (written as is, no
    post-processing) and ``num_samples`` is ``masks * latents_per_mask``. Seeds, shards, resume, the lock,
    de-duplication (on the images), datalist and manifest are those of
    :class:`~monai_synth.apps.generation.PairedDatasetFactory`; the settings fingerprint holds the sha256
    of both generators (or the digest of the user masks).

    Args:
        generator_path: the C-SG ``generator.pt`` (``train.json --mode conditional``).
        output_dir: output folder.
        mask_generator_path: the M-SG ``generator.pt`` (``train.json --mode mask``).
        masks_from: a datalist JSON or folder of masks (see :func:`mask_files`), instead of an M-SG.
        latents_per_mask: images per user mask.
        num_samples: pairs to draw from the M-SG (ignored with ``masks_from``).
        fidelity: a :class:`~monai_synth.metrics.MaskFidelity` scorer, or ``None``.
        min_mask_fidelity: pairs whose fidelity is below it are left out of the datalist (a run-level
            choice, like the interpreter's ``drop_fraction``; needs ``fidelity``).
        truncation_psi: truncation of the C-SG's latents.
        kwargs: the remaining :class:`PairedDatasetFactory` settings (``threshold`` and ``num_components``
            apply to the M-SG's masks).

    Raises:
        ValueError: both or neither mask source; a generator of the wrong kind (an unconditional one as
            ``generator_path``, anything but a mask generator as ``mask_generator_path``), generators of
            different sizes or classes, or bad user masks -- each naming the file.
    """

    def __init__(
        self,
        generator_path: str | Path,
        output_dir: str | Path,
        mask_generator_path: str | Path | None = None,
        masks_from: str | Path | None = None,
        latents_per_mask: int = 1,
        num_samples: int = 100,
        fidelity: MaskFidelity | None = None,
        min_mask_fidelity: float | None = None,
        truncation_psi: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if (mask_generator_path is None) == (masks_from is None):
            raise ValueError(
                "A conditional (C-SG) generator draws images for masks: give the masks' source, either "
                "mask_generator (an M-SG generator.pt) or masks_from (a datalist or folder of masks), not both."
            )
        if isinstance(latents_per_mask, bool) or not isinstance(latents_per_mask, int) or latents_per_mask < 1:
            raise ValueError(f"latents_per_mask must be an integer >= 1, got {latents_per_mask!r}.")
        if min_mask_fidelity is not None and fidelity is None:
            raise ValueError(
                "min_mask_fidelity needs a mask-fidelity model: set fidelity_model (a study's model.pt) or "
                "fidelity_data (real training pairs to train a small U-Net on)."
            )
        self._masks_from = masks_from
        super().__init__(generator_path, output_dir, num_samples=num_samples, **kwargs)
        self.latents_per_mask = int(latents_per_mask)
        self.truncation_psi = float(truncation_psi)
        self.fidelity = fidelity
        self.min_mask_fidelity = None if min_mask_fidelity is None else float(min_mask_fidelity)
        size = int(self.config["data"]["image_size"])
        self.fingerprint.update({"mode": "conditional", "truncation_psi": self.truncation_psi})
        if fidelity is not None:
            self.fingerprint["mask_fidelity"] = fidelity.source
        if mask_generator_path is not None:
            self.mask_generator_path = Path(mask_generator_path)
            self.mask_network, self.mask_config = load_generator(self.mask_generator_path, self.device)
            mask_mode = self.mask_config["generator"].get("mode", "paired")
            if mask_mode != "mask":
                raise ValueError(
                    f"{self.mask_generator_path} is a {mask_mode}-mode generator; mask_generator must be a mask-mode "
                    "(M-SG) generator.pt (datasetgan train.json --mode mask)."
                )
            mask_data = self.mask_config["data"]
            if int(mask_data["num_classes"]) != self.num_classes or int(mask_data["image_size"]) != size:
                raise ValueError(
                    f"{self.mask_generator_path} draws {mask_data['num_classes']} classes at {mask_data['image_size']} "
                    f"px but {self.generator_path} was trained on {self.num_classes} classes at {size} px; train both "
                    "on the same data."
                )
            self.mask_latent = latent_spec(self.mask_config)
            self.mask_postprocessing = pair_postprocessing(
                1, self.num_classes, mode="mask", threshold=self.threshold, num_components=self.num_components
            )
            self.masks, self.mask_names = None, None
            self.fingerprint["mask_generator_sha256"] = file_sha256(self.mask_generator_path)
        else:
            self.mask_generator_path = None
            self.masks, self.mask_names = load_condition_masks(masks_from, self.config, self.generator_path)
            digest = hashlib.sha256(self.masks.numpy().tobytes())
            digest.update("\n".join(Path(n).name for n in self.mask_names).encode())
            self.fingerprint.update({"masks_sha256": digest.hexdigest(), "latents_per_mask": self.latents_per_mask})
            self.num_samples = len(self.masks) * self.latents_per_mask
            if self.num_samples > _SEEDS_PER_RUN:
                raise ValueError(f"{len(self.masks)} masks x {latents_per_mask} latents is more than {_SEEDS_PER_RUN}.")
            # user masks are written as given
            self.fingerprint["postprocess"] = {"enabled": False, "num_components": None}

    def _check_mode(self) -> None:
        if self.mode != "conditional":
            source = "mask_generator" if self._masks_from is None else "masks_from"
            raise ValueError(
                f"{self.generator_path} is a {self.mode}-mode generator, not a conditional (C-SG) one: with {source} "
                "the generator must draw images for given masks (datasetgan train.json --mode conditional)."
            )

    def _postprocessing(self) -> Compose:
        # the labels are the conditioning masks, already final: decode only
        return pair_postprocessing(self.image_channels, self.num_classes, num_components=None)

    def _masks_for(self, seeds: list[int]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """``(labels (B, 1, S, S) int64, manifest extras)`` of the conditioning masks of these seeds."""
        if self.masks is not None:
            indices = [(s - self.seed * _SEEDS_PER_RUN) // self.latents_per_mask % len(self.masks) for s in seeds]
            extras = [{"mask_source": Path(self.mask_names[i]).name, "postprocess_change": 0.0} for i in indices]
            return self.masks[indices], extras
        dim, distribution = self.mask_latent
        raw = self.mask_network(latents_from_seeds(seeds, dim, device=self.device, distribution=distribution))
        labels, extras = [], []
        for item in raw.float().cpu():
            out = self.mask_postprocessing({"pred": item})
            labels.append(torch.as_tensor(np.asarray(out["gen_label"])).long())
            extras.append({"mask_source": "mask_generator", "postprocess_change": round(float(
                out.get("postprocess_change", 0.0)), 6)})  # fmt: skip
        return torch.stack(labels), extras

    def _draw(self, seeds: list[int]) -> tuple[list[Any], list[dict[str, Any]]]:
        labels, extras = self._masks_for(seeds)
        images = self.network(self._latents(seeds), truncation_psi=self.truncation_psi, mask=labels.to(self.device))
        images = images.float().cpu()
        if self.fidelity is not None:
            for extra, value in zip(extras, self.fidelity(images.clamp(-1, 1), labels)):
                extra["mask_fidelity"] = value
        pairs = torch.cat([images, encode_condition(labels, self.network.cond_channels)], dim=1)
        return list(pairs), extras

    def _select(self, entries: list[dict]) -> tuple[list[dict], dict[str, Any]]:
        summary: dict[str, Any] = {
            "mask_source": str(self.mask_generator_path or self._masks_from),
            "latents_per_mask": self.latents_per_mask if self.masks is not None else None,
        }
        if self.fidelity is None:
            return entries, summary
        candidates = [e for e in entries if e["kept"]]
        summary["mask_fidelity"] = {
            **fidelity_summary([e["mask_fidelity"] for e in candidates], self.min_mask_fidelity),
            "model": self.fidelity.source,
            "min_mask_fidelity": self.min_mask_fidelity,
        }
        if self.min_mask_fidelity is None:
            return entries, summary
        selected = []
        for entry in entries:
            if entry["kept"] and entry["mask_fidelity"] < self.min_mask_fidelity:
                entry = {
                    **entry,
                    "kept": False,
                    "reason": f"mask fidelity {entry['mask_fidelity']:.3f} is below min_mask_fidelity "
                    f"{self.min_mask_fidelity:g}",
                }
            selected.append(entry)
        return selected, summary
