"""One command from a labelled dataset to a verdict: split, train generators, generate, study, report.

:class:`SyntheticEvaluationPipeline` (what ``synthetic_evaluation/configs/pipeline.json`` runs) chains the
bundles a user would otherwise run by hand. For every fold and every ``num_real`` ``R`` it writes the
fold's generator training datalist (the first ``R`` real training cases, by
:meth:`~monai_synth.evaluation.study.SyntheticEvaluationStudy.write_generator_datalist`), trains every
generator recipe on exactly that datalist through its own bundle's ``train.json``, draws ``num_synthetic``
pairs with its ``generate.json``, and trains the study arms (``real_r<R>``, ``hybrid-<gen>_r<R>_n<N>``,
``synthetic-<gen>_r<R>_n<N>``, ``finetune-<gen>_r<R>_n<N>``) on the same fold, scoring each on the fold's real test cases and every
external test set. A generator only ever receives the datalist its stage wrote, so no scored case can
reach it; the report checks it again from the written files (generator ids within the fold's training ids,
none among its validation or test ids).

Every stage (data, split, train, generate, diversity, arm) writes into ``<output_dir>/stages/<kind>-<label>-
<fingerprint>/``: the fingerprint hashes the stage's settings and the fingerprints of the stages it reads,
and ``complete.json`` (written atomically, last) marks it done. A rerun skips complete stages and redoes an
incomplete one from scratch (so a killed run, rerun with the same command, ends with the same
``results.json``); a changed setting changes the fingerprints of the stages that depend on it only.
``results.json`` holds what is reproducible (scores, statistics, generator metrics, the leakage check, the
stages); ``summary.json`` adds wall times and what ran or was skipped. MLflow (a local SQLite store by
default) gets one parent run per pipeline run and one nested run per stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_synth.evaluation.statistics import compare_arms, summarize_cases
from monai_synth.utils.io import read_json, write_json_atomic

__all__ = [
    "DEFAULT_GENERATORS",
    "Stage",
    "SyntheticEvaluationPipeline",
    "bundles_folder",
    "run_bundle",
    "stage_fingerprint",
]

logger = logging.getLogger(__name__)

#: The recipe used when ``generators`` is not given: a small paired DCGAN that trains in minutes on a CPU.
DEFAULT_GENERATORS: dict[str, dict[str, Any]] = {
    "dcgan": {"bundle": "paired_dcgan", "overrides": {"max_epochs": 8, "iterations_per_epoch": 50}},
}
#: Settings the pipeline gives every generator bundle itself (a recipe may not set them).
_OWNED_TRAIN = ("dataset_dir", "output_dir", "image_size", "models_dir")
_OWNED_GENERATE = ("generator_path", "generated_dir", "output_dir", "num_samples")
COMPLETE = "complete.json"
#: iterations per epoch of every segmentation arm unless ``--study`` sets ``epoch_length`` (equal budgets).
EQUAL_BUDGET_EPOCH_LENGTH = 20
PIPELINE_ARMS = ("real", "hybrid", "synthetic", "finetune")
_STATISTICS_SCORES = ("dice", "hd95")


def stage_fingerprint(kind: str, settings: Mapping[str, Any], upstream: Sequence[str] = ()) -> str:
    """12 hex digits of the sha256 of a stage's kind, settings (canonical JSON) and upstream fingerprints."""
    text = json.dumps({"kind": kind, "settings": settings, "upstream": list(upstream)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Stage:
    """One resumable step of the pipeline and its folder ``<root>/<kind>-<label>-<fingerprint>``.

    Attributes:
        kind: ``"data"``, ``"split"``, ``"train"``, ``"generate"``, ``"diversity"`` or ``"arm"``.
        label: what it is about, e.g. ``"dcgan-f0-r10"``.
        settings: everything that changes its output (JSON values).
        upstream: the stages whose outputs it reads.
        root: the folder holding every stage folder.
        outputs: what the stage reported (its ``complete.json`` ``outputs``), filled when it ran or was skipped.
    """

    kind: str
    label: str
    settings: dict[str, Any]
    upstream: list[Stage] = field(default_factory=list)
    root: Path = Path("stages")
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return stage_fingerprint(self.kind, self.settings, [u.fingerprint for u in self.upstream])

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.label}-{self.fingerprint}"

    @property
    def folder(self) -> Path:
        return self.root / self.name

    @property
    def complete(self) -> bool:
        return (self.folder / COMPLETE).is_file()


def bundles_folder(bundles_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the bundles: ``bundles_dir``, else ``./bundles``, else the one next to the package.

    Raises:
        FileNotFoundError: none of them exists.
    """
    candidates = (
        [Path(bundles_dir)] if bundles_dir else [Path("bundles"), Path(__file__).resolve().parents[2] / "bundles"]
    )
    for candidate in candidates:
        if (candidate / "paired_dcgan" / "configs").is_dir():
            return candidate
    raise FileNotFoundError(f"--bundles_dir: no bundles folder found at {[str(c) for c in candidates]}.")


def run_bundle(config_files: Sequence[str | os.PathLike], overrides: Mapping[str, Any]) -> None:
    """Run a bundle config in this process, as ``python -m monai.bundle run --config_file ... --key value``.

    The caller's working folder and ``sys.path`` are restored afterwards; logging keeps the caller's setup.

    Args:
        config_files: the config file(s), merged in order.
        overrides: ``{setting: value}`` (validated by the bundle's own ``check_overrides``).
    """
    import sys

    from monai.bundle import run

    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    try:
        run(config_file=[str(f) for f in config_files], logging_file=False, **dict(overrides))
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path


def _tag(num_real: int | None) -> str:
    return "all" if num_real is None else str(num_real)


def _case_ids(datalist: str | os.PathLike, key: str = "training") -> list[str]:
    return sorted({str(item["case_id"]) for item in read_json(datalist).get(key, [])})


class SyntheticEvaluationPipeline:
    """Labelled dataset -> per-fold generators -> generated pairs -> study arms -> ``report.md`` with a verdict.

    Args:
        output_dir: folder receiving ``stages/``, ``results.json``, ``summary.json``, ``report.md``, ``figures/``.
        real_dataset_dir: the labelled real data (datalist JSON or folder); ``None``: ``phantom_samples``
            built-in phantom slices written to a data stage first.
        test_datasets: ``{name: datalist or folder}`` of external real test sets, scored by every arm.
        folds: 1 (one split by ``val_fraction`` / ``test_fraction``) or k >= 2 (group k-fold).
        num_real: numbers ``R`` of real training cases (``None`` entries: all of the fold's training cases).
        num_synthetic: generated pairs drawn per generator and used by its synthetic / hybrid arms.
        generators: ``{name: {"bundle": "paired_dcgan" | "datasetgan", "overrides": {train.json settings},
            "generate_overrides": {generate.json settings}}}``; ``None``: :data:`DEFAULT_GENERATORS`.
        arms: arm kinds from ``("real", "hybrid", "synthetic", "finetune")``; a finetune arm pre-trains on the
            generator's pairs (as its synthetic arm, trained again inside the finetune stage), then fine-tunes
            on the ``R`` real cases with the real arm's budget.
        image_size: size of every image (real data, generators, segmentation networks).
        study: further :class:`~monai_synth.evaluation.config.StudyConfig` settings of every arm
            (``max_epochs``, ``batch_size``, ``network``, ...).
        val_fraction, test_fraction: the real split (see ``StudyConfig``).
        phantom_samples: phantom slices written when ``real_dataset_dir`` is ``None``.
        compute_fid: FID / KID of every generated set against the real images (offline Inception weights).
        diversity_samples: pairs drawn (and real images compared) for the diversity figure of every generator.
        seed: the split, generator and study seed.
        device: device of every stage.
        mlflow_tracking_uri: MLflow store (``None``: no tracking), e.g. ``sqlite:///runs/pipeline/mlflow.db``.
        mlflow_experiment_name: its experiment.
        bundles_dir: folder holding the bundles (default: ``./bundles`` or the one next to the package).
        feature_extractor: a feature extractor for FID / KID instead of Inception (tests).

    Raises:
        ValueError: bad settings (named) or a recipe that sets a setting the pipeline owns.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        real_dataset_dir: str | os.PathLike | None = None,
        test_datasets: Mapping[str, str] | None = None,
        folds: int = 2,
        num_real: int | Sequence[int | None] | None = (10, None),
        num_synthetic: int = 100,
        generators: Mapping[str, Mapping[str, Any]] | None = None,
        arms: Sequence[str] = ("real", "hybrid"),
        image_size: int = 64,
        study: Mapping[str, Any] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        phantom_samples: int = 60,
        compute_fid: bool = True,
        diversity_samples: int = 64,
        seed: int = 0,
        device: str = "cpu",
        mlflow_tracking_uri: str | None = None,
        mlflow_experiment_name: str = "synthetic_evaluation_pipeline",
        bundles_dir: str | os.PathLike | None = None,
        feature_extractor: Any = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.real_dataset_dir = None if real_dataset_dir is None else os.fspath(real_dataset_dir)
        self.test_datasets = {str(k): os.fspath(v) for k, v in (test_datasets or {}).items()} or None
        self.num_real = self._num_real(num_real)
        if isinstance(num_synthetic, bool) or not isinstance(num_synthetic, int) or num_synthetic < 1:
            raise ValueError(f"--num_synthetic must be an integer >= 1, got {num_synthetic!r}.")
        self.num_synthetic = int(num_synthetic)
        self.generators = self._generators(DEFAULT_GENERATORS if generators is None else generators)
        kinds = [str(a).lower() for a in arms]
        if not kinds or set(kinds) - set(PIPELINE_ARMS):
            raise ValueError(f"--arms must be a non-empty subset of {list(PIPELINE_ARMS)}, got {list(arms)}.")
        self.arms = [k for k in PIPELINE_ARMS if k in kinds]
        self.image_size = int(image_size)
        self.phantom_samples = int(phantom_samples)
        self.compute_fid = bool(compute_fid)
        self.diversity_samples = int(diversity_samples)
        self.seed = int(seed)
        self.device = str(device)
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.mlflow_experiment_name = mlflow_experiment_name
        self.bundles = bundles_folder(bundles_dir)
        self.feature_extractor = feature_extractor
        self.study_settings = dict(study or {})
        owned = {"output_dir", "real_dataset_dir", "synthetic_datalist", "arms", "num_synthetic", "num_real"}
        owned |= {"folds", "fold", "test_datasets", "image_size", "seed", "val_fraction", "test_fraction", "device"}
        bad = sorted(set(self.study_settings) & owned)
        if bad:
            raise ValueError(f"--study must not set {bad}: they are pipeline settings of their own (--{bad[0]}).")
        # every arm gets the same optimiser budget: a fixed number of iterations per epoch. With epochs as
        # passes over the data, a hybrid arm of 30 real + 200 generated pairs takes ~8x the steps of real_r30
        # and the verdict would measure the extra training, not the generated data. `epoch_length: None` in
        # --study restores passes over the data (and the report then says the budgets differ).
        self.study_settings.setdefault("epoch_length", EQUAL_BUDGET_EPOCH_LENGTH)
        self.split_settings = {
            "folds": int(folds),
            "val_fraction": float(val_fraction),
            "test_fraction": float(test_fraction),
        }
        # every study setting is checked now, before anything runs
        self._study_config(folds=int(folds), fold=0, output_dir=str(self.output_dir))
        self._stage_root = self.output_dir / "stages"
        self.stages: list[dict[str, Any]] = []
        self._tracker: Any = None

    # -- settings -----------------------------------------------------------------------------------
    @staticmethod
    def _num_real(value: Any) -> list[int | None]:
        if value is None:
            return [None]
        values = [value] if isinstance(value, int) and not isinstance(value, bool) else list(value)
        values = [None if isinstance(v, str) and v.lower() in ("null", "none", "all") else v for v in values]
        if not values or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in values
        ):
            raise ValueError(f"--num_real must hold integers >= 1 or null (all), got {value!r}.")
        if len(set(values)) != len(values):
            raise ValueError(f"--num_real holds a value twice: {values}.")
        return values

    @staticmethod
    def _generators(value: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        if not isinstance(value, Mapping) or not value:
            raise ValueError(f"--generators must be {{name: {{'bundle': ..., 'overrides': {{...}}}}}}, got {value!r}.")
        out = {}
        for name, spec in value.items():
            if not isinstance(spec, Mapping) or spec.get("bundle") not in ("paired_dcgan", "datasetgan"):
                raise ValueError(
                    f"--generators {name!r}: 'bundle' must be 'paired_dcgan' or 'datasetgan', got {spec!r}."
                )
            unknown = sorted(set(spec) - {"bundle", "overrides", "generate_overrides"})
            if unknown:
                raise ValueError(
                    f"--generators {name!r}: unknown key(s) {unknown}; use bundle, overrides, generate_overrides."
                )
            train, generate = dict(spec.get("overrides") or {}), dict(spec.get("generate_overrides") or {})
            for owned, given, what in (
                (_OWNED_TRAIN, train, "overrides"),
                (_OWNED_GENERATE, generate, "generate_overrides"),
            ):
                bad = sorted(set(given) & set(owned))
                if bad:
                    raise ValueError(f"--generators {name!r} {what} set {bad}, which the pipeline sets itself.")
            if spec["bundle"] == "datasetgan" and train.get("mode", "image") != "paired":
                raise ValueError(
                    f"--generators {name!r}: a datasetgan recipe must train image + mask pairs: add 'mode': 'paired' "
                    "to its overrides."
                )
            out[str(name)] = {"bundle": spec["bundle"], "overrides": train, "generate_overrides": generate}
        return out

    def _study_config(self, **changes: Any):
        from monai_synth.evaluation.config import StudyConfig

        settings = {
            "real_dataset_dir": self.real_dataset_dir,
            "test_datasets": self.test_datasets,
            "image_size": self.image_size,
            "seed": self.seed,
            "device": self.device,
            "synthetic_test_fraction": 0.0,
            "compute_fid": False,
            "figures": False,
            "val_fraction": self.split_settings["val_fraction"],
            "test_fraction": self.split_settings["test_fraction"],
            **self.study_settings,
        }
        return StudyConfig(**(settings | changes))

    # -- stages -------------------------------------------------------------------------------------
    def _stage(self, kind: str, label: str, settings: Mapping[str, Any], upstream: Sequence[Stage] = ()) -> Stage:
        return Stage(kind, label, json.loads(json.dumps(settings, default=str)), list(upstream), self._stage_root)

    def _run_stage(self, stage: Stage, work: Callable[[Path], Mapping[str, Any] | None]) -> dict[str, Any]:
        """Run ``work(folder)`` unless ``stage`` is complete; returns what its ``complete.json`` holds."""
        record = {"stage": stage.name, "kind": stage.kind, "label": stage.label}
        if stage.complete:
            logger.info("Stage %s: complete, skipped.", stage.name)
            self.stages.append(record | {"ran": False, "seconds": 0.0})
            content = read_json(stage.folder / COMPLETE)
            stage.outputs = dict(content["outputs"])
            return content
        if stage.folder.exists():
            logger.info("Stage %s: incomplete (an interrupted run), redone from scratch.", stage.name)
            shutil.rmtree(stage.folder)
        stage.folder.mkdir(parents=True)
        logger.info("Stage %s: running.", stage.name)
        start = time.perf_counter()
        outputs = dict(work(stage.folder) or {})
        seconds = time.perf_counter() - start
        content = {
            "kind": stage.kind,
            "label": stage.label,
            "fingerprint": stage.fingerprint,
            "settings": stage.settings,
            "upstream": [u.name for u in stage.upstream],
            "outputs": outputs,
        }
        write_json_atomic(stage.folder / COMPLETE, content)  # last: the stage is complete from here on
        stage.outputs = outputs
        self.stages.append(record | {"ran": True, "seconds": seconds})
        if self._tracker is not None:
            self._tracker.stage(
                stage.name, {"kind": stage.kind, "label": stage.label, **stage.settings}, outputs, seconds
            )
        return content

    def _data_stage(self) -> tuple[Stage | None, str]:
        if self.real_dataset_dir is not None:
            return None, self.real_dataset_dir
        from monai_synth.data.phantom import write_phantom_dataset

        settings = {"phantom_samples": self.phantom_samples, "image_size": self.image_size, "seed": self.seed}
        stage = self._stage("data", "phantom", settings)
        self._run_stage(
            stage,
            lambda folder: {
                "datalist": write_phantom_dataset(folder, self.phantom_samples, self.image_size, seed=self.seed)
                .relative_to(folder)
                .as_posix()
            },
        )
        return stage, str(stage.folder / "datalist.json")

    def _split_stage(self, data: Stage | None, real: str, fold: int, num_real: int | None) -> Stage:
        from monai_synth.evaluation.study import SyntheticEvaluationStudy

        settings = {"real_dataset_dir": real if data is None else None, "fold": fold, "num_real": num_real}
        settings |= self.split_settings | {"seed": self.seed, "image_size": self.image_size}
        stage = self._stage("split", f"f{fold}-r{_tag(num_real)}", settings, [data] if data else [])

        def work(folder: Path) -> dict[str, Any]:
            config = self._study_config(
                real_dataset_dir=real, folds=self.split_settings["folds"], output_dir=str(folder)
            )
            study = SyntheticEvaluationStudy(config)
            path = study.write_generator_datalist(folder / "generator_training.json", fold, num_real)
            return {"datalist": path.name, "num_cases": len(_case_ids(path))}

        self._run_stage(stage, work)
        return stage

    def _train_stage(self, name: str, spec: Mapping[str, Any], split: Stage, fold: int, num_real: int | None) -> Stage:
        settings = {"generator": name, "bundle": spec["bundle"], "overrides": spec["overrides"], "seed": self.seed}
        settings |= {"image_size": self.image_size, "device": self.device}
        stage = self._stage("train", f"{name}-f{fold}-r{_tag(num_real)}", settings, [split])

        def work(folder: Path) -> dict[str, Any]:
            overrides = {"seed": self.seed, "device": self.device, **spec["overrides"]}
            overrides |= {"dataset_dir": str(split.folder / "generator_training.json"), "output_dir": str(folder)}
            overrides["models_dir"] = str(folder / "models")  # the bundle's model-zoo copy stays in the stage
            overrides["image_size"] = self.image_size
            run_bundle([self.bundles / spec["bundle"] / "configs" / "train.json"], overrides)
            if not (folder / "generator.pt").is_file():
                raise RuntimeError(
                    f"Stage {stage.name}: {spec['bundle']} train.json wrote no generator.pt in {folder}."
                )
            return {"generator": "generator.pt", "grid": "samples/latest.png"}

        self._run_stage(stage, work)
        return stage

    def _generate_stage(
        self, name: str, spec: Mapping[str, Any], train: Stage, fold: int, num_real: int | None
    ) -> Stage:
        settings = {"generate_overrides": spec["generate_overrides"], "num_synthetic": self.num_synthetic}
        settings |= {"seed": self.seed, "device": self.device}
        stage = self._stage("generate", f"{name}-f{fold}-r{_tag(num_real)}", settings, [train])

        def work(folder: Path) -> dict[str, Any]:
            overrides = {"seed": self.seed, "device": self.device, **spec["generate_overrides"]}
            overrides |= {
                "output_dir": str(folder),
                "generator_path": str(train.folder / "generator.pt"),
                "generated_dir": str(folder / "generated"),
                "num_samples": self.num_synthetic,
            }
            run_bundle([self.bundles / spec["bundle"] / "configs" / "generate.json"], overrides)
            count = len(read_json(folder / "generated" / "datalist.json").get("training", []))
            return {"datalist": "generated/datalist.json", "num_pairs": count}

        self._run_stage(stage, work)
        return stage

    def _diversity_stage(self, name: str, train: Stage, data: Stage | None, real: str, fold: int, num_real) -> Stage:
        settings = {"samples": self.diversity_samples, "real": real if data is None else None, "seed": self.seed}
        upstream = [train] + ([data] if data else [])
        stage = self._stage("diversity", f"{name}-f{fold}-r{_tag(num_real)}", settings, upstream)
        self._run_stage(stage, lambda folder: self.generator_diversity(train.folder / "generator.pt", real))
        return stage

    def generator_diversity(self, generator_path: str | os.PathLike, real: str) -> dict[str, Any]:
        """Diversity of a generator: its per-pixel spread relative to the real images, and its duplicate rate.

        ``diversity_samples`` pairs are drawn from the seeds ``0 .. n - 1`` and ``diversity_samples`` real
        images (all of them when fewer) are drawn with the pipeline seed.

        Returns:
            ``{"diversity_ratio", "duplicate_rate", "num_generated_images", "num_real_images"}``.
        """
        import torch
        from monai.data import Dataset

        from monai_synth.data.pipeline import PairedSliceDataset
        from monai_synth.handlers.quality import real_pairs_sample
        from monai_synth.inferers import latent_spec
        from monai_synth.metrics.diversity import diversity_ratio, generate_pairs, generated_duplicate_rate
        from monai_synth.networks.latents import latents_from_seeds
        from monai_synth.transforms import EncodePairedd
        from monai_synth.utils.export import load_generator

        network, config = load_generator(generator_path, device="cpu")
        dim, distribution = latent_spec(config)
        with torch.no_grad():
            pairs = generate_pairs(
                network, latents_from_seeds(range(self.diversity_samples), dim, distribution=distribution)
            )
        channels = int(config["data"]["image_channels"])
        dataset = PairedSliceDataset(real, self.image_size, seed=self.seed)
        encoded = Dataset(dataset.data, transform=EncodePairedd(num_classes=dataset.num_classes))
        real_pairs = real_pairs_sample(encoded, self.diversity_samples, self.seed)
        return {
            "diversity_ratio": diversity_ratio(pairs[:, :channels].clamp(-1, 1), real_pairs[:, :channels]),
            "duplicate_rate": generated_duplicate_rate(pairs, channels),
            "num_generated_images": int(pairs.shape[0]),
            "num_real_images": int(real_pairs.shape[0]),
        }

    def _arm_stage(self, kind: str, name: str | None, split: Stage, generate: Stage | None, real: str, fold: int,
                   num_real: int | None, data: Stage | None) -> tuple[str, Stage]:  # fmt: skip
        from monai_synth.evaluation.study import SyntheticEvaluationStudy

        arm = f"real_r{_tag(num_real)}" if kind == "real" else f"{kind}-{name}_r{_tag(num_real)}_n{self.num_synthetic}"
        settings = {"kind": kind, "fold": fold, "num_real": num_real, "study": self.study_settings}
        settings |= self.split_settings | {"seed": self.seed, "image_size": self.image_size, "device": self.device}
        settings |= {"real": real if data is None else None, "test_datasets": self.test_datasets}
        settings |= {"compute_fid": self.compute_fid and kind == "hybrid"}
        upstream = [split] + ([generate] if generate is not None else []) + ([data] if data else [])
        stage = self._stage("arm", f"{arm}-f{fold}", settings, upstream)

        def work(folder: Path) -> dict[str, Any]:
            changes: dict[str, Any] = {"real_dataset_dir": real, "folds": self.split_settings["folds"], "fold": fold}
            changes |= {
                "output_dir": str(folder),
                "arms": [kind],
                "num_real": [num_real] if kind != "synthetic" else None,
            }
            changes["compute_fid"] = settings["compute_fid"]
            if generate is not None:
                changes["synthetic_datalist"] = {name: str(generate.folder / "generated" / "datalist.json")}
                changes["num_synthetic"] = [self.num_synthetic]
            config = self._study_config(**changes)
            results = SyntheticEvaluationStudy(config, feature_extractor=self.feature_extractor).run()
            (record,) = results["arms"]
            fold_split = results["data"]["splits"][fold]
            trained = record["folds"][0]
            steps = trained.get("optimizer_steps") or {"total": trained["training"]["iterations"]}
            return {
                "arm": arm,
                "cases": record["cases"],
                "distance_units": dict(results.get("distance_units") or {}),
                "class_names": list(results["data"]["class_names"].values())[1:]
                if isinstance(results["data"]["class_names"], dict)
                else results["data"]["class_names"],
                "fold_split": fold_split,
                "num_real_train": record["folds"][0]["num_real_train"],
                "num_synthetic_train": record["folds"][0]["num_synthetic_train"],
                "best_epoch": record["folds"][0]["training"].get("best_epoch"),
                "optimizer_steps": steps,
                "generative_metrics": (results.get("generative_metrics") or {}).get(name),
            }

        self._run_stage(stage, work)
        return arm, stage

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) every stage, then write ``results.json``, ``summary.json``, ``report.md`` and figures.

        Returns:
            What ``results.json`` holds.
        """
        start = time.perf_counter()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.stages = []
        if self.mlflow_tracking_uri:
            from monai_synth.evaluation.tracking import PipelineTracker

            self._tracker = PipelineTracker(self.mlflow_tracking_uri, self.mlflow_experiment_name, str(self.output_dir))
            self._tracker.start(self.settings())
        try:
            results = self._run_stages()
        except BaseException:
            if self._tracker is not None:
                self._tracker.finish("FAILED")
            raise
        from monai_synth.evaluation.pipeline_report import write_pipeline_report

        write_json_atomic(self.output_dir / "results.json", results)
        summary = {
            "wall_time_seconds": time.perf_counter() - start,
            "stages_run": sum(s["ran"] for s in self.stages),
            "stages_skipped": sum(not s["ran"] for s in self.stages),
            "stages": self.stages,
            "diversity": results["generators"],
            "verdict": results["verdict"],
        }
        write_pipeline_report(results, self.output_dir)
        summary["wall_time_seconds"] = time.perf_counter() - start
        write_json_atomic(self.output_dir / "summary.json", summary)
        if self._tracker is not None:
            self._tracker.finish("FINISHED", {"wall_time_seconds": summary["wall_time_seconds"]})
        for name, info in results["generators"].items():
            for run in info["runs"]:
                logger.info(
                    "Generator %s, fold %d, R=%s: diversity ratio %s (%d generated vs %d real images), duplicate rate %s.",
                    name, run["fold"], _tag(run["num_real"]), run["diversity_ratio"], run["num_generated_images"],
                    run["num_real_images"], run["duplicate_rate"],
                )  # fmt: skip
        for text in results["verdict"].values():
            logger.info("Verdict: %s", text)
        logger.info("Pipeline done in %.1f s: %s", summary["wall_time_seconds"], self.output_dir / "report.md")
        return results

    def settings(self) -> dict[str, Any]:
        """The pipeline's settings (what ``results.json`` records; no output folder, so two runs compare)."""
        return {
            "real_dataset_dir": self.real_dataset_dir,
            "test_datasets": self.test_datasets,
            "num_real": self.num_real,
            "num_synthetic": self.num_synthetic,
            "generators": self.generators,
            "arms": self.arms,
            "image_size": self.image_size,
            "study": self.study_settings,
            **self.split_settings,
            "phantom_samples": self.phantom_samples if self.real_dataset_dir is None else None,
            "compute_fid": self.compute_fid,
            "diversity_samples": self.diversity_samples,
            "seed": self.seed,
            "device": self.device,
        }

    def _run_stages(self) -> dict[str, Any]:
        data, real = self._data_stage()
        folds = self.split_settings["folds"]
        arm_outputs: dict[str, list[dict[str, Any]]] = {}
        arm_meta: dict[str, dict[str, Any]] = {}
        generators: dict[str, dict[str, Any]] = {}
        leakage: list[dict[str, Any]] = []
        for fold in range(folds):
            for num_real in self.num_real:
                split = self._split_stage(data, real, fold, num_real)
                trained: dict[str, tuple[Stage, Stage]] = {}
                for name, spec in self.generators.items():
                    train = self._train_stage(name, spec, split, fold, num_real)
                    generate = self._generate_stage(name, spec, train, fold, num_real)
                    diversity = self._diversity_stage(name, train, data, real, fold, num_real)
                    trained[name] = (train, generate)
                    generators.setdefault(name, {"bundle": spec["bundle"], "runs": []})["runs"].append(
                        {
                            "fold": fold,
                            "num_real": num_real,
                            "train_stage": train.name,
                            "generate_stage": generate.name,
                            "grid": f"stages/{train.name}/samples/latest.png",
                            **diversity.outputs,
                        }
                    )
                plan: list[tuple[str, str | None, Stage | None]] = []
                if "real" in self.arms:
                    plan.append(("real", None, None))
                for kind in ("hybrid", "synthetic", "finetune"):
                    if kind in self.arms:
                        plan += [(kind, name, gen) for name, (_, gen) in trained.items()]
                fold_split = None
                for kind, name, generate in plan:
                    arm, stage = self._arm_stage(kind, name, split, generate, real, fold, num_real, data)
                    out = stage.outputs
                    fold_split = out["fold_split"]
                    arm_meta.setdefault(arm, {"kind": kind, "generator": name, "num_real": num_real,
                                              "num_synthetic": 0 if kind == "real" else self.num_synthetic,
                                              "class_names": out["class_names"], "stages": []})  # fmt: skip
                    arm_meta[arm]["stages"].append(stage.name)
                    arm_outputs.setdefault(arm, []).append(out)
                    if out.get("generative_metrics"):
                        run = next(
                            r for r in generators[name]["runs"] if r["fold"] == fold and r["num_real"] == num_real
                        )
                        run["fid_kid"] = out["generative_metrics"]
                if fold_split is not None:
                    leakage += self._leakage(split, trained, fold, num_real, fold_split)
        return self._results(arm_outputs, arm_meta, generators, leakage)

    def _leakage(self, split: Stage, trained, fold: int, num_real, fold_split: Mapping[str, list[str]]) -> list[dict]:
        """The case-id check, from the written files: what each generator trained on vs the fold's cases."""
        rows = []
        training, held_out = set(fold_split["training"]), set(fold_split["validation"]) | set(fold_split["test"])
        external = set()
        for source in (self.test_datasets or {}).values():
            path = Path(source) / "datalist.json" if Path(source).is_dir() else Path(source)
            if path.suffix == ".json" and path.is_file():
                content = read_json(path)
                external |= {
                    str(i.get("case_id"))
                    for k in ("training", "test")
                    for i in content.get(k, [])
                    if isinstance(i, dict)
                }
        for name, (train, _) in trained.items():
            # the datalist the generator's own summary says it read (the split stage's file)
            summary = train.folder / "summary.json"
            source = read_json(summary)["data"]["source"] if summary.is_file() else None
            source = Path(source) if source else split.folder / "generator_training.json"
            ids = set(_case_ids(source))
            ok = ids <= training and not ids & held_out and not ids & external
            rows.append({
                "generator": name, "fold": fold, "num_real": num_real,
                "generator_training_file": f"stages/{split.name}/{source.name}",
                "num_generator_cases": len(ids), "num_fold_training_cases": len(training),
                "subset_of_fold_training": ids <= training, "overlap_with_validation_or_test": sorted(ids & held_out),
                "overlap_with_external_tests": sorted(ids & external), "ok": ok,
            })  # fmt: skip
            if not ok:
                raise ValueError(
                    f"Leakage: the {name} generator of fold {fold}, R={_tag(num_real)} saw scored cases: {rows[-1]}"
                )
        return rows

    def _results(self, arm_outputs, arm_meta, generators, leakage) -> dict[str, Any]:
        class_names = next(iter(arm_meta.values()))["class_names"]
        arms: dict[str, dict[str, Any]] = {}
        distance_units: dict[str, str] = {}  # per test set: "mm" when every case's pixel spacing was known
        for arm, outs in arm_outputs.items():
            cases = {}
            for out in outs:
                distance_units.update(out.get("distance_units") or {})
                for test_name, records in out["cases"].items():
                    cases.setdefault(test_name, []).extend(records)
            arms[arm] = {
                **{k: v for k, v in arm_meta[arm].items() if k != "class_names"},
                "optimizer_steps": [out.get("optimizer_steps") for out in outs],
                "cases": cases,
                "summary": {t: summarize_cases(r, class_names) for t, r in cases.items()},
            }
        test_sets = sorted({t for a in arms.values() for t in a["cases"]}, key=lambda t: (t != "test_R", t))
        statistics: dict[str, dict[str, Any]] = {}
        for test_name in test_sets:
            statistics[test_name] = {}
            for num_real in self.num_real:
                group = {n: a["cases"][test_name] for n, a in arms.items() if a["num_real"] == num_real}
                statistics[test_name][_tag(num_real)] = {s: compare_arms(group, s) for s in _STATISTICS_SCORES}
        for info in generators.values():
            for key in ("diversity_ratio", "duplicate_rate"):
                values = [r[key] for r in info["runs"] if r.get(key) is not None]
                info[f"{key}_mean"] = float(np.mean(values)) if values else None
        results = {
            "pipeline": "monai_synth synthetic_evaluation pipeline",
            "settings": self.settings(),
            "class_names": class_names,
            "test_sets": test_sets,
            "distance_units": distance_units,
            "arms": arms,
            "statistics": statistics,
            "generators": generators,
            "leakage_check": {"ok": all(r["ok"] for r in leakage), "checks": leakage},
            "stages": sorted({s["stage"] for s in self.stages}),
        }
        from monai_synth.evaluation.pipeline_report import verdicts

        results["verdict"] = verdicts(results)
        from monai_synth.evaluation.report import to_json_safe

        return to_json_safe(results)
