"""The downstream study: do generated image/mask pairs help a segmentation network on real data?

:class:`SyntheticEvaluationStudy` (what the ``synthetic_evaluation`` bundle runs) trains one
segmentation network per *arm* (:mod:`~monai_synth.evaluation.arms`) and fold, and scores each on the
real held-out cases (**test-R**) and, when given, on a held-out part of every generated set (**test-G**).
The ``N`` generated pairs of an arm are the first ``N`` of a seeded permutation of the generated
training pool, so the sets of a sweep are nested and the same in every fold. The real data are split by
case (patient or volume) once (``folds=1``: train / validation / test fractions) or in ``folds`` group
folds; every arm of a fold uses the same split, the same initial weights and the same real validation
cases for model selection, and any case or file shared between training and test data is refused.
A ``finetune`` arm starts from the best weights of its synthetic arm (pre-training; taken from that arm
when it ran in the same fold, else trained first) and is then trained exactly as its real arm (same real
cases, validation, budget); ``results.json`` records the optimiser steps of both stages.

Results (per case, per class, per fold), mean +- std summaries and Friedman + Nemenyi (or Wilcoxon)
statistics across arms (:mod:`~monai_synth.evaluation.statistics`), FID/KID of every generated set
against the real images, wall times, versions and hardware go to ``results.json``, ``report.md`` and
figures in ``output_dir`` (:mod:`~monai_synth.evaluation.report`), and every arm to MLflow when
``mlflow_tracking_uri`` is set (:mod:`~monai_synth.evaluation.tracking`). The settings are a
:class:`~monai_synth.evaluation.config.StudyConfig`.

With no real dataset the study runs on the built-in phantom, and (with no generated set) phantoms of
other seeds are written to ``output_dir`` to stand in for a generated set, so that the whole
pipeline can be seen working in minutes on a CPU.

Under ``torchrun`` (``configs/multi_gpu_evaluate.json``) every rank runs the same study: each segmenter
is trained with ``DistributedDataParallel`` on the ranks' shares of its training set (see
:func:`~monai_synth.evaluation.segmentation.train_segmentation_network`), every rank scores the test sets
with the same weights, and rank 0 alone writes models, results, report, figures and MLflow runs.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from monai_synth.data import orientation as orient
from monai_synth.data.datalist import resolve_dataset
from monai_synth.data.phantom import write_phantom_dataset
from monai_synth.data.pipeline import PairedSliceDataset
from monai_synth.data.splits import check_no_leakage, kfold_datalist, split_datalist
from monai_synth.engines import distributed
from monai_synth.evaluation.arms import ArmSpec, arm_training_items, oversample_real, plan_arms, real_subset
from monai_synth.evaluation.config import StudyConfig
from monai_synth.evaluation.inference import save_study_model
from monai_synth.evaluation.segmentation import (
    SCORE_NAMES,
    TrainingResult,
    build_network,
    class_mean,
    network_class,
    predict_labels,
    segmentation_scores,
    standard_augmentation,
    train_segmentation_network,
)
from monai_synth.evaluation.statistics import compare_arms, summarize_cases
from monai_synth.evaluation.tracking import StudyTracker, require_mlflow
from monai_synth.evaluation.volumes import pixel_spacing, slice_spacing, volume_scores
from monai_synth.utils.bundle import resolve_device
from monai_synth.utils.environment import environment_info
from monai_synth.utils.io import read_json

__all__ = ["SyntheticEvaluationStudy"]

logger = logging.getLogger(__name__)

TEST_R = "test_R"
#: Suffix of the test sets scored per volume (3D sources).
VOLUME_SUFFIX = "/volume"
_STATISTICS_SCORES = ("dice", "hd95")
#: Settings shared by every arm, logged as MLflow parameters of each arm's run.
_TRACKED_SETTINGS = (
    "network",
    "max_epochs",
    "image_size",
    "learning_rate",
    "optimizer",
    "batch_size",
    "loss",
    "folds",
    "seed",
    "patience",
)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "set"


@dataclass
class _GeneratedSet:
    name: str
    source: str
    dataset: PairedSliceDataset
    pool: list[dict[str, Any]]
    test: list[dict[str, Any]]


def _align_to(dataset: PairedSliceDataset, real: PairedSliceDataset, written: dict[str, Any] | None = None) -> None:
    """Bring ``dataset``'s items (in place) into the real data's internal layout (the orientation contract).

    Real PNGs are read in viewer layout, NIfTI in MONAI's index order; a PNG-trained generator's NIfTI pairs
    (written under the contract) or an external set of the other format would otherwise be transposed
    relative to the real data. ``written``: the set's own record when it overrides what its files say
    (a pre-contract generated set: ``{"layout": "legacy"}``, never transposed).
    """
    source = written or dataset.summary["orientation"]
    target = real.summary["orientation"]
    if orient.layouts_agree(source, target):
        return
    for item in dataset.data:
        for key in ("image", "label"):
            item[key] = np.ascontiguousarray(orient.convert_layout(np.asarray(item[key]), source, target))
    logger.info(
        "%s: %s layout, transposed to the real data's %s layout.",
        dataset.summary["source"], source.get("layout"), target.get("layout"),
    )  # fmt: skip


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


def labelled_test_datalist(source: str | os.PathLike | None) -> Path | None:
    """The datalist JSON of ``source`` when it holds a labelled ``test`` list (then used as given), else ``None``.

    ``source`` may be the JSON itself or a folder holding ``datalist.json``. A decathlon ``dataset.json``
    whose ``test`` list has no labels does not count.
    """
    if source is None:
        return None
    path = Path(source)
    path = path / "datalist.json" if path.is_dir() else path
    if not path.is_file() or path.suffix.lower() != ".json":
        return None
    content = read_json(path)
    test = content.get("test") if isinstance(content, dict) else None
    if isinstance(test, list) and test and all(isinstance(e, dict) and e.get("label") for e in test):
        return path
    return None


def _default_class_names(num_classes: int) -> dict[int, str]:
    return {i: ("background" if i == 0 else f"label_{i}") for i in range(num_classes)}


def _state_copy(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``network``'s weights (a finetune arm's starting point)."""
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


def _training_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Only image and label go to the data loader (bookkeeping keys may hold values it cannot collate)."""
    return {"image": item["image"], "label": item["label"]}


class SyntheticEvaluationStudy:
    """Real-only / synthetic-only / hybrid / fine-tuned segmentation study with statistics and a report.

    Args:
        config: the settings; or the output folder, the other settings then given as keywords
            (``SyntheticEvaluationStudy("runs/eval", folds=3)`` is
            ``SyntheticEvaluationStudy(StudyConfig(output_dir="runs/eval", folds=3))``).
        feature_extractor: any object with ``__call__(images) -> (N, D)`` and ``preprocessing_info()`` used
            instead of the Inception network for FID/KID (tests, other feature spaces).
        settings: :class:`~monai_synth.evaluation.config.StudyConfig` fields (with a ``StudyConfig``:
            changes to it).

    Raises:
        ValueError: bad settings (named), mismatched generated sets, leakage, too few cases for ``folds``.
        FileNotFoundError: missing datasets or FID weights.
        ImportError: ``mlflow_tracking_uri`` set without mlflow installed.

    Example::

        config = StudyConfig("runs/eval", real_dataset_dir="data/cxr", synthetic_datalist="gen/datalist.json",
                             num_synthetic=[100, 500], folds=3, max_epochs=50, image_size=128)
        results = SyntheticEvaluationStudy(config).run()
    """

    def __init__(
        self,
        config: StudyConfig | str | os.PathLike | None = None,
        feature_extractor: Any = None,
        **settings: Any,
    ) -> None:
        if isinstance(config, StudyConfig):
            config = replace(config, **settings) if settings else config
        else:
            if config is not None:
                if "output_dir" in settings:
                    raise TypeError("output_dir is given twice (as the first argument and as a keyword).")
                settings["output_dir"] = config
            config = StudyConfig(**settings)
        self.config = config
        self.feature_extractor = feature_extractor
        self.output_dir = Path(config.output_dir)
        self.device = distributed.local_device(resolve_device(config.device))
        self._given_datalist: Path | None = None
        self._volume_axis = 2
        self._preprocessing: dict[str, Any] = {}
        self._distance_units: dict[str, str] = {}
        self._spacing_cache: dict[str, tuple[float, float] | None] = {}
        self._pretrained: dict[str, tuple[dict[str, torch.Tensor], TrainingResult]] = {}
        if config.mlflow_tracking_uri:
            require_mlflow()

    # -- data ---------------------------------------------------------------------------------------
    def _uses_phantom_standin(self) -> bool:
        c = self.config
        return c.real_dataset_dir is None and not c.synthetic_datalist and any(k != "real" for k in c.arms)

    def _load_real(self) -> PairedSliceDataset:
        c = self.config
        kwargs = dict(c.real_dataset_kwargs)
        if c.real_dataset_dir is None:
            kwargs.setdefault("phantom_samples", c.phantom_samples)
            kwargs.setdefault("seed", c.phantom_seed)
        given = labelled_test_datalist(c.real_dataset_dir)
        if given is not None:
            kwargs["datalist_key"] = "training"
            self._given_datalist = given
        return PairedSliceDataset(c.real_dataset_dir if given is None else given, c.image_size, **kwargs)

    def _matching_kwargs(self, real: PairedSliceDataset) -> dict[str, Any]:
        """Dataset arguments that preprocess other real data exactly as the real training data."""
        kwargs = {k: v for k, v in self.config.real_dataset_kwargs.items() if k != "max_items"}
        kwargs.setdefault("intensity", real.summary["intensity"])
        rule = real.summary["mask_rule"] or {}
        if "mask_mapping" not in kwargs and "mask_threshold" not in kwargs:
            kwargs["mask_mapping"], kwargs["mask_threshold"] = rule.get("mapping"), rule.get("threshold")
        kwargs["num_classes"] = real.num_classes
        return kwargs

    def _given_splits(self, real: PairedSliceDataset, real_items: list[dict[str, Any]]) -> list[dict[str, list]] | None:
        """The training / validation / test lists of a real datalist that has a labelled ``test`` list."""
        path = self._given_datalist
        if path is None:
            return None
        c = self.config
        if c.folds != 1:
            raise ValueError(
                f"The real datalist {path} has its own 'test' list (used as given) but --folds={c.folds}; use "
                "--folds 1, or remove the 'test' list to let the study split the cases."
            )
        kwargs = self._matching_kwargs(real)
        test = [dict(i) for i in PairedSliceDataset(path, c.image_size, datalist_key="test", **kwargs).data]
        content = read_json(path)
        if isinstance(content.get("validation"), list) and content["validation"]:
            validation = [
                dict(i) for i in PairedSliceDataset(path, c.image_size, datalist_key="validation", **kwargs).data
            ]
            training = real_items
        else:
            split = split_datalist(real_items, c.val_fraction, 0.0, seed=c.seed) if c.val_fraction > 0 else None
            training = split["training"] if split else real_items
            validation = split["validation"] if split else []
        logger.info(
            "Real datalist %s used as given: %d training, %d validation, %d test item(s).",
            path, len(training), len(validation), len(test),
        )  # fmt: skip
        return [{"training": training, "validation": validation, "test": test}]

    def _load_external(self, real: PairedSliceDataset) -> dict[str, list[dict[str, Any]]]:
        """The external test-R sets (``test_datasets``), preprocessed as the real data, checked for channels."""
        c = self.config
        out = {}
        for name, source in (c.test_datasets or {}).items():
            if not Path(source).exists():
                raise FileNotFoundError(f"--test_datasets {name!r}: {source} does not exist.")
            key = "test" if labelled_test_datalist(source) is not None else "training"
            try:
                dataset = PairedSliceDataset(source, c.image_size, datalist_key=key, **self._matching_kwargs(real))
            except ValueError as e:
                raise ValueError(f"--test_datasets {name!r} ({source}): {e}") from e
            _align_to(dataset, real)
            if dataset.image_channels != real.image_channels:
                raise ValueError(
                    f"--test_datasets {name!r} ({source}) has {dataset.image_channels} image channel(s) but the real "
                    f"data ({real.summary['source']}) has {real.image_channels}; an external test set must have the "
                    "same channels (modalities) as the training data."
                )
            out[_safe_name(name)] = [dict(i) for i in dataset.data]
        return out

    def _synthetic_sources(self) -> list[tuple[str | None, str]]:
        """``(name or None, datalist path)`` of every generated set; the phantom stand-in is written here."""
        c = self.config
        if isinstance(c.synthetic_datalist, Mapping):
            return [(_safe_name(name), path) for name, path in c.synthetic_datalist.items()]
        if c.synthetic_datalist or not self._uses_phantom_standin():
            return [(None, path) for path in c.synthetic_datalist or []]
        size = max(32, min(512, c.image_size))
        folder = (
            self.output_dir / f"phantom_generated_s{size}_n{c.phantom_generated_samples}_seed{c.phantom_generated_seed}"
        )
        logger.info(
            "No synthetic_datalist given: writing %d phantoms as a stand-in generated set to %s",
            c.phantom_generated_samples,
            folder,
        )
        path = None
        with distributed.fail_together("Writing the stand-in generated phantoms"):
            if distributed.is_rank_zero():  # under torchrun one rank writes, the others read
                path = write_phantom_dataset(folder, c.phantom_generated_samples, size, seed=c.phantom_generated_seed)
        return [("phantom_generated", str(distributed.broadcast_object(path)))]

    def _load_generated(self, real: PairedSliceDataset) -> dict[str, _GeneratedSet]:
        c = self.config
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
            kwargs = dict(c.synthetic_dataset_kwargs)
            if "intensity" not in kwargs:
                kwargs["intensity"] = _generated_intensity(source)
            dataset = PairedSliceDataset(source, c.image_size, **kwargs)
            self._check_compatible(real, dataset, source)
            _align_to(dataset, real, orient.generated_set_orientation(source))
            items = [dict(item) for item in dataset.data]
            if c.synthetic_test_fraction > 0:
                split = split_datalist(items, val_fraction=0.0, test_fraction=c.synthetic_test_fraction, seed=c.seed)
                train, test = split["training"], split["test"]
            else:
                train, test = items, []
            # a seeded permutation: the first N of it are the N pairs of every arm (nested subsets)
            order = np.random.default_rng(c.seed).permutation(len(train))
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

    def write_generator_datalist(self, path: str | os.PathLike, fold: int = 0, num_real: int | None = None) -> Path:
        """Write the real training cases of ``fold`` (the first ``num_real`` of them) as a datalist for a generator.

        The split-first recipe: a GAN that feeds this study must be trained on these cases only, never on
        the validation or test cases the study scores. The cases are exactly those the study's ``real`` /
        ``real_r<num_real>`` arms train on (same seed, same case-level split, same nested subset).

        Args:
            path: the datalist JSON to write (``{"training": [...]}``, paths relative to its folder).
            fold: the fold (0 with ``folds=1``).
            num_real: number of real training cases ``R`` (``None``: all training cases of the fold).

        Returns:
            The written path.

        Raises:
            ValueError: the built-in phantom as real data, a fold out of range, ``num_real`` too large.
        """
        from monai_synth.data.splits import write_datalist

        c = self.config
        if c.real_dataset_dir is None:
            raise ValueError("write_generator_datalist needs real data files (--real_dataset_dir), not the phantom.")
        # the cases come from the real data exactly as the study loads them (real_dataset_kwargs such as
        # max_items / keep_labels applied), so the generator's cases are the real arms' cases, never others
        real = self._load_real()
        real_items = [dict(item) for item in real.data]
        splits = self._given_splits(real, real_items) or self._real_splits(real_items, real.summary["source"])
        if not 0 <= fold < len(splits):
            raise ValueError(f"fold={fold} is out of range: the study has {len(splits)} fold(s).")
        keep = {str(i["case_id"]) for i in real_subset(splits[fold]["training"], num_real, c.seed)}
        training = [dict(i) for i in resolve_dataset(self._given_datalist or c.real_dataset_dir)]
        training = [i for i in training if str(i["case_id"]) in keep]
        found = {str(i["case_id"]) for i in training}
        if found != keep:
            raise ValueError(
                f"write_generator_datalist: {len(keep - found)} training case(s) of the study were not found among "
                f"the files of {c.real_dataset_dir} (e.g. {sorted(keep - found)[:3]}); case ids must be stable."
            )
        logger.info("Generator datalist %s: %d real training case(s) of fold %d.", path, len(keep), fold)
        return write_datalist(path, {"training": [dict(i) for i in training]})

    def _real_splits(self, items: list[dict[str, Any]], source: str) -> list[dict[str, list[dict[str, Any]]]]:
        c = self.config
        try:
            if c.folds == 1:
                return [split_datalist(items, c.val_fraction, c.test_fraction, seed=c.seed)]
            return kfold_datalist(items, c.folds, seed=c.seed, val_fraction=c.val_fraction)
        except ValueError as e:
            raise ValueError(
                f"Cannot split the real data ({source}, {len(items)} item(s), "
                f"{len({i['case_id'] for i in items})} case(s)) with folds={c.folds}, val_fraction={c.val_fraction}"
                + (f", test_fraction={c.test_fraction}" if c.folds == 1 else "")
                + f": {e}"
            ) from e

    def _feature_extractor(self, image_channels: int) -> Any:
        if self.feature_extractor is not None:
            return self.feature_extractor
        from monai_synth.metrics.fid import InceptionFeatureExtractor

        return InceptionFeatureExtractor(
            weights_path=self.config.fid_weights_path,
            device=self.device,
            batch_size=self.config.fid_batch_size,
            channel=None if image_channels in (1, 3) else 0,
        )

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every arm on every fold, then write ``results.json``, ``report.md`` and the figures.

        With ``networks``, the whole study runs once per network in ``output_dir/<network>/`` and
        ``output_dir`` receives a combined ``report.md`` (one test-R table per network) and ``results.json``
        (``{"networks": {network: results}}``).

        Returns:
            The results (what ``results.json`` holds, with NaN / inf as floats).
        """
        c = self.config
        for name in c.networks or [c.network]:
            network_class(name)  # an unknown name or a non-module path fails before anything runs
        if not c.networks:
            return self._run_one()
        from monai_synth.evaluation.report import write_network_comparison

        out: dict[str, Any] = {}
        for name in c.networks:
            sub = replace(
                c, network=name, networks=None, network_kwargs=self._network_kwargs(name),
                output_dir=str(self.output_dir / _safe_name(name)),
            )  # fmt: skip
            logger.info("Network %s: study in %s", name, sub.output_dir)
            out[name] = SyntheticEvaluationStudy(sub, feature_extractor=self.feature_extractor)._run_one()
        results = {"study": "monai_synth synthetic_evaluation (per network)", "config": asdict(c), "networks": out}
        if distributed.is_rank_zero():
            write_network_comparison(results, self.output_dir)
        return results

    def _network_kwargs(self, name: str) -> dict[str, Any]:
        """``network_kwargs`` of one network: its own entry when they are given per network."""
        kwargs = self.config.network_kwargs
        if self.config.networks and kwargs and set(kwargs) <= set(self.config.networks):
            return dict(kwargs.get(name) or {})
        return dict(kwargs)

    def _run_one(self) -> dict[str, Any]:
        from monai_synth.evaluation.report import write_report

        c = self.config
        start = time.perf_counter()
        timings: dict[str, float] = {}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        real = self._load_real()
        real_items = [dict(item) for item in real.data]
        self._preprocessing = {
            "intensity": real.summary["intensity"],
            "mask_rule": real.summary["mask_rule"],
            "slice_axis": c.real_dataset_kwargs.get("slice_axis", "auto"),
            "class_names": {str(k): str(v) for k, v in real.label_names.items()},
        }
        given_splits = self._given_splits(real, real_items)
        external = self._load_external(real)
        extractor = None
        if c.compute_fid and (c.synthetic_datalist or self._uses_phantom_standin()):
            extractor = self._feature_extractor(real.image_channels)  # missing weights fail before any training
        generated = self._load_generated(real)
        timings["data_seconds"] = time.perf_counter() - start
        splits = given_splits or self._real_splits(real_items, real.summary["source"])
        if given_splits:
            real_items = [i for k in ("training", "validation", "test") for i in given_splits[0][k]]
        pools = {name: gen.pool for name, gen in generated.items()}
        arms = plan_arms(
            c.arms,
            c.num_synthetic or [],
            {n: len(p) for n, p in pools.items()},
            c.augmentation,
            num_real=c.num_real,
            hybrid_real_fraction=c.hybrid_real_fraction,
        )
        self._check_num_real(splits)
        class_names = [str(real.label_names.get(i, f"label_{i}")) for i in range(1, real.num_classes)]
        test_sets = (
            {TEST_R: None}
            | {f"{TEST_R}:{n}": (items, _item_ids(items)) for n, items in external.items()}
            | {f"test_G:{n}": (g.test, _item_ids(g.test)) for n, g in generated.items() if g.test}
        )
        self._volume_axis = self._slice_axis()
        self._volumetric = {
            name: slice_spacing((splits[0]["test"] if name == TEST_R else test_sets[name][0])[0], c.image_size,
                                self._volume_axis) is not None
            for name in test_sets if name.startswith(TEST_R)
        }  # fmt: skip
        case_sets = [
            n for name in test_sets for n in (name, name + VOLUME_SUFFIX) if n == name or self._volumetric.get(name)
        ]
        self._distance_units = {
            name: "mm" if name.endswith(VOLUME_SUFFIX) or self._knows_spacing(name, splits, test_sets) else "px"
            for name in case_sets
        }
        arm_results = [
            {**asdict(arm), "folds": [], "cases": {name: [] for name in case_sets}, "summary": {}} for arm in arms
        ]
        self._check_leakage(splits, arms, generated, external)  # before any training: refuse early

        generative: dict[str, Any] | None = None
        if c.compute_fid and generated:
            fid_start = time.perf_counter()
            generative = self._generative_metrics(real_items, generated, extractor)
            timings["fid_seconds"] = time.perf_counter() - fid_start

        tracker = None
        if c.mlflow_tracking_uri and distributed.is_rank_zero():
            tracker = StudyTracker(c.mlflow_tracking_uri, c.mlflow_experiment_name, str(self.output_dir))
            tracker.start(arms, self._tracked_params(arms, splits[0], pools, real.summary["source"]))
        try:
            self._run_folds(arms, arm_results, splits, pools, test_sets, real.num_classes, class_names, tracker)
        except BaseException:
            if tracker is not None:
                tracker.fail()
            raise
        timings["training_seconds"] = sum(f["train_seconds"] for a in arm_results for f in a["folds"])
        timings["evaluation_seconds"] = sum(f["eval_seconds"] for a in arm_results for f in a["folds"])

        for record in arm_results:
            record["summary"] = {name: summarize_cases(cases, class_names) for name, cases in record["cases"].items()}
        statistics = {
            test_name: {
                score: compare_arms({a["name"]: a["cases"][test_name] for a in arm_results}, score, c.alpha)
                for score in _STATISTICS_SCORES
            }
            for test_name in case_sets
        }
        mlflow = None
        if tracker is not None:
            run_ids = tracker.finish(arm_results)
            mlflow = {"tracking_uri": c.mlflow_tracking_uri, "experiment": c.mlflow_experiment_name, "run_ids": run_ids}
        results: dict[str, Any] = {
            "study": "monai_synth synthetic_evaluation",
            "output_dir": str(self.output_dir),
            "config": asdict(c),
            **environment_info(self.device),
            "seeds": {
                "split": c.seed,
                "synthetic_subsets": c.seed,
                "weights_and_shuffling": [c.training_seed + f for f in range(len(splits))],
                "phantom_real_first_seed": c.phantom_seed if c.real_dataset_dir is None else None,
                "phantom_generated_first_seed": c.phantom_generated_seed if self._uses_phantom_standin() else None,
            },
            "data": self._data_summary(real, class_names, splits, generated)
            | {
                "real_datalist_as_given": str(self._given_datalist) if given_splits else None,
                "external_test_sets": {
                    n: {
                        "source": c.test_datasets[n] if n in c.test_datasets else n,
                        "num_items": len(items),
                        "cases": sorted({str(i["case_id"]) for i in items}),
                    }
                    for n, items in external.items()
                },  # fmt: skip
                "real_subsets": self._real_subsets(splits),
                "volume_spacing_mm": {
                    name: sorted({tuple(case.get("spacing", ())) for a in arm_results[:1] for case in a["cases"][name]})
                    for name in case_sets
                    if name.endswith(VOLUME_SUFFIX)
                },  # fmt: skip
            },
            "test_sets": case_sets,
            "distance_units": dict(self._distance_units),
            "arms": arm_results,
            "statistics": statistics,
            "generative_metrics": generative,
            "mlflow": mlflow,
            "wall_time_seconds": timings,
        }
        timings["total_seconds"] = time.perf_counter() - start
        if distributed.is_rank_zero():  # under torchrun every rank holds the same results; rank 0 writes them
            samples = self._samples(real_items, generated) if c.figures else None
            write_report(results, self.output_dir, samples=samples, figures=c.figures)
        return results

    @staticmethod
    def _data_summary(real, class_names, splits, generated) -> dict[str, Any]:
        return {
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
        }

    def _tracked_params(self, arms, first_split, pools, real_source: str) -> dict[str, dict[str, Any]]:
        """MLflow parameters of every arm's run: the shared settings and the arm's own."""
        shared = {k: getattr(self.config, k) for k in _TRACKED_SETTINGS} | {"real_dataset": real_source}
        params = {}
        for arm in arms:
            real_train, _ = arm_training_items(arm, first_split["training"], pools, self.config.seed)
            params[arm.name] = shared | {
                "arm": arm.name,
                "kind": arm.kind,
                "synthetic_set": arm.synthetic_set or "",
                "num_synthetic": arm.num_synthetic,
                "num_real_train": len(real_train),
                "num_real": "all" if arm.num_real is None else arm.num_real,
                "hybrid_real_fraction": arm.real_fraction if arm.real_fraction is not None else "",
                "augment": arm.augment,
                "pretrain_arm": arm.pretrain_arm or "",
                "finetune_real_arm": arm.real_arm or "",
            }
        return params

    def _slice_axis(self) -> int:
        axis = self.config.real_dataset_kwargs.get("slice_axis", "auto")
        return 2 if axis in ("auto", None) else int(axis)

    def _item_spacing(self, items: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]] | None:
        """Per-item pixel size in mm (after crop + resize) of ``items``, or ``None`` when one is unknown."""
        c, out = self.config, []
        for item in items:
            key = str(item.get("image_path"))
            if key not in self._spacing_cache:
                self._spacing_cache[key] = pixel_spacing(item, c.image_size, self._volume_axis, c.pixel_spacing)
            if self._spacing_cache[key] is None:
                return None
            out.append(self._spacing_cache[key])
        return out

    def _knows_spacing(self, name: str, splits, test_sets) -> bool:
        """Whether the real test set ``name`` is scored in mm (every item's pixel size known, in every fold)."""
        if not name.startswith(TEST_R):
            return False  # test-G: generated files carry the source's geometry at best, not their own
        lists = [s["test"] for s in splits] if name == TEST_R else [test_sets[name][0]]
        return all(items and self._item_spacing(items) is not None for items in lists)

    def _check_num_real(self, splits) -> None:
        """Refuse a ``num_real`` larger than a fold's real training cases, before any training."""
        for fold, split in enumerate(splits):
            for r in self.config.num_real or []:
                try:
                    real_subset(split["training"], r, self.config.seed)
                except ValueError as e:
                    raise ValueError(f"Fold {fold}: {e}") from e

    def _real_subsets(self, splits) -> list[dict[str, list[str]]] | None:
        """Per fold, the real training cases of every ``num_real`` (``None`` -> ``"all"``)."""
        if self.config.num_real is None:
            return None
        return [
            {
                "all" if r is None else str(r): sorted({str(i["case_id"]) for i in real_subset(s["training"], r, self.config.seed)})
                for r in self.config.num_real
            }
            for s in splits
        ]  # fmt: skip

    def _check_leakage(self, splits, arms, generated, external=None) -> None:
        """Refuse any case, image file or byte-identical image shared by the training data of an arm and a test set."""
        pools = {name: gen.pool for name, gen in generated.items()}
        seed = self.config.seed
        for fold, split in enumerate(splits):
            real_tests = [("test-R", split["test"])] + [
                (f"external test set {n}", i) for n, i in (external or {}).items()
            ]
            tests = real_tests + [(f"test-G of {n}", g.test) for n, g in generated.items() if g.test]
            checks = [("real training/validation", split["training"] + split["validation"], real_tests)]
            checks += [
                (f"arm {arm.name}", sum(arm_training_items(arm, split["training"], pools, seed), []), tests)
                for arm in arms
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

    def _run_folds(self, arms, arm_results, splits, pools, test_sets, num_classes, class_names, tracker) -> None:
        """Every arm on every fold; the arm's MLflow handler (if any) goes to its trainer and evaluator.

        The best weights of a synthetic arm that a finetune arm pre-trains as are kept (in memory, for
        the fold) so that the finetune arm starts from them instead of training that arm again.
        """
        pretrain_names = {arm.pretrain_arm for arm in arms if arm.kind == "finetune"}
        for fold, split in enumerate(splits):
            if self.config.fold is not None and fold != self.config.fold:
                continue
            self._pretrained = {}
            fold_tests = {**test_sets, TEST_R: (split["test"], _item_ids(split["test"]))}
            for arm, record in zip(arms, arm_results):
                handlers = [tracker.handler(arm)] if tracker is not None else []
                self._run_arm(arm, record, fold, len(splits), split, pools, fold_tests, num_classes, class_names,
                              handlers, keep=arm.name in pretrain_names)  # fmt: skip
            self._pretrained = {}

    def _train_arm(
        self,
        arm: ArmSpec,
        fold: int,
        split,
        pools,
        num_classes: int,
        prefix: str,
        handlers,
        metric_prefix: str,
        initial_state: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.nn.Module, TrainingResult, dict[str, int]]:
        """Train one network on ``arm``'s training pairs (a real, synthetic or hybrid arm) with the study's settings.

        Args:
            arm: the arm (for a finetune arm: one of its two stages, see ``ArmSpec.pretraining`` / ``finetuning``).
            fold: the fold (seeds the initial weights, shuffling and augmentation: ``training_seed + fold``).
            split: the fold's real split (its ``validation`` items select the model).
            pools: generated set name -> training pool.
            num_classes: classes including background.
            prefix: prefix of log messages.
            handlers: MLflow handlers for the trainer and evaluator.
            metric_prefix: prefix of the logged metric names.
            initial_state: weights loaded into the freshly built network before training (``None``: the
                fold's initial weights, the same for every arm).

        Returns:
            ``(network with its best weights, training result, counts)``; counts holds ``num_real_train``,
            ``num_real_cases``, ``num_real_oversampled`` and ``num_synthetic_train``.
        """
        c = self.config
        real_train, synthetic_train = arm_training_items(arm, split["training"], pools, c.seed)
        real_used = oversample_real(real_train, len(synthetic_train), arm.real_fraction)
        train = real_used + synthetic_train
        counts = {
            "num_real_train": len(real_train),
            "num_real_cases": len({str(i["case_id"]) for i in real_train}),
            "num_real_oversampled": len(real_used),
            "num_synthetic_train": len(synthetic_train),
        }
        logger.info(
            "%s: %d real (%d case(s), %d after oversampling) + %d generated training pairs%s",
            prefix, len(real_train), counts["num_real_cases"], len(real_used), len(synthetic_train),
            "" if initial_state is None else ", starting from the pre-trained weights",
        )  # fmt: skip
        set_determinism(seed=c.training_seed + fold)  # same initial weights for every arm of a fold
        network = build_network(c.network, train[0]["image"].shape[0], num_classes, **c.network_kwargs)
        if initial_state is not None:
            network.load_state_dict(initial_state)
        augmentation = standard_augmentation(c.image_size, **c.augmentation_kwargs) if arm.augment else None
        training = train_segmentation_network(
            network,
            [_training_item(i) for i in train],
            [_training_item(i) for i in split["validation"]],
            num_classes,
            max_epochs=c.max_epochs,
            batch_size=c.batch_size,
            learning_rate=c.learning_rate,
            loss=c.loss,
            patience=c.patience,
            epoch_length=c.epoch_length,
            val_interval=c.val_interval,
            augmentation=augmentation,
            device=self.device,
            amp=c.amp,
            seed=c.training_seed + fold,
            log_prefix=prefix,
            train_handlers=handlers,
            val_handlers=handlers,
            metric_prefix=metric_prefix,
            optimizer=c.optimizer,
            momentum=c.momentum,
            nesterov=c.nesterov,
            weight_decay=c.weight_decay,
        )
        set_determinism(seed=None)
        return network, training, counts

    def _run_arm(
        self, arm: ArmSpec, record, fold, num_folds, split, pools, test_sets, num_classes, class_names, handlers,
        keep: bool = False,
    ) -> None:  # fmt: skip
        """Train ``arm`` on ``fold`` (``handlers`` attached to its trainer and evaluator), score every test set.

        A finetune arm trains in two stages: stage 1 is its synthetic arm (its kept best weights when that
        arm ran in this fold, else trained here with metric names ``fold<k>_pretrain_*``); stage 2 trains
        on its real arm's cases with the real arm's settings, from the stage-1 weights, with a fresh
        optimiser. ``keep``: remember this arm's best weights for the finetune arms of the fold.
        """
        c = self.config
        prefix = f"fold {fold + 1}/{num_folds} {arm.name}"
        pretraining: dict[str, Any] | None = None
        if arm.kind == "finetune":
            stage1 = arm.pretraining()
            if stage1.name in self._pretrained:
                state, stage1_training = self._pretrained[stage1.name]
                reused = True
                logger.info("%s: stage 1 = the best weights of %s (trained in this fold)", prefix, stage1.name)
            else:
                stage1_network, stage1_training, _ = self._train_arm(
                    stage1, fold, split, pools, num_classes, f"{prefix} stage 1 ({stage1.name})", handlers,
                    f"fold{fold}_pretrain_",
                )  # fmt: skip
                state, reused = _state_copy(stage1_network), False
            pretraining = {"arm": stage1.name, "reused": reused, "training": stage1_training.as_dict()}
            network, training, counts = self._train_arm(
                arm.finetuning(), fold, split, pools, num_classes, f"{prefix} stage 2 (as {arm.real_arm})", handlers,
                f"fold{fold}_", initial_state=state,
            )  # fmt: skip
            counts["num_synthetic_train"] = arm.num_synthetic
        else:
            network, training, counts = self._train_arm(
                arm, fold, split, pools, num_classes, prefix, handlers, f"fold{fold}_"
            )
            if keep:
                self._pretrained[arm.name] = (_state_copy(network), training)
        in_channels = split["training"][0]["image"].shape[0]  # generated sets are checked to have the same channels
        model_path = None
        if c.save_models:
            model_path = self.output_dir / "models" / _safe_name(arm.name) / f"fold{fold}" / "model.pt"
        if model_path is not None and distributed.is_rank_zero():
            save_study_model(
                model_path, network, c.network, c.network_kwargs, in_channels, num_classes,
                c.image_size, self._preprocessing, arm=arm.name, fold=fold, seed=c.training_seed + fold,
                best_epoch=training.best_epoch,
            )  # fmt: skip
        eval_start = time.perf_counter()
        for test_name, (items, ids) in test_sets.items():
            images = torch.as_tensor(np.stack([i["image"] for i in items]))
            labels = torch.as_tensor(np.stack([i["label"] for i in items]))
            predictions = predict_labels(network, images, c.batch_size, self.device)
            spacing = self._item_spacing(items) if self._distance_units.get(test_name) == "mm" else None
            scores = segmentation_scores(predictions, labels, num_classes, spacing=spacing)
            for row, (item, item_id) in enumerate(zip(items, ids)):
                case: dict[str, Any] = {"fold": fold, "item_id": item_id, "case_id": str(item["case_id"])}
                for score in SCORE_NAMES:
                    case[score] = dict(zip(class_names, scores[score][row].tolist()))
                    case[f"{score}_mean"] = float(class_mean(scores[score][row]))
                record["cases"][test_name].append(case)
            if test_name + VOLUME_SUFFIX in record["cases"]:
                for case_id, volume, spacing in volume_scores(
                    predictions, labels, items, num_classes, c.image_size, self._volume_axis
                ):
                    case = {"fold": fold, "item_id": case_id, "case_id": case_id, "spacing": list(spacing)}
                    for score in SCORE_NAMES:
                        case[score] = dict(zip(class_names, volume[score].tolist()))
                        case[f"{score}_mean"] = float(class_mean(volume[score]))
                    record["cases"][test_name + VOLUME_SUFFIX].append(case)
        eval_seconds = time.perf_counter() - eval_start
        fold_record = {
            "fold": fold,
            **counts,
            "num_validation": len(split["validation"]),
            "training": training.as_dict(),
            "train_seconds": training.seconds,
            "eval_seconds": eval_seconds,
            "model": None if model_path is None else model_path.relative_to(self.output_dir).as_posix(),
        }
        if pretraining is not None:
            # the budget, honestly: the fine-tune stage had the real arm's budget, the pre-training came on top
            steps = pretraining["training"]["iterations"]
            fold_record["pretraining"] = pretraining
            fold_record["real_cases"] = sorted(
                {str(i["case_id"]) for i in real_subset(split["training"], arm.num_real, c.seed)}
            )
            fold_record["optimizer_steps"] = {
                "pretraining": steps,
                "finetuning": training.iterations,
                "total": steps + training.iterations,
            }
            if not pretraining["reused"]:
                fold_record["train_seconds"] += pretraining["training"]["seconds"]
        record["folds"].append(fold_record)
        dice = np.nanmean([r["dice_mean"] for r in record["cases"][TEST_R] if r["fold"] == fold])
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
                seed=self.config.seed,
            )
        return out

    def _samples(self, real_items, generated, count: int = 8) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        samples = {"real": real_items[:count]}
        for name, gen in generated.items():
            samples[name] = list(gen.dataset.data)[:count]
        return {
            k: (np.stack([i["image"] for i in v]), np.stack([i["label"] for i in v])) for k, v in samples.items() if v
        }
