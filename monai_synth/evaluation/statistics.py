"""Statistics for the downstream study: Friedman + Nemenyi across methods, paired Wilcoxon, mean +- std.

The comparison follows Vu et al. (conditional StyleGAN2 paper, Sec. 3.4 and Tables 2-3), who follow
Demšar (2006): a Friedman test over the per-case scores of all methods, then the Nemenyi post-hoc test
of pairwise differences. Each ordered pair of methods gets a *direction*: ``"better"`` (the row method
ranks significantly higher, "+"), ``"worse"`` (significantly lower, "-") or ``"no difference"``
("0"). A method's *score* is the sum of its directions against every other method, "+" adding one
unit and "-" subtracting one: ``score = #better - #worse`` (the "Score" column of Vu et al.'s
Table 3; their Table 2 lists this score per dataset).

Cases are the test items (images, volumes, or folds) every method was evaluated on, in the same order
for every method. NaN scores are rejected (decide explicitly what a missing value means, e.g. drop
the case for all methods); ``inf`` (a Hausdorff distance with an empty prediction) is allowed in
rank-based tests, where it simply ranks as the worst value for a lower-is-better metric.

The study's records are summarised with :func:`summarize_cases` (mean +- std over cases and over fold
means) and its arms compared with :func:`compare_arms` (the tests above on per-case class means).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from monai.utils import optional_import
from scipy import stats

from monai_synth.evaluation.segmentation import HIGHER_IS_BETTER, SCORE_NAMES

sp, has_scikit_posthocs = optional_import("scikit_posthocs")
pd, _ = optional_import("pandas")

__all__ = [
    "friedman_nemenyi",
    "paired_wilcoxon",
    "mean_std",
    "MeanStd",
    "format_statistics_table",
    "summarize_cases",
    "compare_arms",
]

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no difference"
_SYMBOL = {BETTER: "+", WORSE: "−", NO_DIFFERENCE: "0"}


def _validate_scores(scores: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    if not isinstance(scores, Mapping) or len(scores) < 2:
        raise ValueError("scores must map at least 2 method names to their per-case scores.")
    arrays = {str(name): np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    for name, array in arrays.items():
        if array.ndim != 1:
            raise ValueError(f"scores[{name!r}] must be a 1-D sequence of per-case scores, got shape {array.shape}.")
    lengths = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"Every method must be scored on the same cases in the same order, but the numbers of cases differ: "
            f"{lengths}."
        )
    for name, array in arrays.items():
        bad = np.flatnonzero(np.isnan(array))
        if bad.size:
            raise ValueError(
                f"scores[{name!r}] has NaN at case(s) {bad.tolist()}. Rank tests need a value for every case: drop "
                "those cases for all methods, or replace NaN with an explicit worst value."
            )
    if next(iter(lengths.values())) < 2:
        raise ValueError(f"At least 2 cases are needed for a paired test, got {lengths}.")
    return arrays


def paired_wilcoxon(
    a: Sequence[float], b: Sequence[float], higher_is_better: bool = True, alpha: float = 0.05
) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired per-case scores (``scipy.stats.wilcoxon``).

    Zero differences are dropped (scipy's default ``zero_method="wilcox"``) and counted. The direction
    is taken from the signed ranks: ``a`` is "better" when it is significant at ``alpha`` and the rank
    sum of the differences in ``a``'s favour is the larger one.

    Args:
        a: per-case scores of method A.
        b: per-case scores of method B, same cases in the same order.
        higher_is_better: ``True`` for Dice/IoU, ``False`` for Hausdorff distances.
        alpha: significance level.

    Returns:
        ``{"test": "wilcoxon", "statistic", "p_value", "n", "n_zero_differences", "median_difference",
        "outcome", "note"}`` where ``outcome`` is A relative to B (``"better"``, ``"worse"``,
        ``"no difference"``). When every difference is zero there is nothing to test: ``statistic`` is
        ``None``, ``p_value`` 1.0, and ``note`` says so.

    Raises:
        ValueError: different lengths, NaN scores or NaN differences (``inf - inf``).
    """
    arrays = _validate_scores({"a": a, "b": b})
    with np.errstate(invalid="ignore"):
        differences = arrays["a"] - arrays["b"]
    bad = np.flatnonzero(np.isnan(differences))
    if bad.size:
        raise ValueError(f"The differences a - b are undefined (inf - inf) at case(s) {bad.tolist()}.")
    if not higher_is_better:
        differences = -differences  # positive = A better from here on
    nonzero = differences[differences != 0]
    result: dict[str, Any] = {
        "test": "wilcoxon",
        "n": int(differences.size),
        "n_zero_differences": int(differences.size - nonzero.size),
        "median_difference": float(np.median(arrays["a"] - arrays["b"])) if np.isfinite(differences).all() else None,
        "higher_is_better": higher_is_better,
        "alpha": alpha,
        "note": "",
    }
    if nonzero.size == 0:
        result.update(
            statistic=None,
            p_value=1.0,
            outcome=NO_DIFFERENCE,
            note="all paired differences are zero: the two methods score identically on every case.",
        )
        return result
    test = stats.wilcoxon(arrays["a"], arrays["b"])
    ranks = stats.rankdata(np.abs(nonzero))
    favour_a, favour_b = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    significant = bool(test.pvalue < alpha)
    outcome = NO_DIFFERENCE
    if significant and favour_a != favour_b:
        outcome = BETTER if favour_a > favour_b else WORSE
    result.update(statistic=float(test.statistic), p_value=float(test.pvalue), outcome=outcome)
    if result["n_zero_differences"]:
        result["note"] = f"{result['n_zero_differences']} zero difference(s) dropped (zero_method='wilcox')."
    return result


def _nemenyi_critical_difference(num_methods: int, num_cases: int, alpha: float) -> float:
    """Demšar (2006) critical difference of mean ranks: ``q_alpha sqrt(k (k + 1) / (6 N))``."""
    q_alpha = stats.studentized_range.ppf(1.0 - alpha, num_methods, np.inf) / math.sqrt(2.0)
    return float(q_alpha * math.sqrt(num_methods * (num_methods + 1) / (6.0 * num_cases)))


def friedman_nemenyi(
    scores: Mapping[str, Sequence[float]],
    higher_is_better: bool = True,
    alpha: float = 0.05,
    require_significant_friedman: bool = True,
) -> dict[str, Any]:
    """Friedman test across methods, Nemenyi post-hoc, and the Vu et al. better/worse table and scores.

    Mean ranks: within each case the methods are ranked with 1 = best (respecting
    ``higher_is_better``, ties get their average rank), then averaged over cases. A pair (A, B) is
    ``"better"`` for A when the Nemenyi p-value is below ``alpha`` and A's mean rank is better (lower)
    than B's, ``"worse"`` in the opposite case, else ``"no difference"``. Following Demšar (2006), the
    post-hoc directions are only declared when the Friedman test itself rejects equivalence
    (``require_significant_friedman``; the Nemenyi p-values are reported either way).

    With only 2 methods the Friedman test does not apply (scipy needs >= 3): the paired Wilcoxon
    signed-rank test is used instead and ``"test"`` says ``"wilcoxon"``.

    Args:
        scores: method name -> per-case scores (same cases, same order, for every method).
        higher_is_better: ``True`` for Dice/IoU, ``False`` for Hausdorff distances.
        alpha: significance level.
        require_significant_friedman: only declare pairwise differences when Friedman's p < ``alpha``.

    Returns:
        JSON-serialisable ``{"test", "statistic", "p_value", "alpha", "higher_is_better", "n_cases",
        "methods", "mean_ranks", "pairwise_p": {A: {B: p}}, "outcome": {A: {B: "better" | "worse" |
        "no difference"}}, "score": {A: #better - #worse}, "posthoc", "critical_difference", "note"}``.

    Raises:
        ValueError: fewer than 2 methods or 2 cases, different numbers of cases, NaN scores.
        ImportError: ``scikit-posthocs`` is missing (``pip install scikit-posthocs``) with >= 3 methods.
    """
    arrays = _validate_scores(scores)
    methods = list(arrays)
    table = np.stack([arrays[m] for m in methods], axis=1)  # (cases, methods)
    num_cases, num_methods = table.shape
    ranks = stats.rankdata(-table if higher_is_better else table, axis=1)
    mean_ranks = {m: float(r) for m, r in zip(methods, ranks.mean(axis=0))}

    pairwise_p: dict[str, dict[str, float]] = {m: {} for m in methods}
    outcome: dict[str, dict[str, str]]
    if num_methods == 2:
        first, second = methods
        wilcoxon = paired_wilcoxon(arrays[first], arrays[second], higher_is_better, alpha)
        pairwise_p[first][second] = pairwise_p[second][first] = wilcoxon["p_value"]
        result = {
            "test": "wilcoxon",
            "statistic": wilcoxon["statistic"],
            "p_value": wilcoxon["p_value"],
            "posthoc": None,
            "critical_difference": None,
            "note": f"2 methods: Friedman needs >= 3, paired Wilcoxon signed-rank test used instead. {wilcoxon['note']}".strip(),
        }
        # the Wilcoxon test is itself the pairwise test: take its direction (signed ranks), not mean ranks
        opposite = {BETTER: WORSE, WORSE: BETTER, NO_DIFFERENCE: NO_DIFFERENCE}
        outcome = {first: {second: wilcoxon["outcome"]}, second: {first: opposite[wilcoxon["outcome"]]}}
    else:
        if not has_scikit_posthocs:
            raise ImportError(
                "friedman_nemenyi needs scikit-posthocs for the Nemenyi post-hoc test: "
                "`pip install scikit-posthocs` (or `pip install monai-synth[eval]`)."
            )
        if np.all(ranks == ranks[:, :1]):
            # every case ties all methods: scipy would divide 0 by 0; there is simply no difference to find
            statistic, p_value, note = 0.0, 1.0, "all methods tie on every case."
            pairwise_p = {a: {b: 1.0 for b in methods if b != a} for a in methods}
        else:
            friedman = stats.friedmanchisquare(*(arrays[m] for m in methods))
            statistic, p_value, note = float(friedman.statistic), float(friedman.pvalue), ""
            nemenyi = sp.posthoc_nemenyi_friedman(pd.DataFrame(table, columns=methods))
            pairwise_p = {a: {b: float(nemenyi.loc[a, b]) for b in methods if b != a} for a in methods}
        declared = p_value < alpha or not require_significant_friedman
        if not declared:
            note = (note + " " if note else "") + (
                f"Friedman p >= alpha={alpha}: no pairwise difference declared (Demšar 2006)."
            )
        result = {
            "test": "friedman",
            "statistic": statistic,
            "p_value": p_value,
            "posthoc": "nemenyi",
            "critical_difference": _nemenyi_critical_difference(num_methods, num_cases, alpha),
            "note": note,
        }
        outcome = {m: {} for m in methods}
        for a in methods:
            for b in methods:
                if a == b:
                    continue
                direction = NO_DIFFERENCE
                if declared and pairwise_p[a][b] < alpha and mean_ranks[a] != mean_ranks[b]:
                    direction = BETTER if mean_ranks[a] < mean_ranks[b] else WORSE
                outcome[a][b] = direction

    score = {
        a: sum(d == BETTER for d in outcome[a].values()) - sum(d == WORSE for d in outcome[a].values()) for a in methods
    }
    result.update(
        alpha=alpha,
        higher_is_better=higher_is_better,
        n_cases=int(num_cases),
        methods=methods,
        mean_ranks=mean_ranks,
        pairwise_p=pairwise_p,
        outcome=outcome,
        score=score,
    )
    return result


class MeanStd(NamedTuple):
    """Mean and standard deviation of the finite values, and how many values were left out."""

    mean: float
    std: float
    n: int
    n_nan: int
    n_inf: int

    @property
    def n_ignored(self) -> int:
        """Number of NaN and infinite values left out of ``mean`` and ``std``."""
        return self.n_nan + self.n_inf


def mean_std(values: Sequence[float] | np.ndarray, ddof: int = 1) -> MeanStd:
    """Mean and standard deviation over the finite values, counting the NaN / inf values left out.

    MONAI's Hausdorff distance is ``inf`` when one of prediction / ground truth is empty and ``NaN``
    when both are: such cases are excluded here and *counted*, so the study reports them next to
    ``mean +- std``.

    Args:
        values: any number of scores.
        ddof: delta degrees of freedom of the standard deviation (1: sample standard deviation).

    Returns:
        ``MeanStd(mean, std, n, n_nan, n_inf)`` with ``n`` the number of finite values used; ``mean`` is
        NaN when there is no finite value, ``std`` NaN when ``n <= ddof``.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    n_nan = int(np.isnan(array).sum())
    n_inf = int(np.isinf(array).sum())
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=ddof)) if finite.size > ddof else math.nan
    return MeanStd(mean, std, int(finite.size), n_nan, n_inf)


def _format_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def format_statistics_table(result: Mapping[str, Any]) -> str:
    """Markdown rendering of a :func:`friedman_nemenyi` (or :func:`paired_wilcoxon`) result.

    For :func:`friedman_nemenyi` this is Vu et al.'s table: one row per method, one column per
    method with "+" (row method significantly better), "−" (significantly worse) or "0", then the
    mean rank and the score. A header line gives the test, its statistic and p-value.
    """
    statistic = result.get("statistic")
    header = (
        f"**{result.get('test', 'test')}**: statistic = {'n/a' if statistic is None else f'{statistic:.4g}'}, "
        f"p = {_format_p(result.get('p_value'))}, alpha = {result.get('alpha')}"
    )
    if result.get("posthoc"):
        header += f", post-hoc: {result['posthoc']}"
        if result.get("critical_difference") is not None:
            header += f" (critical difference of mean ranks {result['critical_difference']:.3f})"
    lines = [header]
    if result.get("note"):
        lines.append(f"_{result['note']}_")
    lines.append("")
    if "outcome" in result and isinstance(result["outcome"], Mapping):
        methods = list(result["methods"])
        lines.append("| method | " + " | ".join(methods) + " | mean rank | score |")
        lines.append("|---" * (len(methods) + 3) + "|")
        for a in methods:
            cells = ["·" if a == b else _SYMBOL[result["outcome"][a][b]] for b in methods]
            lines.append(
                f"| {a} | " + " | ".join(cells) + f" | {result['mean_ranks'][a]:.2f} | {result['score'][a]:+d} |"
            )
        lines.append("")
        lines.append(
            "+: row method ranked significantly higher than the column method; −: lower; "
            "0: no significant difference. Score = #(+) − #(−). Mean rank: 1 = best."
        )
    else:
        lines.append("| field | value |")
        lines.append("|---|---|")
        for key in ("n", "n_zero_differences", "median_difference", "outcome"):
            if key in result:
                lines.append(f"| {key} | {result[key]} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# the study's per-case records: summaries and comparisons of arms
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
        {...}}, "<score>_per_class": {class: {...}}}`` for every score of
        :data:`~monai_synth.evaluation.segmentation.SCORE_NAMES`.
    """
    folds = sorted({int(r["fold"]) for r in records})
    summary: dict[str, Any] = {"num_cases": len(records), "num_folds": len(folds)}
    for score in SCORE_NAMES:
        entry = _stats_dict([r[f"{score}_mean"] for r in records])
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
        score: one of :data:`~monai_synth.evaluation.segmentation.SCORE_NAMES`.
        alpha: significance level.

    Returns:
        The :func:`friedman_nemenyi` result plus ``"score_name"`` and ``"dropped_cases"``; or
        ``{"test": None, "note": ...}`` when fewer than 2 arms or cases remain.
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
