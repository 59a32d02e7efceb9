"""MLflow tracking of the downstream study: one run per arm, logged by MONAI's ``MLFlowHandler``.

:class:`StudyTracker` opens one MLflow run per arm when the study starts (tagged with the study's
output folder), gives the study one ``monai.handlers.MLFlowHandler`` per arm to attach to that arm's
``SupervisedTrainer`` and ``SupervisedEvaluator`` in every fold (as the training bundles attach it to
their trainers), and when the study ends logs each arm's summary scores and closes the runs.

What a run holds: the arm's parameters (``arm``, ``kind``, ``synthetic_set``, ``num_synthetic``,
``num_real_train``, ``augment``, ``pretrain_arm`` / ``finetune_real_arm`` of a finetune arm, and the shared
settings ``network``, ``max_epochs``, ``image_size``, ``learning_rate``, ``batch_size``, ``loss``, ``folds``,
``seed``, ``patience``, ``real_dataset``), the learning curves ``fold<k>_train_loss`` and ``fold<k>_val_dice``
per epoch (a finetune arm that trains its own pre-training stage also ``fold<k>_pretrain_*``), and after the study
``<test set>_<score>_mean`` / ``_std`` (e.g. ``test_R_dice_mean``) and ``train_seconds``.

MLflow 3 refuses the plain file store (``file:`` / ``./mlruns``); a local SQLite store needs no server:
``sqlite:///<output_dir>/mlflow.db`` (run artifacts then go to ``mlruns/`` next to it).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monai_synth.evaluation.arms import ArmSpec
from monai_synth.evaluation.segmentation import SCORE_NAMES

__all__ = ["has_mlflow", "require_mlflow", "StudyTracker", "PipelineTracker"]

# mlflow is imported only when a study logs to it (its import takes seconds)
has_mlflow = importlib.util.find_spec("mlflow") is not None


def require_mlflow() -> None:
    """Raise ``ImportError`` (saying what to install) when mlflow is missing."""
    if not has_mlflow:
        raise ImportError("mlflow_tracking_uri is set but mlflow is not installed: `pip install mlflow`.")


def _metric_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- /]+", "_", text)


@contextmanager
def _explicit_tracking_uri() -> Iterator[None]:
    """Hide ``MLFLOW_TRACKING_URI`` while handlers are built: the study's own setting wins.

    ``MLFlowHandler`` prefers that variable to its ``tracking_uri`` argument, and ``mlflow.set_tracking_uri``
    sets it process-wide; the study records ``mlflow_tracking_uri`` in ``results.json``, so that is where
    its runs must go. The handler's client keeps the store it was built with.
    """
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


class StudyTracker:
    """One MLflow run per arm of a study, filled by a MONAI ``MLFlowHandler`` per arm.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///runs/eval/mlflow.db`` (its folder is created);
            it wins over a ``MLFLOW_TRACKING_URI`` environment variable.
        experiment_name: experiment receiving the runs (created when missing).
        study_tag: value of the ``monai_synth.study`` tag of every run (the study's output folder).

    Raises:
        ImportError: mlflow is not installed.

    Example::

        tracker = StudyTracker("sqlite:///runs/eval/mlflow.db", "synthetic_evaluation", "runs/eval")
        tracker.start(arms, {arm.name: {...params...} for arm in arms})
        train_segmentation_network(..., train_handlers=[tracker.handler(arm)], val_handlers=[tracker.handler(arm)],
                                   metric_prefix=f"fold{fold}_")
        run_ids = tracker.finish(results["arms"])
    """

    def __init__(self, tracking_uri: str, experiment_name: str, study_tag: str) -> None:
        require_mlflow()
        self.tracking_uri = str(tracking_uri)
        self.experiment_name = str(experiment_name)
        self.study_tag = str(study_tag)
        self.handlers: dict[str, Any] = {}
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)

    def start(self, arms: Sequence[ArmSpec], params: Mapping[str, Mapping[str, Any]]) -> None:
        """Open one run per arm (named after it) and its ``MLFlowHandler``, before any training.

        The runs are created here rather than looked up by name by the handlers, so that a study
        never appends to a run an earlier, interrupted study left open under the same name.

        Args:
            arms: the study's arms.
            params: arm name -> parameters logged to its run when its first training starts.
        """
        from monai.handlers import MLFlowHandler

        experiment_id = None
        for arm in arms:
            with _explicit_tracking_uri():
                handler = MLFlowHandler(
                    tracking_uri=self.tracking_uri,
                    iteration_log=False,  # the epoch means of the losses are logged, not every step
                    epoch_log=True,
                    experiment_name=self.experiment_name,
                    run_name=arm.name,
                    experiment_param=dict(params[arm.name]),
                    close_on_complete=False,  # one run spans every fold of the arm: closed by finish()
                )
            if experiment_id is None:
                experiment = handler.client.get_experiment_by_name(self.experiment_name)
                experiment_id = (
                    experiment.experiment_id
                    if experiment is not None
                    else handler.client.create_experiment(
                        self.experiment_name, artifact_location=handler.artifact_location
                    )
                )
            handler.cur_run = handler.client.create_run(
                experiment_id,
                run_name=arm.name,
                tags={
                    "monai_synth.study": self.study_tag,
                    "mlflow.note.content": f"monai_synth synthetic_evaluation arm {arm.name}",
                },
            )
            self.handlers[arm.name] = handler

    def handler(self, arm: ArmSpec) -> Any:
        """The arm's ``MLFlowHandler``: attach it to the arm's trainer and evaluator in every fold."""
        return self.handlers[arm.name]

    def finish(self, arm_results: Sequence[Mapping[str, Any]]) -> list[str]:
        """Log every arm's summary scores and training time, then close its run as finished.

        Args:
            arm_results: the study's ``results["arms"]`` (with ``"summary"`` and ``"folds"`` filled).

        Returns:
            The run ids, in the order of ``arm_results``.
        """
        from mlflow.entities import Metric

        run_ids = []
        now = int(time.time() * 1000)
        for arm in arm_results:
            handler = self.handlers[arm["name"]]
            metrics = []
            for test_name, summary in arm["summary"].items():
                for score in SCORE_NAMES:
                    for stat in ("mean", "std"):
                        value = summary[score][stat]
                        if value is not None and math.isfinite(value):
                            metrics.append(Metric(_metric_name(f"{test_name}_{score}_{stat}"), float(value), now, 0))
            metrics.append(Metric("train_seconds", float(sum(f["train_seconds"] for f in arm["folds"])), now, 0))
            run_id = handler.cur_run.info.run_id
            handler.client.log_batch(run_id, metrics=metrics)
            handler.close()
            run_ids.append(run_id)
        return run_ids

    def fail(self) -> None:
        """Mark the runs still open as failed (the study stopped with an error)."""
        for handler in self.handlers.values():
            if handler.cur_run is not None:
                handler.client.set_terminated(handler.cur_run.info.run_id, "FAILED")
                handler.cur_run = None


def _param_text(value: Any) -> str:
    return str(value)[:500]  # MLflow limits parameter values


class PipelineTracker:
    """One parent MLflow run per pipeline run and one nested run per stage that ran.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///runs/pipeline/mlflow.db`` (its folder is created).
        experiment_name: experiment receiving the runs (created when missing).
        tag: value of the ``monai_synth.pipeline`` tag of every run (the pipeline's output folder).

    Raises:
        ImportError: mlflow is not installed.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, tag: str) -> None:
        require_mlflow()
        self.tracking_uri, self.experiment_name, self.tag = str(tracking_uri), str(experiment_name), str(tag)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None

    def start(self, params: Mapping[str, Any]) -> str:
        """Open the parent run with the pipeline's settings as parameters; returns its id."""
        from mlflow.tracking import MlflowClient

        with _explicit_tracking_uri():
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = (
            experiment.experiment_id if experiment is not None else self.client.create_experiment(self.experiment_name)
        )
        run = self.client.create_run(self.experiment_id, run_name="pipeline", tags={"monai_synth.pipeline": self.tag})
        self.parent_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(self.parent_id, _metric_name(key), _param_text(value))
        return self.parent_id

    def stage(self, name: str, params: Mapping[str, Any], outputs: Mapping[str, Any], seconds: float) -> str:
        """Log a finished stage as a nested run: its settings as parameters, its numbers and wall time as metrics."""
        tags = {"mlflow.parentRunId": self.parent_id, "monai_synth.pipeline": self.tag}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, _metric_name(key), _param_text(value))
        for key, value in outputs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.client.log_metric(run_id, _metric_name(key), float(value))
        self.client.log_metric(run_id, "seconds", float(seconds))
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def finish(self, status: str = "FINISHED", metrics: Mapping[str, float] | None = None) -> None:
        """Log ``metrics`` to the parent run and close it with ``status``."""
        if self.parent_id is None:
            return
        for key, value in (metrics or {}).items():
            self.client.log_metric(self.parent_id, _metric_name(key), float(value))
        self.client.set_terminated(self.parent_id, status)
        self.parent_id = None
