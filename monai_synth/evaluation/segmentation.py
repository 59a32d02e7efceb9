"""Segmentation networks for the downstream study: build by name, train with model selection, score.

The pieces the study composes, usable on their own inside any MONAI pipeline:

- :func:`build_network` picks any network of :mod:`monai.networks.nets` by name (``"UNet"``,
  ``"SegResNet"``, ``"AttentionUnet"``, ``"BasicUNet"``, ``"FlexibleUNet"``, ...), so the papers'
  "which network suits this data" comparison is a change of setting.
- :func:`standard_augmentation` is the flip / rotation / shift / zoom augmentation of the papers with
  MONAI random dictionary transforms (nearest-neighbour for the label).
- :func:`train_segmentation_network` trains with MONAI's ``SupervisedTrainer`` and scores the
  validation set with a ``SupervisedEvaluator`` (``ValidationHandler``) after every
  ``val_interval`` epochs: the weights with the best validation Dice are kept (in memory) and loaded
  back at the end, and ``EarlyStopHandler`` stops after ``patience`` validations without improvement.
- :func:`segmentation_scores` computes per-case, per-class Dice, IoU, Hausdorff distance and its 95th
  percentile with MONAI's metrics (background excluded).

Value conventions (docs/DESIGN.md): images ``(C, H, W)`` float in [-1, 1], labels ``(1, H, W)`` integer
``0..K-1``. Hausdorff distances are in pixels of the study's image size.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import EarlyStopHandler, MeanDice, ValidationHandler, from_engine, stopping_fn_from_metric
from monai.losses import DiceCELoss, DiceLoss
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU
from monai.networks import nets as monai_nets
from monai.networks.utils import one_hot
from monai.transforms import AsDiscreted, Compose, RandAffined, RandFlipd, RandRotated, RandZoomd
from monai.utils import CommonKeys, optional_import
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from monai_synth.engines import distributed

__all__ = [
    "DEFAULT_NETWORK_KWARGS",
    "SCORE_NAMES",
    "HIGHER_IS_BETTER",
    "LOSSES",
    "build_network",
    "build_optimizer",
    "network_class",
    "OPTIMIZERS",
    "TORCHVISION_NETWORKS",
    "TorchvisionSegmentation",
    "standard_augmentation",
    "segmentation_scores",
    "class_mean",
    "predict_labels",
    "TrainingResult",
    "train_segmentation_network",
]

logger = logging.getLogger(__name__)

#: Defaults for networks whose architecture MONAI does not default (the user's kwargs override them).
DEFAULT_NETWORK_KWARGS: dict[str, dict[str, Any]] = {
    "UNet": {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 2},
    "AttentionUnet": {"channels": (16, 32, 64, 128), "strides": (2, 2, 2)},
    "FlexibleUNet": {"backbone": "efficientnet-b0", "pretrained": False},
}
#: Per-case scores of :func:`segmentation_scores`: higher-is-better Dice/IoU, lower-is-better distances.
SCORE_NAMES = ("dice", "iou", "hd", "hd95")
LOSSES = ("dice", "dice_ce")
#: Direction of each score, for rank statistics.
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "iou": True, "hd": False, "hd95": False}


#: Networks of torchvision (an optional extra) built with ResNet-50 backbones, never with downloaded weights.
TORCHVISION_NETWORKS = {"DeepLabV3": "deeplabv3_resnet50", "FCN": "fcn_resnet50"}
OPTIMIZERS = ("Adam", "SGD")


class TorchvisionSegmentation(torch.nn.Module):
    """Logits wrapper of a torchvision segmentation model: ``(B, C, H, W) -> (B, K, H, W)`` (its ``"out"``).

    Args:
        model: a ``torchvision.models.segmentation`` model (returns ``{"out": logits, ...}``).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, Mapping) else out


def _torchvision_network(name: str, in_channels: int, out_channels: int, **kwargs: Any) -> torch.nn.Module:
    factory_name = TORCHVISION_NETWORKS[name]
    factory, usable = optional_import("torchvision.models.segmentation", name=factory_name)
    if not usable:
        raise ImportError(
            f"network={name!r} needs torchvision (ResNet-50 backbone): pip install 'monai_synth[torchvision]' "
            "(a torchvision build that matches your torch)."
        )
    arguments = {"weights": None, "weights_backbone": None, "num_classes": int(out_channels), "aux_loss": False}
    arguments.update(kwargs)
    if arguments["weights"] is not None or arguments["weights_backbone"] is not None:
        raise ValueError(
            f"network={name!r}: pretrained weights are never downloaded; leave weights / weights_backbone None."
        )
    model = factory(**arguments)
    if in_channels != 3:  # the ResNet stem expects RGB: give it the image's channels
        old = model.backbone.conv1
        model.backbone.conv1 = torch.nn.Conv2d(
            int(in_channels), old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    return TorchvisionSegmentation(model)


def network_class(name: str) -> type[torch.nn.Module] | str:
    """The class a ``network`` setting names, checked before any training.

    Args:
        name: a :mod:`monai.networks.nets` class name, ``"DeepLabV3"`` / ``"FCN"`` (torchvision), or a dotted
            path ``package.module.Class`` to an ``nn.Module`` subclass.

    Returns:
        The class, or the torchvision name (checked for torchvision when built).

    Raises:
        ValueError: an unknown name, a dotted path that cannot be imported or is not an ``nn.Module``.
    """
    name = str(name)
    if name in TORCHVISION_NETWORKS:
        return name
    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"network={name!r}: cannot import {class_name} from {module_name}: {e}.") from e
        if not (inspect.isclass(found) and issubclass(found, torch.nn.Module)):
            raise ValueError(f"network={name!r} is not an nn.Module subclass (got {found!r}).")
        return found
    found = getattr(monai_nets, name, None)
    if not (inspect.isclass(found) and issubclass(found, torch.nn.Module)):
        known = "UNet, AttentionUnet, SegResNet, BasicUNet, FlexibleUNet, UNETR, SwinUNETR"
        raise ValueError(
            f"network={name!r} is not a network of monai.networks.nets; choose e.g. one of: {known}, "
            f"{' or '.join(TORCHVISION_NETWORKS)} (torchvision), or a dotted path package.module.Class to your own "
            "nn.Module."
        )
    return found


def build_network(
    name: str, in_channels: int, out_channels: int, spatial_dims: int = 2, **kwargs: Any
) -> torch.nn.Module:
    """Instantiate a segmentation network by name.

    ``spatial_dims``, ``in_channels`` and ``out_channels`` are passed when the network takes them;
    :data:`DEFAULT_NETWORK_KWARGS` fills what MONAI leaves without default (e.g. the UNet's
    ``channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2``); ``kwargs`` override both.
    ``"DeepLabV3"`` and ``"FCN"`` are torchvision's ResNet-50 models (optional extra ``torchvision``),
    built with ``weights=None, weights_backbone=None`` (nothing is downloaded), their stem adapted to
    ``in_channels`` and wrapped to return logits. A dotted path ``package.module.Class`` builds the user's
    own ``nn.Module`` (given ``in_channels`` / ``out_channels`` / ``spatial_dims`` when it takes them).

    Args:
        name: class name in ``monai.networks.nets`` (``"UNet"``, ``"SegResNet"``, ``"BasicUNet"``, ...),
            ``"DeepLabV3"``, ``"FCN"`` or a dotted path.
        in_channels: image channels ``C``.
        out_channels: classes ``K`` including background (the network outputs ``(B, K, H, W)`` logits).
        spatial_dims: 2 for slices.
        kwargs: further constructor arguments of the network.

    Returns:
        The network (on CPU, freshly initialised).

    Raises:
        ValueError: unknown network name, a dotted path that is not an ``nn.Module``, or arguments the
            network rejects (the message names both).
        ImportError: ``DeepLabV3`` / ``FCN`` without a usable torchvision.
    """
    found = network_class(name)
    if isinstance(found, str):
        return _torchvision_network(found, in_channels, out_channels, **kwargs)
    parameters = inspect.signature(found.__init__).parameters
    arguments: dict[str, Any] = {}
    for key, value in (("in_channels", in_channels), ("out_channels", out_channels), ("spatial_dims", spatial_dims)):
        if key in parameters:
            arguments[key] = int(value)
    arguments.update(DEFAULT_NETWORK_KWARGS.get(str(name), {}))
    arguments.update(kwargs)
    try:
        return found(**arguments)
    except (TypeError, ValueError, AssertionError) as e:
        raise ValueError(
            f"Could not build network {name} with arguments {arguments}: {e}. Fix `network_kwargs`."
        ) from e


def build_optimizer(
    parameters: Any,
    optimizer: str = "Adam",
    learning_rate: float = 1e-4,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` or ``torch.optim.SGD`` with the study's settings.

    Args:
        parameters: the network's parameters.
        optimizer: ``"Adam"`` or ``"SGD"`` (any case).
        learning_rate: learning rate.
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 penalty.

    Returns:
        The optimiser.

    Raises:
        ValueError: an unknown optimiser, or Nesterov without momentum.
    """
    name = {o.lower(): o for o in OPTIMIZERS}.get(str(optimizer).lower())
    if name is None:
        raise ValueError(f"optimizer={optimizer!r} is not supported; choose one of {list(OPTIMIZERS)}.")
    if name == "Adam":
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)
    if nesterov and momentum <= 0:
        raise ValueError("nesterov=True needs momentum > 0 (e.g. Neff et al.: momentum 0.99).")
    return torch.optim.SGD(
        parameters, lr=learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )


def standard_augmentation(
    image_size: int,
    keys: Sequence[str] = (CommonKeys.IMAGE, CommonKeys.LABEL),
    prob: float = 0.5,
    flip_prob: float = 0.5,
    flip_axis: int = 1,
    rotate_degrees: float = 10.0,
    shift_fraction: float = 0.1,
    zoom_range: Sequence[float] = (0.9, 1.1),
) -> Compose:
    """The papers' standard augmentation: random flip, rotation, shift and zoom of image and label together.

    The label is resampled with nearest neighbour, the image bilinearly; the output keeps the input
    size. A left-right flip (``flip_axis=1`` of ``(C, H, W)``) swaps the anatomical sides: set
    ``flip_prob=0`` for labels that name a side (e.g. the phantom's left/right lung).

    Args:
        image_size: spatial size ``S`` (the shift is a fraction of it).
        keys: image key then label key.
        prob: probability of each of rotation, shift and zoom.
        flip_prob: probability of the flip.
        flip_axis: spatial axis of the flip.
        rotate_degrees: rotation drawn from U[-rotate_degrees, rotate_degrees].
        shift_fraction: shift drawn from U[-f S, f S] pixels along each axis.
        zoom_range: zoom factor drawn from U[low, high].

    Returns:
        A MONAI ``Compose`` of dictionary transforms.
    """
    if len(keys) != 2:
        raise ValueError(f"keys must be (image key, label key), got {keys!r}.")
    modes = ("bilinear", "nearest")
    shift = float(shift_fraction) * int(image_size)
    return Compose(
        [
            RandFlipd(keys=keys, prob=flip_prob, spatial_axis=flip_axis),
            RandRotated(keys=keys, range_x=math.radians(rotate_degrees), prob=prob, mode=modes, padding_mode="zeros"),
            RandAffined(keys=keys, translate_range=(shift, shift), prob=prob, mode=modes, padding_mode="zeros"),
            RandZoomd(
                keys=keys,
                min_zoom=zoom_range[0],
                max_zoom=zoom_range[1],
                prob=prob,
                mode=("bilinear", "nearest"),
                padding_mode="constant",
            ),
        ]
    )


def _as_label_batch(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(x).as_subclass(torch.Tensor)
    if tensor.ndim not in (4, 5) or tensor.shape[1] != 1:
        raise ValueError(
            f"{name} must be a (B, 1, H, W) or (B, 1, H, W, D) label map, got shape {tuple(tensor.shape)}."
        )
    return tensor.long()


def segmentation_scores(
    prediction: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray,
    num_classes: int,
    spacing: Sequence[float] | Sequence[Sequence[float]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-case, per-class Dice, IoU, Hausdorff distance and 95th-percentile HD (MONAI metrics).

    Background (class 0) is excluded. MONAI's conventions for empty masks are kept and must be read
    as such: Dice/IoU are NaN when the ground truth of a class is empty; the Hausdorff distance is
    ``inf`` when the prediction of a class is empty but its ground truth is not, NaN when both are
    (HD95 is NaN in both cases).

    Args:
        prediction: ``(B, 1, H, W)`` (slices) or ``(B, 1, H, W, D)`` (volumes) predicted labels ``0..K-1``.
        label: same shape, ground-truth labels ``0..K-1``.
        num_classes: ``K`` including background (>= 2).
        spacing: voxel size per spatial axis (one sequence for the batch, or one per case), passed to
            MONAI's ``HausdorffDistanceMetric``; ``None``: distances in pixels.

    Returns:
        ``{"dice", "iou", "hd", "hd95"}``, each a ``(B, K - 1)`` float64 array; distances in pixels, or in
        the units of ``spacing`` (mm for NIfTI) when given.

    Raises:
        ValueError: shapes differ or are not ``(B, 1, H, W)``, labels outside ``0..K-1``.
    """
    prediction, label = _as_label_batch(prediction, "prediction"), _as_label_batch(label, "label")
    if prediction.shape != label.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} shapes differ.")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}.")
    for name, x in (("prediction", prediction), ("label", label)):
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_classes):
            raise ValueError(f"{name} holds values outside 0..{num_classes - 1}: [{int(x.min())}, {int(x.max())}].")
    y_pred, y = one_hot(prediction, num_classes), one_hot(label, num_classes)
    distance = {} if spacing is None else {"spacing": spacing}
    with warnings.catch_warnings():
        # MONAI warns per empty class ("may result in nan/inf distance") and about a deprecated internal
        # argument; empty classes are reported through the NaN/inf values themselves.
        warnings.simplefilter("ignore")
        scores = {
            "dice": DiceMetric(include_background=False, reduction="none")(y_pred, y),
            "iou": MeanIoU(include_background=False, reduction="none")(y_pred, y),
            "hd": HausdorffDistanceMetric(include_background=False, percentile=None, reduction="none")(
                y_pred, y, **distance
            ),
            "hd95": HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")(
                y_pred, y, **distance
            ),
        }
    return {
        k: v.detach().cpu().numpy().astype(np.float64).reshape(prediction.shape[0], num_classes - 1)
        for k, v in scores.items()
    }


def class_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the class axis (last) ignoring NaN (undefined classes); ``inf`` propagates.

    Args:
        values: ``(..., K - 1)`` per-class scores.

    Returns:
        ``(...)`` means; NaN where every class is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    count = defined.sum(axis=-1)
    with np.errstate(invalid="ignore"):
        total = np.where(defined, values, 0.0).sum(axis=-1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def predict_labels(
    network: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Argmax label maps of a segmentation network.

    Args:
        network: ``(B, C, H, W) -> (B, K, H, W)`` logits.
        images: ``(N, C, H, W)`` in [-1, 1].
        batch_size: images per forward pass.
        device: device of the forward pass.

    Returns:
        ``(N, 1, H, W)`` int64 CPU tensor.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    network = network.to(device).eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            logits = network(images[start : start + batch_size].to(device))
            outputs.append(logits.argmax(dim=1, keepdim=True).cpu())
    return torch.cat(outputs) if outputs else torch.zeros((0, 1, *images.shape[2:]), dtype=torch.long)


@dataclass
class TrainingResult:
    """What :func:`train_segmentation_network` did.

    Attributes:
        epochs_run: epochs trained (fewer than ``max_epochs`` after early stopping).
        best_epoch: epoch whose weights were kept (the last epoch when there is no validation set).
        best_val_dice: validation mean Dice (foreground classes) at ``best_epoch``; ``None`` without validation.
        stopped_early: early stopping ended the training.
        iterations: optimiser steps taken.
        train_loss: mean training loss per epoch.
        val_dice: ``[(epoch, mean Dice), ...]`` of every validation.
        seconds: wall time of the training, validations included.
    """

    epochs_run: int = 0
    best_epoch: int = 0
    best_val_dice: float | None = None
    stopped_early: bool = False
    iterations: int = 0
    train_loss: list[float] = field(default_factory=list)
    val_dice: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_dice": self.best_val_dice,
            "stopped_early": self.stopped_early,
            "iterations": self.iterations,
            "train_loss": list(self.train_loss),
            "val_dice": [[e, d] for e, d in self.val_dice],
            "seconds": self.seconds,
        }


class _KeepBestWeights:
    """Evaluator handler: remember the network's weights whenever the validation metric improves.

    MONAI's ``CheckpointSaver`` writes files; a study trains dozens of small networks and only needs
    the best weights of the current one, so they are kept in memory.
    """

    def __init__(self, network: torch.nn.Module, metric_name: str, result: TrainingResult) -> None:
        self.network, self.metric_name, self.result = network, metric_name, result
        self.state: dict[str, torch.Tensor] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        value = float(engine.state.metrics[self.metric_name])
        epoch = int(engine.state.epoch)  # ValidationHandler runs the evaluator at the trainer's epoch
        self.result.val_dice.append((epoch, value))
        if self.state is None or (math.isfinite(value) and value > (self.result.best_val_dice or -math.inf)):
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in self.network.state_dict().items()})
            self.result.best_epoch, self.result.best_val_dice = epoch, value if math.isfinite(value) else None


class _EpochLoss:
    """Trainer handler: mean loss per epoch (also in ``engine.state.metrics[metric_name]`` for the
    handlers that log metrics, e.g. MLflow); a non-finite loss stops the study with a clear error."""

    def __init__(self, result: TrainingResult, log_prefix: str, metric_name: str = "train_loss") -> None:
        self.result, self.log_prefix, self.metric_name = result, log_prefix, metric_name
        self.losses: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch)

    def iteration(self, engine: Engine) -> None:
        loss = float(engine.state.output[CommonKeys.LOSS].detach())
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"{self.log_prefix}: the segmentation loss became {loss} at epoch {engine.state.epoch}, iteration "
                f"{engine.state.iteration}; lower `learning_rate` or check the training images for NaN/inf values."
            )
        self.losses.append(loss)

    def epoch(self, engine: Engine) -> None:
        self.result.train_loss.append(float(np.mean(self.losses)) if self.losses else math.nan)
        engine.state.metrics[self.metric_name] = self.result.train_loss[-1]
        self.result.epochs_run = int(engine.state.epoch)
        self.losses = []
        logger.debug(
            "%s epoch %d/%d loss %.4f",
            self.log_prefix,
            engine.state.epoch,
            engine.state.max_epochs,
            self.result.train_loss[-1],
        )


def _loader(
    items: Sequence[Mapping[str, Any]],
    transform: Callable | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
    shard: bool = False,
) -> DataLoader:
    """A loader over ``items``; with ``shard`` under ``torchrun`` each rank reads its share (``DistributedSampler``,
    reshuffled per epoch from ``seed`` by MONAI's ``Workflow``, padded to equal shares)."""
    dataset = Dataset(list(items), transform=transform)
    if shard and distributed.is_distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0, generator=generator)


def train_segmentation_network(
    network: torch.nn.Module,
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]],
    num_classes: int,
    max_epochs: int = 50,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    loss: str = "dice",
    patience: int | None = 10,
    epoch_length: int | None = None,
    val_interval: int = 1,
    augmentation: Callable | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    seed: int = 0,
    log_prefix: str = "segmentation",
    train_handlers: Sequence[Any] = (),
    val_handlers: Sequence[Any] = (),
    metric_prefix: str = "",
    optimizer: str = "Adam",
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> TrainingResult:
    """Train a segmentation network with validation-based model selection and early stopping.

    Soft Dice loss on softmax outputs (``DiceLoss(softmax=True, to_onehot_y=True)``) or Dice +
    cross-entropy (``loss="dice_ce"``), Adam or SGD (:func:`build_optimizer`). Every ``val_interval`` epochs the validation items are
    scored with the mean foreground Dice; the best weights are loaded into ``network`` when training
    ends, and training stops after ``patience`` validations without improvement.

    Args:
        network: ``(B, C, H, W) -> (B, K, H, W)`` logits; trained in place.
        train_items: ``{"image": (C, H, W) in [-1, 1], "label": (1, H, W) int}`` dicts.
        val_items: same form; empty -> no model selection, the last epoch's weights are kept.
        num_classes: ``K`` including background.
        max_epochs: maximum number of epochs.
        batch_size: training batch size.
        learning_rate: Adam learning rate (the papers: 1e-4).
        loss: ``"dice"`` or ``"dice_ce"``.
        patience: validations without improvement before stopping; ``None`` or 0 disables early stopping.
        epoch_length: iterations per epoch (the loader restarts as needed); ``None``: one pass over
            ``train_items``. A fixed value gives every training set the same number of optimiser steps,
            so that arms of different sizes are compared at equal training budget.
        val_interval: epochs between validations.
        augmentation: random dictionary transform applied to training items (e.g. :func:`standard_augmentation`).
        device: training device.
        amp: mixed precision (CUDA only).
        seed: seed of the shuffling and of the augmentation's random state.
        log_prefix: prefix of log messages and errors (e.g. the arm name).
        train_handlers: more handlers (``attach(engine)``) for the ``SupervisedTrainer``, e.g. MONAI's
            ``MLFlowHandler``; its ``engine.state.metrics`` holds ``"<metric_prefix>train_loss"``, the
            epoch's mean loss.
        val_handlers: more handlers for the ``SupervisedEvaluator`` (only built with ``val_items``); its
            ``engine.state.metrics`` holds ``"<metric_prefix>val_dice"`` and its epoch is the trainer's.
        metric_prefix: prefix of those metric names (e.g. ``"fold0_"``).
        optimizer: ``"Adam"`` or ``"SGD"`` (see :func:`build_optimizer`).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        weight_decay: L2 penalty.

    Under ``torchrun`` (a process group initialised, see :mod:`monai_synth.engines.distributed`) the
    network is wrapped in ``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU): each rank trains on its
    share of ``train_items`` (``DistributedSampler``, reshuffled every epoch from ``seed``), so the global
    batch is ``batch_size`` x the number of processes and an epoch is one pass over the items shared by
    all ranks. Every rank validates on all ``val_items`` with identical weights, so best-epoch and early
    stopping decisions agree without communication; ``train_handlers`` / ``val_handlers`` (MLflow) are
    attached on rank 0 only. The augmentation's random state differs per rank.

    Returns:
        :class:`TrainingResult`.

    Raises:
        ValueError: no training items, unknown ``loss``, bad epoch settings.
        FloatingPointError: the loss became NaN or infinite.
    """
    if not train_items:
        raise ValueError(f"{log_prefix}: no training items.")
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not supported; choose one of {LOSSES}.")
    if (
        int(max_epochs) < 1
        or int(val_interval) < 1
        or int(batch_size) < 1
        or (epoch_length is not None and int(epoch_length) < 1)
    ):
        raise ValueError(
            f"max_epochs, val_interval, batch_size and epoch_length must be >= 1, got {max_epochs}, {val_interval}, "
            f"{batch_size}, {epoch_length}."
        )
    device = torch.device(device)
    rank, rank_zero = distributed.rank(), distributed.is_rank_zero()
    if augmentation is not None and hasattr(augmentation, "set_random_state"):
        # ranks > 0 draw their own augmentations (rank 0 keeps the single-process stream)
        augmentation.set_random_state(
            seed=seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
        )
    loss_function = (DiceCELoss if loss == "dice_ce" else DiceLoss)(softmax=True, to_onehot_y=True)
    network = network.to(device)
    optimizer = build_optimizer(network.parameters(), optimizer, learning_rate, momentum, nesterov, weight_decay)
    result = TrainingResult()
    trained = network
    if distributed.is_distributed():
        device_ids = (
            [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else None
        )
        trained = DistributedDataParallel(network, device_ids=device_ids)

    trainer = SupervisedTrainer(
        device=device,
        max_epochs=int(max_epochs),
        train_data_loader=_loader(train_items, augmentation, int(batch_size), shuffle=True, seed=seed, shard=True),
        epoch_length=None if epoch_length is None else int(epoch_length),
        network=trained,
        optimizer=optimizer,
        loss_function=loss_function,
        amp=bool(amp) and device.type == "cuda",
        decollate=False,
    )
    _EpochLoss(result, log_prefix, f"{metric_prefix}train_loss").attach(trainer)
    for handler in train_handlers if rank_zero else ():
        handler.attach(trainer)
    keep_best = None
    if val_items:
        metric_name = f"{metric_prefix}val_dice"
        evaluator = SupervisedEvaluator(
            device=device,
            val_data_loader=_loader(val_items, None, int(batch_size), shuffle=False, seed=seed),
            network=network,
            postprocessing=Compose(
                [
                    AsDiscreted(keys=CommonKeys.PRED, argmax=True, to_onehot=num_classes),
                    AsDiscreted(keys=CommonKeys.LABEL, to_onehot=num_classes),
                ]
            ),
            key_val_metric={
                metric_name: MeanDice(
                    include_background=False, output_transform=from_engine([CommonKeys.PRED, CommonKeys.LABEL])
                )
            },
            amp=bool(amp) and device.type == "cuda",
        )
        keep_best = _KeepBestWeights(network, metric_name, result)
        keep_best.attach(evaluator)
        if patience:
            EarlyStopHandler(
                patience=int(patience), score_function=stopping_fn_from_metric(metric_name), trainer=trainer
            ).attach(evaluator)
        for handler in val_handlers if rank_zero else ():
            handler.attach(evaluator)
        ValidationHandler(interval=int(val_interval), validator=evaluator, epoch_level=True).attach(trainer)

    start = time.perf_counter()
    trainer.run()
    result.seconds = time.perf_counter() - start
    result.stopped_early = result.epochs_run < int(max_epochs)
    result.iterations = int(trainer.state.iteration)
    if keep_best is not None and keep_best.state is not None:
        network.load_state_dict(keep_best.state)
    else:
        result.best_epoch = result.epochs_run
    return result
