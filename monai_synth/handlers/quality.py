"""Generator quality tracked while training: KID/FID, duplicates, diversity, mask sanity, collapse stop, best snapshot."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_synth.metrics.diversity import (
    DEDUP_HASH_SIZE,
    DEDUP_MAX_DISTANCE,
    GeneratorCollapseError,
    class_area_range,
    diversity_ratio,
    generate_pairs,
    generated_duplicate_rate,
    mask_sanity,
)
from monai_synth.transforms import DecodePairedd
from monai_synth.utils.export import export_generator
from monai_synth.utils.io import save_png_atomic

__all__ = ["GeneratorQualityHandler", "real_pairs_sample", "SELECT_BY"]

logger = logging.getLogger(__name__)

#: scores ``select_by`` can choose the exported snapshot by (lower is better)
SELECT_BY = ("kid", "fid")


def real_pairs_sample(
    dataset: Sequence[dict[str, Any]],
    num: int,
    seed: int = 0,
    pair_key: str = "pair",
    channels: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(min(num, len), C', H, W)`` float tensor of real pairs drawn without replacement with ``seed``.

    Args:
        dataset: items (dicts) holding the encoded pair under ``pair_key`` (a MONAI ``Dataset`` with its transform).
        num: how many to draw.
        seed: seed of the draw.
        pair_key: key of the pair tensor.
        channels: ``(start, stop)`` channel range the generator models (``None``: all).
    """
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(dataset), min(int(num), len(dataset)), replace=False).tolist())
    pairs = torch.stack([torch.as_tensor(dataset[i][pair_key]).as_subclass(torch.Tensor).float() for i in picked])
    return pairs[:, channels[0] : channels[1]] if channels is not None else pairs


class GeneratorQualityHandler:
    """Every ``interval`` iterations, score the generator on fixed latents against a fixed real sample.

    Figures (each evaluation appends ``{"iteration", ...}`` to :attr:`history`):

    - ``duplicate_rate``: perceptual-hash near-duplicates among the generated images (the settings of
      ``generate.json``); a collapsed generator is near ``1 - 1 / N``.
    - ``diversity``: mean per-pixel standard deviation of the generated images relative to the real ones.
    - ``mask_sanity``: fraction of generated masks whose foreground class areas lie inside the range of the
      real masks (only when the generator draws masks).
    - ``kid`` / ``fid``: on the offline Inception features (:mod:`monai_synth.metrics.fid`) of the image
      channels; optional, as Inception at 299 x 299 costs seconds per image on a loaded CPU.

    The latest figures are put into ``engine.state.output`` after every iteration (as ``dup_rate``,
    ``diversity``, ``mask_sanity``, ``kid``, ``fid``), so the progress bar, ``StatsHandler`` and the MLflow
    handler attached *after* this one log them; :attr:`report` (history, best, collapse) is a dict that a
    :class:`~monai_synth.handlers.TrainingSummaryWriter` ``extra`` can hold, so ``summary.json`` has it;
    ``<output_dir>/quality.png`` plots the curves.

    With ``select_by`` (``"kid"`` or ``"fid"``) the weights of the evaluation with the lowest score are kept,
    and at the end that best snapshot is written over ``export["path"]`` (after the checkpoint handler's
    own export; the last weights stay in the checkpoint), with its iteration in ``report["best"]``. A duplicate rate above
    ``collapse_threshold`` for ``collapse_patience`` evaluations in a row stops training: the run ends (the
    checkpoint and summary are written) and :class:`~monai_synth.metrics.diversity.GeneratorCollapseError`
    is raised with what to change.

    Args:
        generator: the generator to score (the EMA copy when there is one).
        latents: ``(N, latent_dim)`` fixed latents.
        real: ``(M, C', H, W)`` fixed real pairs (see :func:`real_pairs_sample`), or a dataset to draw
            ``num_real`` of them from when training starts.
        image_channels: image channels at the front of the pairs (0: masks only).
        num_classes: ``K`` for decoding masks.
        output_dir: folder of ``quality.png``.
        interval: iterations between evaluations (a last one runs at the end).
        compute_kid: compute KID.
        compute_fid: compute FID.
        select_by: ``None``, ``"kid"`` or ``"fid"``: export the best snapshot by that score.
        export: ``{"path": generator.pt, "config": run config}`` for ``select_by``.
        collapse_threshold: duplicate rate above which an evaluation counts as collapsed.
        collapse_patience: collapsed evaluations in a row that stop training (0: never stop).
        mode: ``"paired"``, ``"image"``, ``"mask"`` (what the generator draws) or ``"conditional"`` (C-SG:
            the generator draws the image channels for the masks of the real sample, latent ``i`` for real
            mask ``i % M``, and is scored on those pairs).
        num_real: real pairs drawn when ``real`` is a dataset.
        pair_key: key of the pair in dataset items.
        channels: channel range of dataset pairs the generator models.
        feature_extractor: callable ``images -> (N, D)`` features; default: the offline Inception network.
        batch_size: generator batch size.
        seed: seed of the real sample and of KID's subsets.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        latents: torch.Tensor,
        real: torch.Tensor | Sequence[dict[str, Any]],
        image_channels: int,
        num_classes: int,
        output_dir: str | Path,
        interval: int = 250,
        compute_kid: bool = False,
        compute_fid: bool = False,
        select_by: str | None = None,
        export: dict[str, Any] | None = None,
        collapse_threshold: float = 0.5,
        collapse_patience: int = 2,
        mode: str = "paired",
        num_real: int = 64,
        pair_key: str = "pair",
        channels: Sequence[int] | None = None,
        feature_extractor: Any = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        if interval < 1:
            raise ValueError(f"eval_interval must be >= 1, got {interval}.")
        if select_by in ("", "none", "None"):
            select_by = None
        if select_by is not None and select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY} or None, got {select_by!r}.")
        if select_by == "kid" and not compute_kid or select_by == "fid" and not compute_fid:
            raise ValueError(
                f"select_by={select_by!r} needs that score: set eval_{select_by} True (it runs the Inception "
                "network at every evaluation), or select_by None."
            )
        if select_by is not None and not export:
            raise ValueError("select_by needs export={'path': ..., 'config': ...} to write the best snapshot.")
        if not 0 <= collapse_threshold <= 1 or collapse_patience < 0:
            raise ValueError(
                f"collapse_threshold must be in [0, 1] and collapse_patience >= 0, got {collapse_threshold}, "
                f"{collapse_patience}."
            )
        self.generator = generator
        self.latents = torch.as_tensor(latents)
        self._real_source = real
        self.real: torch.Tensor | None = None
        self.image_channels = int(image_channels)
        self.num_classes = int(num_classes)
        self.output_dir = Path(output_dir)
        self.interval = int(interval)
        self.compute_kid = bool(compute_kid)
        self.compute_fid = bool(compute_fid)
        self.select_by = select_by
        self.export = export
        self.collapse_threshold = float(collapse_threshold)
        self.collapse_patience = int(collapse_patience)
        self.mode = mode
        self.num_real = int(num_real)
        self.pair_key = pair_key
        self.channels = tuple(channels) if channels is not None else None
        self.feature_extractor = feature_extractor
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.decode = DecodePairedd(
            "pair",
            "image",
            "label",
            image_channels=self.image_channels,
            num_classes=self.num_classes,
            mode="paired" if mode == "conditional" else mode,
        )
        self.history: list[dict[str, Any]] = []
        self.report: dict[str, Any] = {"history": self.history, "best": None, "collapsed": None}
        self.latest: dict[str, float] = {}
        self.collapsed_in_a_row = 0
        self._real_features: torch.Tensor | None = None
        self._area_range: np.ndarray | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_score = math.inf
        self._last_iteration = -1

    # ------------------------------------------------------------------ attach
    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.evaluate)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._publish)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        # registered once the run starts, so that it runs after every other COMPLETED handler (checkpoint export)
        engine.add_event_handler(Events.STARTED, lambda e: e.add_event_handler(Events.COMPLETED, self._export_best))

    # ------------------------------------------------------------------ pieces
    def _images(self, pairs: torch.Tensor) -> torch.Tensor:
        return pairs[:, : self.image_channels] if self.image_channels > 0 else pairs

    def _labels(self, pairs: torch.Tensor) -> torch.Tensor | None:
        if self.mode in ("image", "conditional") or self.num_classes < 2:
            return None  # conditional: the masks are the real ones
        return torch.as_tensor(self.decode({"pair": pairs})["label"])

    def _extractor(self) -> Any:
        if self.feature_extractor is None:
            from monai_synth.metrics.fid import InceptionFeatureExtractor

            channels = self.image_channels if self.image_channels > 0 else 1
            self.feature_extractor = InceptionFeatureExtractor(
                device=self.latents.device, batch_size=16, channel=None if channels in (1, 3) else 0
            )
        return self.feature_extractor

    def _prepare(self) -> None:
        if self.real is not None:
            return
        source = self._real_source
        if isinstance(source, torch.Tensor):
            self.real = source.float().cpu()
        else:
            self.real = real_pairs_sample(source, self.num_real, self.seed, self.pair_key, self.channels)
        labels = self._labels(self.real)
        if labels is not None:
            self._area_range = class_area_range(labels, self.num_classes)

    def scores(self) -> dict[str, float]:
        """Score the generator now; returns the figures of one evaluation (without ``iteration``)."""
        self._prepare()
        masks = self.real[:, self.image_channels :] if self.mode == "conditional" else None
        fakes = generate_pairs(self.generator, self.latents, self.batch_size, masks=masks)
        images, real_images = self._images(fakes), self._images(self.real)
        out: dict[str, float] = {
            "dup_rate": generated_duplicate_rate(fakes, self.image_channels, DEDUP_MAX_DISTANCE, DEDUP_HASH_SIZE),
            "diversity": diversity_ratio(images, real_images),
        }
        labels = self._labels(fakes)
        if labels is not None and self._area_range is not None:
            out["mask_sanity"] = mask_sanity(labels, self._area_range, self.num_classes)
        if self.compute_kid or self.compute_fid:
            from monai_synth.metrics.fid import compute_fid, compute_kid

            extractor = self._extractor()
            if self._real_features is None:
                self._real_features = extractor(real_images.clamp(-1, 1))
            features = extractor(images.clamp(-1, 1))
            if self.compute_kid:
                out["kid"] = compute_kid(features, self._real_features, num_subsets=50, seed=self.seed)[0]
            if self.compute_fid:
                out["fid"] = compute_fid(features, self._real_features)
        return out

    # ------------------------------------------------------------------ events
    def evaluate(self, engine: Engine) -> None:
        iteration = engine.state.iteration
        if iteration == self._last_iteration:
            return
        self._last_iteration = iteration
        figures = self.scores()
        self.latest = figures
        self.history.append({"iteration": iteration, **{k: round(float(v), 6) for k, v in figures.items()}})
        self._publish(engine)
        logger.info("Quality at iteration %d: %s", iteration, ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
        if self.select_by is not None and figures[self.select_by] < self._best_score:
            self._best_score = figures[self.select_by]
            self._best_state = copy.deepcopy(self.generator.state_dict())
            self.report["best"] = {"iteration": iteration, self.select_by: round(self._best_score, 6)}
        self.plot()
        self._check_collapse(engine, figures["dup_rate"])

    def _check_collapse(self, engine: Engine, rate: float) -> None:
        self.collapsed_in_a_row = self.collapsed_in_a_row + 1 if rate > self.collapse_threshold else 0
        if self.collapse_patience == 0 or self.collapsed_in_a_row < self.collapse_patience:
            return
        message = (
            f"The generator has collapsed: {rate:.0%} of {len(self.latents)} fixed samples are near-duplicates at "
            f"iteration {engine.state.iteration} (above collapse_threshold {self.collapse_threshold:.0%} for "
            f"{self.collapsed_in_a_row} evaluations in a row), so training stopped. Retrain with the data-efficient "
            "settings on (ada True, ema True, minibatch_std 4), a lower learning_rate (e.g. half), a smaller "
            "discriminator, or more training cases; or raise collapse_threshold / set collapse_patience 0 to go on."
        )
        self.report["collapsed"] = {"iteration": engine.state.iteration, "duplicate_rate": rate, "message": message}
        logger.error(message)
        engine.terminate()
        # raised after every COMPLETED handler (checkpoint, summary) has run
        engine.add_event_handler(Events.COMPLETED, self._raise_collapse)

    def _raise_collapse(self, engine: Engine) -> None:
        raise GeneratorCollapseError(self.report["collapsed"]["message"])

    def _publish(self, engine: Engine) -> None:
        if isinstance(engine.state.output, dict) and self.latest:
            engine.state.output.update(self.latest)

    def _completed(self, engine: Engine) -> None:
        if self.report["collapsed"] is None and engine.state.iteration != self._last_iteration:
            self.evaluate(engine)

    def _export_best(self, engine: Engine) -> None:
        if self.select_by is not None and self._best_state is not None and self.report["collapsed"] is None:
            best = copy.deepcopy(self.generator)
            best.load_state_dict(self._best_state)
            export_generator(
                best, self.export["config"], self.export["path"], iteration=self.report["best"]["iteration"]
            )
            logger.info("Exported the best snapshot by %s: %s.", self.select_by, self.report["best"])

    def plot(self) -> Path | None:
        """Write ``quality.png``: each figure against the iteration."""
        if not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in ("dup_rate", "diversity", "mask_sanity", "kid", "fid") if k in self.history[-1]]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
        steps = [h["iteration"] for h in self.history]
        for ax, key in zip(axes[0], keys):
            ax.plot(steps, [h.get(key, float("nan")) for h in self.history], marker="o")
            ax.set_title(key)
            ax.set_xlabel("iteration")
        fig.tight_layout()
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        path = self.output_dir / "quality.png"
        save_png_atomic(path, image)
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "collapsed_in_a_row": self.collapsed_in_a_row}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history[:] = state.get("history", [])
        self.collapsed_in_a_row = int(state.get("collapsed_in_a_row", 0))
