"""The study report: ``results.json``, ``report.md`` and PNG figures, all written atomically.

``results.json`` holds every number of a :class:`~monai_synth.evaluation.study.SyntheticEvaluationStudy`
run. JSON has no NaN or infinity, so non-finite scores are written as ``null`` (undefined: e.g. a
class empty in both masks) and ``"inf"`` / ``"-inf"`` (e.g. the Hausdorff distance of an empty
prediction); :func:`load_results` reads them back as floats.

Figures (matplotlib through ``optional_import``; drawn on a ``Figure`` object with the Agg canvas,
so the process-wide backend is left alone):

- ``score_vs_num_synthetic.png``: test-R Dice against the number of generated training pairs, one
  line per synthetic-only / hybrid series, the real-only score as a horizontal line;
- ``boxplots_<test set>.png``: per-case Dice and HD95 of every arm;
- ``real_vs_synthetic_pairs.png``: real and generated image/mask pairs side by side.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_synth.evaluation.statistics import format_statistics_table
from monai_synth.utils.io import atomic_path, read_json, write_json_atomic
from monai_synth.utils.visualize import pair_grid

Figure, has_matplotlib = optional_import("matplotlib.figure", name="Figure")

__all__ = [
    "to_json_safe",
    "from_json_safe",
    "load_results",
    "render_markdown",
    "finetune_budget_lines",
    "plot_score_vs_num_synthetic",
    "plot_arm_boxplots",
    "plot_real_vs_synthetic",
    "write_report",
    "render_network_comparison",
    "write_network_comparison",
]

logger = logging.getLogger(__name__)

_SCORE_LABELS = {"dice": "Dice", "iou": "IoU", "hd": "HD (px)", "hd95": "HD95 (px)"}


def to_json_safe(obj: Any) -> Any:
    """Recursively turn ``obj`` into strict JSON: NaN -> ``None``, +-inf -> ``"inf"`` / ``"-inf"``, numpy -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj


def from_json_safe(obj: Any) -> Any:
    """Inverse of :func:`to_json_safe` for scores: ``"inf"`` / ``"-inf"`` back to floats (``None`` stays)."""
    if isinstance(obj, dict):
        return {k: from_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json_safe(v) for v in obj]
    if obj == "inf":
        return math.inf
    if obj == "-inf":
        return -math.inf
    return obj


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder holding it) with infinities restored.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not valid JSON.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the study first (SyntheticEvaluationStudy(...).run()).")
    return from_json_safe(read_json(path))


# ---------------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------------
def _number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _mean_std(stats: Mapping[str, Any], digits: int) -> str:
    text = f"{_number(stats.get('mean'), digits)} ± {_number(stats.get('std'), digits)}"
    extra = []
    if stats.get("n_inf"):
        extra.append(f"{stats['n_inf']} inf")
    if stats.get("n_nan"):
        extra.append(f"{stats['n_nan']} undef.")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _digits(score: str) -> int:
    return 3 if score in ("dice", "iou") else 2


def _training_pairs(arm: Mapping[str, Any]) -> str:
    folds = arm["folds"]
    real = [f["num_real_train"] for f in folds]
    synthetic = [f["num_synthetic_train"] for f in folds]
    real_text = str(real[0]) if len(set(real)) == 1 else f"{min(real)}-{max(real)}"
    if arm.get("kind") == "finetune":
        return f"{synthetic[0]} generated, then {real_text} real"
    oversampled = [f.get("num_real_oversampled", r) for f, r in zip(folds, real)]
    if any(o > r for o, r in zip(oversampled, real)):
        real_text += f" (repeated to {max(oversampled)})"
    return f"{real_text} + {synthetic[0]}"


def finetune_budget_lines(arms: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the finetune arms' optimiser budgets were (Markdown lines, none without finetune arms).

    Args:
        arms: the study's ``results["arms"]``.

    Returns:
        A paragraph and a table of optimiser steps per fold (pre-training, fine-tuning, total, the real arm's).
    """
    finetune = [a for a in arms if a.get("kind") == "finetune" and a["folds"]]
    if not finetune:
        return []
    steps = {a["name"]: {f["fold"]: f["training"]["iterations"] for f in a["folds"]} for a in arms}
    lines = [
        "**Fine-tune arms and their budget**: a finetune arm is first trained as its synthetic arm (same generated "
        "pairs, same settings; that arm's best weights when it ran in the same fold), then fine-tuned from those "
        "weights with a fresh optimiser on its real arm's real cases, with that arm's validation cases, early "
        "stopping, epochs, epoch length and learning rate. "
        + " ".join(
            f"For {a['name']}, the fine-tune stage had the same budget as {a['real_arm']}; the "
            f"{a['pretrain_arm']} pre-training steps came on top."
            for a in finetune
        ),
        "",
        "| arm | fold | pre-training (arm, steps) | fine-tuning steps | total steps | real arm steps |",
        "|---|---|---|---|---|---|",
    ]
    for arm in finetune:
        for fold in arm["folds"]:
            used = fold["optimizer_steps"]
            real_steps = steps.get(arm["real_arm"], {}).get(fold["fold"])
            source = fold["pretraining"]["arm"] + (" (reused)" if fold["pretraining"]["reused"] else "")
            lines.append(
                f"| {arm['name']} | {fold['fold']} | {source}, {used['pretraining']} | {used['finetuning']} | "
                f"{used['total']} | {'not run' if real_steps is None else real_steps} |"
            )
    return lines + [""]


def _test_set_title(name: str, results: Mapping[str, Any]) -> str:
    base, per_volume = (name[: -len("/volume")], True) if name.endswith("/volume") else (name, False)
    unit = ", scored per volume (HD in mm)" if per_volume else ""
    if base == "test_R":
        return f"test-R: real held-out cases{unit}"
    set_name = base.split(":", 1)[1] if ":" in base else base
    if base.startswith("test_R:"):
        return f"test-R `{set_name}`: external real test set{unit}"
    return f"test-G: held-out generated pairs of `{set_name}`"


def _optimizer_text(config: Mapping[str, Any]) -> str:
    name = config.get("optimizer", "Adam")
    text = f"{name} lr {config['learning_rate']}"
    if name == "SGD":
        text += f" momentum {config.get('momentum', 0.0)}{' (Nesterov)' if config.get('nesterov') else ''}"
    if config.get("weight_decay"):
        text += f" weight decay {config['weight_decay']}"
    return text


def _distance_unit(name: str, results: Mapping[str, Any] | None = None) -> str:
    """``"mm"`` for per-volume sets and sets whose pixel spacing was known (``results["distance_units"]``)."""
    if name.endswith("/volume"):
        return "mm"
    return ((results or {}).get("distance_units") or {}).get(name, "px")


def render_markdown(results: Mapping[str, Any], figure_paths: Sequence[str] = ()) -> str:
    """The human-readable report of a study (Markdown).

    Args:
        results: the study results (as returned by ``run()`` or :func:`load_results`).
        figure_paths: figure files relative to the report's folder, embedded at the end.

    Returns:
        Markdown text.
    """
    config, data = results["config"], results["data"]
    real = data["real"]
    class_names = data["class_names"]
    lines = ["# Synthetic data evaluation report", ""]
    lines.append(
        f"Real data: `{real['source']}`: {real['num_items']} image(s) from {real['num_cases']} case(s), "
        f"{real['image_channels']} channel(s), {real['num_classes']} classes "
        f"({', '.join(str(v) for v in real['label_names'].values())}), resized to {config['image_size']} x {config['image_size']}."
    )
    splits = data["splits"]
    split_text = ", ".join(
        f"fold {i}: {len(s['training'])}/{len(s['validation'])}/{len(s['test'])}" for i, s in enumerate(splits)
    )
    lines.append(
        f"Real cases train/validation/test ({'single split' if len(splits) == 1 else f'{len(splits)}-fold'}): {split_text}."
    )
    for name, gen in (data.get("generated") or {}).items():
        lines.append(
            f"Generated set `{name}`: `{gen['source']}`: {gen['summary']['num_items']} pair(s), {gen['num_pool']} for training, "
            f"{gen['num_test_G']} held out as test-G."
        )
    kwargs = ", ".join(f"{k}={v}" for k, v in (config.get("network_kwargs") or {}).items())
    lines += [
        "",
        f"Network `{config['network']}`{f' ({kwargs})' if kwargs else ''}, loss `{config['loss']}`, {_optimizer_text(config)}, "
        f"batch {config['batch_size']}, at most {config['max_epochs']} epochs, early stopping patience {config['patience']} "
        f"validation(s); model selection: {config['model_selection']}. Seed {config['seed']}. "
        f"Hausdorff distances in {config['hausdorff_units']}.",
        "",
    ]
    lines += finetune_budget_lines(results["arms"])

    for test_name in results["test_sets"]:
        arms = [a for a in results["arms"] if test_name in a["summary"]]
        if not arms:
            continue
        first = arms[0]["summary"][test_name]
        lines += [
            f"## {_test_set_title(test_name, results)} ({first['num_cases']} case evaluations, {first['num_folds']} fold(s))",
            "",
        ]
        lines.append(
            f"| arm | training pairs (real + generated) | Dice | HD ({_distance_unit(test_name, results)}) | "
            f"HD95 ({_distance_unit(test_name, results)}) | mIoU | best epoch | train time (s) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for arm in arms:
            summary = arm["summary"][test_name]
            best = ", ".join(str(f["training"]["best_epoch"]) for f in arm["folds"])
            seconds = sum(f["train_seconds"] for f in arm["folds"])
            lines.append(
                f"| {arm['name']} | {_training_pairs(arm)} | "
                + " | ".join(_mean_std(summary[s], _digits(s)) for s in ("dice", "hd", "hd95", "iou"))
                + f" | {best} | {seconds:.1f} |"
            )
        if first["num_folds"] > 1:
            lines += [
                "",
                "Mean ± std over fold means:",
                "",
                f"| arm | Dice | HD95 ({_distance_unit(test_name, results)}) |",
                "|---|---|---|",
            ]
            for arm in arms:
                summary = arm["summary"][test_name]
                lines.append(
                    f"| {arm['name']} | {_mean_std(summary['dice']['over_folds'], 3)} | {_mean_std(summary['hd95']['over_folds'], 2)} |"
                )
        if len(class_names) > 1:
            lines += [
                "",
                "Dice per class:",
                "",
                "| arm | " + " | ".join(class_names) + " |",
                "|---" * (len(class_names) + 1) + "|",
            ]
            for arm in arms:
                per_class = arm["summary"][test_name]["dice_per_class"]
                lines.append(f"| {arm['name']} | " + " | ".join(_mean_std(per_class[c], 3) for c in class_names) + " |")
        for score, result in (results.get("statistics", {}).get(test_name) or {}).items():
            direction = "higher is better" if result.get("higher_is_better") else "lower is better"
            label = _SCORE_LABELS.get(score, score).replace("(px)", f"({_distance_unit(test_name, results)})")
            what = "per-volume" if test_name.endswith("/volume") else "per-case"
            lines += ["", f"Statistics on {what} {label} ({direction}):", ""]
            if result.get("test") is None:
                lines.append(f"_{result.get('note', 'not computed')}_")
            else:
                lines.append(format_statistics_table(result))
        lines.append("")

    generative = results.get("generative_metrics")
    if generative:
        lines += ["## Generative metrics (FID / KID against all real images)", ""]
        lines += [
            "| generated set | real images | generated images | FID | KID (mean ± std) |",
            "|---|---|---|---|---|",
        ]
        for name, g in generative.items():
            lines.append(
                f"| {name} | {g['n_real']} | {g['n_fake']} | {_number(g['fid'], 3)} | "
                f"{_number(g['kid_mean'], 5)} ± {_number(g['kid_std'], 5)} |"
            )
        pre = next(iter(generative.values())).get("preprocessing", {})
        described = "; ".join(str(pre[k]) for k in ("network", "input_scaling") if pre.get(k))
        if pre.get("resize_mode"):
            described += f"; resize `{pre['resize_mode']}`"
        lines += [
            "",
            f"Features: {described or 'custom feature extractor'}. FID is biased upwards for small sets: compare only "
            "values computed with the same numbers of images.",
            "",
        ]
    elif results["config"].get("compute_fid") is False:
        lines += ["FID / KID were not computed (`compute_fid` is false).", ""]

    timings = results.get("wall_time_seconds", {})
    lines += ["## Wall time", ""]
    lines += [
        "| arm | fold | epochs run | best epoch | best val Dice | train (s) | evaluation (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in results["arms"]:
        for f in arm["folds"]:
            t = f["training"]
            lines.append(
                f"| {arm['name']} | {f['fold']} | {t['epochs_run']}{' (early stop)' if t['stopped_early'] else ''} | "
                f"{t['best_epoch']} | {_number(t['best_val_dice'], 3)} | {f['train_seconds']:.1f} | {f['eval_seconds']:.1f} |"
            )
    lines.append("")
    lines.append(", ".join(f"{k.replace('_seconds', '')}: {v:.1f} s" for k, v in timings.items()) + ".")
    hardware, versions = results.get("hardware", {}), results.get("versions", {})
    lines += [
        "",
        f"Hardware: {hardware.get('platform')}, {hardware.get('cpu_count')} CPU(s)"
        + (f" ({hardware['cpus_available']} available)" if "cpus_available" in hardware else "")
        + f", {hardware.get('torch_threads')} torch thread(s), device `{hardware.get('device')}`"
        + (f" ({hardware['gpu']})" if hardware.get("gpu") else "")
        + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
    ]
    if results.get("mlflow"):
        lines.append(
            f"MLflow: experiment `{results['mlflow']['experiment']}` at `{results['mlflow']['tracking_uri']}`."
        )
    if figure_paths:
        lines += ["", "## Figures", ""]
        lines += [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in figure_paths]
    lines += [
        "",
        "Notes: mean ± std over all case evaluations; “inf” counts cases where a class was predicted empty "
        "(infinite Hausdorff distance), “undef.” cases where a score is undefined (e.g. a class absent from the "
        "ground truth: MONAI's Dice/IoU are then NaN); both are left out of the mean and std. Per-case scores are "
        "class means over the foreground classes (background excluded).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------
def _save_figure(figure: Any, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def plot_score_vs_num_synthetic(
    results: Mapping[str, Any], path: str | os.PathLike, score: str = "dice", test_set: str = "test_R"
) -> Path | None:
    """Line plot of ``score`` (mean ± std over cases) against the number of generated training pairs.

    Returns:
        The written path, or ``None`` when no arm uses generated pairs.

    Raises:
        ImportError: matplotlib is missing.
    """
    if not has_matplotlib:
        raise ImportError("Figures need matplotlib: `pip install matplotlib`.")
    arms = [a for a in results["arms"] if test_set in a["summary"]]
    series: dict[str, list[tuple[int, float, float]]] = {}
    baselines = []
    for arm in arms:
        stats = arm["summary"][test_set][score]
        if arm["kind"] == "real":
            baselines.append((arm["name"], stats["mean"], stats["std"]))
            continue
        label = arm["name"].rsplit("_n", 1)[0] + ("+aug" if arm["augment"] else "")
        series.setdefault(label, []).append((arm["num_synthetic"], stats["mean"], stats["std"]))
    if not series:
        return None
    figure = Figure(figsize=(6.0, 4.0))
    axes = figure.subplots()
    for label, points in series.items():
        points.sort()
        x = [p[0] for p in points]
        y = [np.nan if p[1] is None else p[1] for p in points]
        err = [0.0 if p[2] is None or not math.isfinite(p[2]) else p[2] for p in points]
        axes.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    for k, (name, mean, _std) in enumerate(baselines):
        if mean is not None and math.isfinite(mean):
            axes.axhline(mean, linestyle="--", color=f"C{len(series) + k}", label=f"{name} ({mean:.3f})")
    all_x = [p[0] for points in series.values() for p in points]
    if max(all_x) / max(min(all_x), 1) >= 10:
        axes.set_xscale("log")
    axes.set_xlabel("generated training pairs")
    label = _SCORE_LABELS.get(score, score).replace("(px)", f"({_distance_unit(test_set, results)})")
    axes.set_ylabel(f"{label} on {test_set.replace('_', '-')} (mean ± std)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save_figure(figure, Path(path))


def plot_arm_boxplots(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    test_set: str = "test_R",
    scores: Sequence[str] = ("dice", "hd95"),
) -> Path:
    """Box plots of the per-case scores of every arm (finite values; counts of left-out ones in the labels).

    Raises:
        ImportError: matplotlib is missing.
    """
    if not has_matplotlib:
        raise ImportError("Figures need matplotlib: `pip install matplotlib`.")
    arms = [a for a in results["arms"] if test_set in a["cases"]]
    figure = Figure(figsize=(max(5.0, 1.1 * len(arms) * len(scores)), 4.0))
    axes_list = np.atleast_1d(figure.subplots(1, len(scores)))
    for axes, score in zip(axes_list, scores):
        data, labels = [], []
        for arm in arms:
            values = [c[f"{score}_mean"] for c in arm["cases"][test_set]]
            finite = _finite(values)
            data.append(finite if finite else [np.nan])
            dropped = len(values) - len(finite)
            labels.append(arm["name"] + (f"\n({dropped} left out)" if dropped else ""))
        axes.boxplot(data, showmeans=True)
        axes.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
        label = _SCORE_LABELS.get(score, score).replace("(px)", f"({_distance_unit(test_set, results)})")
        axes.set_title(f"{label} per case, {test_set.replace('_', '-')}")
        axes.grid(alpha=0.3, axis="y")
    return _save_figure(figure, Path(path))


def plot_real_vs_synthetic(
    samples: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, columns: int = 4
) -> Path:
    """Grids of image/mask pairs, one panel per set (``"real"`` and every generated set).

    Args:
        samples: set name -> ``(images (B, C, H, W) in [-1, 1], labels (B, 1, H, W))``.
        path: PNG file to write.
        columns: pairs per row.

    Raises:
        ImportError: matplotlib is missing.
        ValueError: no samples.
    """
    if not has_matplotlib:
        raise ImportError("Figures need matplotlib: `pip install matplotlib`.")
    if not samples:
        raise ValueError("plot_real_vs_synthetic needs at least one set of samples.")
    grids = {name: pair_grid(images, labels, columns=columns) for name, (images, labels) in samples.items()}
    figure = Figure(figsize=(8.0, sum(8.0 * g.shape[0] / g.shape[1] + 0.4 for g in grids.values())))
    axes_list = np.atleast_1d(figure.subplots(len(grids), 1))
    for axes, (name, grid) in zip(axes_list, grids.items()):
        axes.imshow(grid, interpolation="nearest")
        axes.set_title(name if name == "real" else f"generated: {name}", fontsize=9)
        axes.axis("off")
    return _save_figure(figure, Path(path))


def write_report(
    results: dict[str, Any],
    output_dir: str | os.PathLike,
    samples: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    figures: bool = True,
) -> dict[str, Path]:
    """Write the figures, ``report.md`` and ``results.json`` (in that order, each atomically).

    The relative paths of the figures written are stored in ``results["figures"]``.

    Args:
        results: the study results; updated in place with ``"figures"``.
        output_dir: destination folder.
        samples: pairs for the real-vs-generated figure (see :func:`plot_real_vs_synthetic`).
        figures: draw figures (skipped with a warning when matplotlib is missing).

    Returns:
        ``{"results": path, "report": path, "<figure name>": path, ...}``.
    """
    output_dir = Path(output_dir)
    written: dict[str, Path] = {}
    figure_paths: list[str] = []
    if figures and not has_matplotlib:
        logger.warning("matplotlib is not installed: the report has no figures (`pip install matplotlib`).")
    elif figures:
        folder = output_dir / "figures"
        drawn = {"score_vs_num_synthetic": plot_score_vs_num_synthetic(results, folder / "score_vs_num_synthetic.png")}
        for test_set in results["test_sets"]:
            drawn[f"boxplots_{test_set}"] = plot_arm_boxplots(
                results, folder / f"boxplots_{test_set.replace(':', '_').replace('/', '_')}.png", test_set
            )
        if samples:
            drawn["real_vs_synthetic_pairs"] = plot_real_vs_synthetic(samples, folder / "real_vs_synthetic_pairs.png")
        for name, path in drawn.items():
            if path is not None:
                written[name] = path
                figure_paths.append(path.relative_to(output_dir).as_posix())
    results["figures"] = figure_paths
    written["report"] = output_dir / "report.md"
    with atomic_path(written["report"]) as tmp:
        tmp.write_text(render_markdown(results, figure_paths), encoding="utf-8")
    written["results"] = write_json_atomic(output_dir / "results.json", to_json_safe(results))
    return written


def render_network_comparison(results: Mapping[str, Any]) -> str:
    """Markdown with one table per network (every real test set) of a study run with ``networks``.

    Args:
        results: ``{"networks": {network: study results}, ...}``.

    Returns:
        Markdown text.
    """
    lines = ["# Synthetic data evaluation: one study per network", ""]
    for network, sub in results["networks"].items():
        lines += [f"## Network `{network}`", "", f"Full report: `{_safe_folder(network)}/report.md`.", ""]
        for test_name in sub["test_sets"]:
            if not test_name.startswith("test_R"):
                continue
            unit = _distance_unit(test_name, sub)
            lines += [f"### {_test_set_title(test_name, sub)}", ""]
            lines += [
                f"| arm | training pairs (real + generated) | Dice | HD95 ({unit}) | mIoU |",
                "|---|---|---|---|---|",
            ]
            for arm in sub["arms"]:
                summary = arm["summary"].get(test_name)
                if summary:
                    lines.append(
                        f"| {arm['name']} | {_training_pairs(arm)} | {_mean_std(summary['dice'], 3)} | "
                        f"{_mean_std(summary['hd95'], 2)} | {_mean_std(summary['iou'], 3)} |"
                    )
            stats = (sub.get("statistics") or {}).get(test_name, {}).get("dice") or {}
            if stats.get("test"):
                lines += ["", f"Dice: {stats['test']} p = {_number(stats.get('p_value'), 4)}.", ""]
            else:
                lines.append("")
    return "\n".join(lines) + "\n"


def _safe_folder(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "set"


def write_network_comparison(results: dict[str, Any], output_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the combined ``report.md`` and ``results.json`` of a study run with ``networks``.

    Args:
        results: ``{"networks": {network: study results}, ...}``.
        output_dir: destination folder.

    Returns:
        ``{"results": path, "report": path}``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = output_dir / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text(render_network_comparison(results), encoding="utf-8")
    return {"report": report, "results": write_json_atomic(output_dir / "results.json", to_json_safe(results))}
