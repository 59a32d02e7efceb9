"""The pipeline's ``report.md``: a verdict in plain words per test set, then tables, generator metrics, grids, plots.

:func:`verdicts` turns the per-``num_real`` statistics of a
:class:`~monai_synth.evaluation.pipeline.SyntheticEvaluationPipeline` run into one paragraph per test set
(does adding generated pairs help, by how much, how sure the Nemenyi or Wilcoxon test is, at which
``num_real``); :func:`write_pipeline_report` writes ``report.md`` and its figures: Dice against
``num_real`` per arm (error bars), Dice per case of the real arm against each hybrid and finetune arm (paired
scatter), and every generator's sample grid. Finetune arms (pre-training on the generated pairs, then
fine-tuning on the real cases) count in the verdict like hybrid arms: each against the real arm of its ``R``.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_synth.evaluation.report import _save_figure, from_json_safe
from monai_synth.utils.io import atomic_path

__all__ = ["verdicts", "write_pipeline_report", "plot_dice_vs_num_real", "plot_paired_cases"]


def _r_label(tag: str) -> str:
    return "all real training cases" if tag == "all" else f"{tag} real training cases"


def _mean(arm: Mapping[str, Any], test_set: str, score: str = "dice") -> float | None:
    value = arm["summary"].get(test_set, {}).get(score, {}).get("mean")
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _test_words(stats: Mapping[str, Any], a: str, b: str) -> tuple[str, str]:
    """(``"better"``/``"worse"``/``"no difference"``, the test in words with its p-value)."""
    if not stats or stats.get("test") is None:
        return "no difference", f"no test possible ({(stats or {}).get('note', 'too few cases')})"
    p = stats["pairwise_p"].get(a, {}).get(b)
    outcome = stats["outcome"].get(a, {}).get(b, "no difference")
    p_text = "n/a" if p is None or not math.isfinite(float(p)) else f"{float(p):.3g}"
    if stats["test"] == "wilcoxon":
        test = f"paired Wilcoxon signed-rank test p = {p_text} over {stats['n_cases']} cases"
    else:
        test = (
            f"Friedman p = {float(stats['p_value']):.3g} over {stats['n_cases']} cases and {len(stats['methods'])} "
            f"arms, Nemenyi p = {p_text}"
        )
    return outcome, test


def verdicts(results: Mapping[str, Any]) -> dict[str, str]:
    """One plain-words paragraph per test set: does synthetic data help, by how much, how sure, at which R.

    Args:
        results: a pipeline ``results`` dict (``arms``, ``statistics``, ``settings``, ``test_sets``).

    Returns:
        ``{test set: paragraph}``.
    """
    results = from_json_safe(dict(results))
    arms, out = results["arms"], {}
    alpha = 0.05
    for test_set in results["test_sets"]:
        sentences, helped, hurt = [], [], []
        for tag, stats in results["statistics"][test_set].items():
            dice_stats = stats.get("dice") or {}
            real = next((n for n, a in arms.items() if a["kind"] == "real" and _r(a) == tag), None)
            hybrids = [n for n, a in arms.items() if a["kind"] != "real" and _r(a) == tag]
            if real is None or not hybrids:
                continue
            base = _mean(arms[real], test_set)
            parts = []
            for name in hybrids:
                arm, value = arms[name], _mean(arms[name], test_set)
                if base is None or value is None:
                    parts.append(f"{name} has no defined Dice")
                    continue
                outcome, test = _test_words(dice_stats, name, real)
                pairs = f"{arm['num_synthetic']} {arm['generator']} pairs"
                what = {
                    "synthetic": f"{pairs} alone give",
                    "finetune": f"pre-training on {pairs}, then fine-tuning on the real cases ({_steps_words(arm)}), gives",
                }.get(arm["kind"], f"adding {pairs} gives")
                verb = {"better": "significantly better", "worse": "significantly worse"}.get(
                    outcome, "not significantly different"
                )
                parts.append(
                    f"{what} mean Dice {value:.3f} against {base:.3f} for the real cases alone ({value - base:+.3f}), "
                    f"{verb} at alpha = {alpha} ({test})"
                )
                if arm["kind"] in ("hybrid", "finetune") and outcome != "no difference":
                    how = " as pre-training" if arm["kind"] == "finetune" else ""
                    where = f"{arm['generator']}{how} with {_r_label(tag)} ({value - base:+.3f} Dice)"
                    (helped if outcome == "better" else hurt).append(where)
            sentences.append(f"With {_r_label(tag)}: " + "; ".join(parts) + ".")
        if helped:
            head = f"On {test_set}, synthetic data helps: {'; '.join(helped)}."
            head += f" It hurts: {'; '.join(hurt)}." if hurt else ""
        elif hurt:
            head = f"On {test_set}, synthetic data does not help; it hurts: {'; '.join(hurt)}."
        else:
            head = f"On {test_set}, adding synthetic data makes no significant difference in any setting tested."
        folds = results["settings"]["folds"]
        tail = f" ({folds} fold(s); the arms of one number of real cases share their real cases and initial weights.)"
        out[test_set] = " ".join([head, *sentences]) + tail
    return out


def _steps_words(arm: Mapping[str, Any]) -> str:
    """The budget of a finetune arm in words: the fine-tune stage had the real arm's, the pre-training came on top."""
    steps = [s for s in arm.get("optimizer_steps") or [] if s and "pretraining" in s]
    pre = sorted({s["pretraining"] for s in steps})
    pre_text = "" if not pre else f" ({pre[0] if len(pre) == 1 else f'{pre[0]}-{pre[-1]}'} per fold)"
    return f"the fine-tune stage with the same budget as the real arm, the pre-training steps{pre_text} on top"


def _r(arm: Mapping[str, Any]) -> str:
    return "all" if arm["num_real"] is None else str(arm["num_real"])


def plot_dice_vs_num_real(results: Mapping[str, Any], path: str | os.PathLike, test_set: str = "test_R") -> Path:
    """Mean Dice against ``num_real`` per arm family, error bars = std over folds (over cases with one fold)."""
    from matplotlib.figure import Figure

    arms, folds = results["arms"], results["settings"]["folds"]
    order = [_r_label(t) for t in results["statistics"][test_set]]
    tags = list(results["statistics"][test_set])
    families: dict[str, list[tuple[int, float, float]]] = {}
    for name, arm in arms.items():
        stats = arm["summary"].get(test_set, {}).get("dice")
        if not stats or stats.get("mean") is None:
            continue
        family = name.split("_r", 1)[0] if arm["kind"] == "real" else f"{arm['kind']}-{arm['generator']}"
        spread = stats["over_folds"]["std"] if folds > 1 else stats["std"]
        spread = 0.0 if spread is None or not math.isfinite(float(spread)) else float(spread)
        families.setdefault(family, []).append((tags.index(_r(arm)), float(stats["mean"]), spread))
    figure = Figure(figsize=(6.0, 4.0))
    axes = figure.subplots()
    for k, (family, points) in enumerate(sorted(families.items())):
        points.sort()
        x = [p[0] + 0.04 * (k - len(families) / 2) for p in points]
        axes.errorbar(x, [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3, label=family)
    axes.set_xticks(range(len(tags)), [t.replace(" real training cases", "") for t in order])
    axes.set_xlabel("real training cases (num_real)")
    axes.set_ylabel(f"mean Dice on {test_set} ± std over {'folds' if folds > 1 else 'cases'}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save_figure(figure, Path(path))


def plot_paired_cases(results: Mapping[str, Any], path: str | os.PathLike, test_set: str = "test_R") -> Path | None:
    """Dice per case: the real arm (x) against each hybrid / finetune arm (y) of the same ``num_real``, one panel per R."""
    from matplotlib.figure import Figure

    arms = results["arms"]
    tags = list(results["statistics"][test_set])
    panels = []
    for tag in tags:
        real = next((a for a in arms.values() if a["kind"] == "real" and _r(a) == tag), None)
        hybrids = {n: a for n, a in arms.items() if a["kind"] in ("hybrid", "finetune") and _r(a) == tag}
        if real is not None and hybrids:
            panels.append((tag, real, hybrids))
    if not panels:
        return None
    figure = Figure(figsize=(4.0 * len(panels), 4.0))
    axes_list = np.atleast_1d(figure.subplots(1, len(panels)))
    for axes, (tag, real, hybrids) in zip(axes_list, panels):
        base = {(c["fold"], c["item_id"]): c["dice_mean"] for c in real["cases"].get(test_set, [])}
        for k, arm in enumerate(hybrids.values()):
            pairs = [(base[(c["fold"], c["item_id"])], c["dice_mean"]) for c in arm["cases"].get(test_set, [])
                     if (c["fold"], c["item_id"]) in base]  # fmt: skip
            pairs = [p for p in pairs if all(v is not None and math.isfinite(float(v)) for v in p)]
            if pairs:
                xy = np.asarray(pairs, dtype=float)
                label = arm["generator"] + (" (finetune)" if arm["kind"] == "finetune" else "")
                axes.scatter(xy[:, 0], xy[:, 1], s=14, alpha=0.7, color=f"C{k}", label=label)
        axes.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        axes.set_xlim(0, 1), axes.set_ylim(0, 1)
        axes.set_xlabel(f"Dice, real only (R = {tag})")
        axes.set_ylabel("Dice, real + generated")
        axes.set_title(f"{test_set}, R = {tag}", fontsize=9)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    return _save_figure(figure, Path(path))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    return "inf" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _budget_sentence(study: Mapping[str, Any], arms: Sequence[str] = ()) -> str:
    """Whether the arms were compared at equal optimiser budgets (the verdict is only fair then), and what the
    finetune arms' budget was when there are any."""
    epochs = study.get("max_epochs", "the default number of")
    if study.get("epoch_length") is None:
        text = (
            f"**Unequal training budgets**: every arm ran {epochs} epochs of one pass over its own training pairs, "
            "so arms with generated pairs took more optimiser steps than real-only arms; part of any difference "
            "is that extra training. Set `epoch_length` in `--study` for equal budgets."
        )
    else:
        text = (
            f"Equal training budgets: every arm ran {epochs} epochs of {study['epoch_length']} iterations "
            "(batch size as in `--study`), whatever the number of its training pairs."
        )
    if "finetune" in arms:
        text += (
            " Finetune arms: the fine-tune stage had the same budget as the real arm of the same R (the same real "
            "cases, validation cases, early stopping, epochs, epoch length and learning rate, a fresh optimiser); "
            "the pre-training steps on the generated pairs (the synthetic arm's training) came on top, see "
            "`optimizer_steps` in results.json."
        )
    return text


def _markdown(results: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    s = results["settings"]
    lines = ["# Does synthetic data help? — synthetic_evaluation pipeline", ""]
    for paragraph in results["verdict"].values():
        lines += [paragraph, ""]
    source = s["real_dataset_dir"] or f"built-in phantom ({s['phantom_samples']} slices)"
    lines += [
        "## Setup",
        "",
        f"Real data: {source}; {s['folds']} fold(s); num_real {s['num_real']}; {s['num_synthetic']} generated pairs "
        f"per generator; image size {s['image_size']}; arms {s['arms']}; seed {s['seed']}.",
        "",
        _budget_sentence(s.get("study") or {}, s.get("arms") or ()),
        "",
        "**No leakage, by construction**: for every fold and num_real the pipeline writes the fold's generator "
        "training datalist first, and each generator trains on that file only. Checked from the written files: "
        + (
            "every generator's training case ids are a subset of its fold's training case ids, with none among "
            "the fold's validation / test cases or the external test sets "
            f"({len(results['leakage_check']['checks'])} generator(s) checked: "
            + ", ".join(
                f"{c['generator']} f{c['fold']} R={c['num_real'] if c['num_real'] is not None else 'all'}: "
                f"{c['num_generator_cases']} ⊆ {c['num_fold_training_cases']}"
                for c in results["leakage_check"]["checks"]
            )
            + ")."
            if results["leakage_check"]["ok"]
            else "FAILED — see results.json leakage_check."
        ),
        "",
    ]
    for test_set in results["test_sets"]:
        lines += [
            f"## {test_set}: mean ± std over cases",
            "",
            f"| arm | R | generated pairs | Dice | HD95 ({(results.get('distance_units') or {}).get(test_set, 'px')}) "
            "| cases |",
            "|---|---|---|---|---|---|",
        ]
        for name, arm in results["arms"].items():
            summary = arm["summary"].get(test_set)
            if not summary:
                continue
            lines.append(
                f"| {name} | {_r(arm)} | {arm['num_synthetic']} | {_fmt(summary['dice']['mean'])} ± "
                f"{_fmt(summary['dice']['std'])} | {_fmt(summary['hd95']['mean'], 2)} ± {_fmt(summary['hd95']['std'], 2)} "
                f"| {summary['num_cases']} |"
            )
        lines += ["", "Statistics per num_real (Dice): ", ""]
        for tag, stats in results["statistics"][test_set].items():
            dice = stats["dice"]
            if dice.get("test") is None:
                lines.append(f"- R = {tag}: {dice.get('note')}")
                continue
            ranks = ", ".join(f"{m} {r:.2f}" for m, r in dice["mean_ranks"].items())
            lines.append(
                f"- R = {tag}: {dice['test']} p = {_fmt(dice['p_value'], 4)} (mean ranks: {ranks}). {dice.get('note', '')}"
            )
        lines.append("")
    lines += [
        "## Generators",
        "",
        "| generator | fold | R | diversity ratio | duplicate rate | FID | KID |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, info in results["generators"].items():
        for run in info["runs"]:
            fid = (run.get("fid_kid") or {}).get("fid")
            kid = (run.get("fid_kid") or {}).get("kid")
            lines.append(
                f"| {name} ({info['bundle']}) | {run['fold']} | {run['num_real'] if run['num_real'] is not None else 'all'} "
                f"| {_fmt(run.get('diversity_ratio'), 2)} | {_fmt(run.get('duplicate_rate'), 3)} | {_fmt(fid, 1)} | {_fmt(kid, 4)} |"
            )
    lines += [
        "",
        "Diversity ratio: mean per-pixel standard deviation over generated images / the same over real images "
        "(about 1 for a generator as varied as the data, near 0 for a collapsed one). Duplicate rate: share of "
        "generated pairs that are perceptual-hash near-duplicates of an earlier one.",
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{title}]({path})" for title, path in figures.items()]
    return "\n".join(lines) + "\n"


def write_pipeline_report(results: Mapping[str, Any], output_dir: str | os.PathLike) -> Path:
    """Write ``figures/`` (plots and each generator's grid) and ``report.md`` into ``output_dir``.

    Returns:
        The path of ``report.md``.
    """
    output_dir = Path(output_dir)
    results = from_json_safe(dict(results))
    folder = output_dir / "figures"
    if folder.is_dir():
        shutil.rmtree(folder)  # only this report's figures: a rerun with other settings leaves no stale grid
    folder.mkdir(parents=True)
    figures: dict[str, str] = {}
    for test_set in results["test_sets"]:
        safe = test_set.replace(":", "_").replace("/", "_")
        path = plot_dice_vs_num_real(results, folder / f"dice_vs_num_real_{safe}.png", test_set)
        figures[f"Dice vs num_real, {test_set}"] = path.relative_to(output_dir).as_posix()
        path = plot_paired_cases(results, folder / f"paired_cases_{safe}.png", test_set)
        if path is not None:
            figures[f"Dice per case, real vs hybrid, {test_set}"] = path.relative_to(output_dir).as_posix()
    for name, info in results["generators"].items():
        for run in info["runs"]:
            grid = output_dir / run["grid"]
            if grid.is_file():
                tag = "all" if run["num_real"] is None else run["num_real"]
                target = folder / f"samples_{name}_f{run['fold']}_r{tag}.png"
                with atomic_path(target, suffix=".png") as tmp:
                    shutil.copyfile(grid, tmp)
                figures[f"{name} samples (fold {run['fold']}, R = {tag}): image | mask"] = target.relative_to(
                    output_dir
                ).as_posix()
    path = output_dir / "report.md"
    with atomic_path(path, suffix=".md") as tmp:
        Path(tmp).write_text(_markdown(results, figures))
    return path
