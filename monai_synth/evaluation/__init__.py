"""monai_synth.evaluation: the downstream segmentation study (real / synthetic / hybrid / finetune arms, StudyConfig),
its segmentation training, scores, statistics, MLflow tracking, report, saved models, and the resumable pipeline."""

from __future__ import annotations

from .arms import ARM_KINDS, DEFAULT_ARMS, ArmSpec, arm_training_items, plan_arms
from .config import StudyConfig
from .pipeline import SyntheticEvaluationPipeline
from .report import (
    from_json_safe,
    load_results,
    plot_arm_boxplots,
    plot_real_vs_synthetic,
    plot_score_vs_num_synthetic,
    render_markdown,
    to_json_safe,
    write_report,
)
from .segmentation import (
    DEFAULT_NETWORK_KWARGS,
    HIGHER_IS_BETTER,
    LOSSES,
    SCORE_NAMES,
    TrainingResult,
    build_network,
    class_mean,
    predict_labels,
    segmentation_scores,
    standard_augmentation,
    train_segmentation_network,
)
from .statistics import (
    MeanStd,
    compare_arms,
    format_statistics_table,
    friedman_nemenyi,
    mean_std,
    paired_wilcoxon,
    summarize_cases,
)
from .study import SyntheticEvaluationStudy
from .tracking import PipelineTracker, StudyTracker

__all__ = [
    # study
    "StudyConfig",
    "SyntheticEvaluationStudy",
    "SyntheticEvaluationPipeline",
    # arms
    "ARM_KINDS",
    "DEFAULT_ARMS",
    "ArmSpec",
    "arm_training_items",
    "plan_arms",
    # segmentation
    "DEFAULT_NETWORK_KWARGS",
    "HIGHER_IS_BETTER",
    "LOSSES",
    "SCORE_NAMES",
    "TrainingResult",
    "build_network",
    "class_mean",
    "predict_labels",
    "segmentation_scores",
    "standard_augmentation",
    "train_segmentation_network",
    # statistics
    "MeanStd",
    "compare_arms",
    "format_statistics_table",
    "friedman_nemenyi",
    "mean_std",
    "paired_wilcoxon",
    "summarize_cases",
    # tracking
    "StudyTracker",
    "PipelineTracker",
    # report
    "from_json_safe",
    "load_results",
    "plot_arm_boxplots",
    "plot_real_vs_synthetic",
    "plot_score_vs_num_synthetic",
    "render_markdown",
    "to_json_safe",
    "write_report",
]
