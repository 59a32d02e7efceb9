"""monai_synth.evaluation: the downstream segmentation study (real / synthetic / hybrid), statistics, report."""

from __future__ import annotations

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
from .statistics import MeanStd, format_statistics_table, friedman_nemenyi, mean_std, paired_wilcoxon
from .study import (
    ARM_KINDS,
    ArmSpec,
    SyntheticEvaluationStudy,
    compare_arms,
    log_study_to_mlflow,
    plan_arms,
    summarize_cases,
)

__all__ = [
    # study
    "ARM_KINDS",
    "ArmSpec",
    "SyntheticEvaluationStudy",
    "compare_arms",
    "log_study_to_mlflow",
    "plan_arms",
    "summarize_cases",
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
    "format_statistics_table",
    "friedman_nemenyi",
    "mean_std",
    "paired_wilcoxon",
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
