"""Tests of monai_synth.evaluation.statistics against scipy / scikit-posthocs on the same data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from monai_synth.evaluation import statistics as st
from monai_synth.evaluation.statistics import format_statistics_table, friedman_nemenyi, mean_std, paired_wilcoxon

sp = pytest.importorskip("scikit_posthocs")


def _random_scores(seed: int, num_methods: int, num_cases: int = 15) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"m{i}": rng.random(num_cases) + 0.1 * i for i in range(num_methods)}


def _clear_winner(higher_is_better: bool) -> dict[str, np.ndarray]:
    """A beats B and C on every one of 12 cases; B and C are interleaved (no difference between them)."""
    rng = np.random.default_rng(3)
    a = 0.9 + 0.05 * rng.random(12)
    b = 0.5 + 0.1 * rng.random(12)
    c = 0.5 + 0.1 * rng.random(12)
    scores = {"A": a, "B": b, "C": c}
    return scores if higher_is_better else {k: 1.0 - v for k, v in scores.items()}


@pytest.mark.parametrize("seed,num_methods", [(0, 3), (1, 4), (2, 5)])
def test_friedman_and_nemenyi_match_reference(seed: int, num_methods: int) -> None:
    scores = _random_scores(seed, num_methods)
    result = friedman_nemenyi(scores)
    reference = stats.friedmanchisquare(*scores.values())
    assert result["test"] == "friedman"
    assert result["statistic"] == pytest.approx(reference.statistic)
    assert result["p_value"] == pytest.approx(reference.pvalue)
    nemenyi = sp.posthoc_nemenyi_friedman(np.stack(list(scores.values()), axis=1))
    names = list(scores)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if a != b:
                assert result["pairwise_p"][a][b] == pytest.approx(nemenyi.iloc[i, j])
    json.dumps(result, allow_nan=False)  # JSON-serialisable, no NaN


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_clear_winner_outcome_and_scores(higher_is_better: bool) -> None:
    result = friedman_nemenyi(_clear_winner(higher_is_better), higher_is_better=higher_is_better)
    assert result["p_value"] < 0.05
    assert result["mean_ranks"]["A"] == 1.0
    assert result["outcome"]["A"] == {"B": "better", "C": "better"}
    assert result["outcome"]["B"] == {"A": "worse", "C": "no difference"}
    assert result["outcome"]["C"] == {"A": "worse", "B": "no difference"}
    assert result["score"] == {"A": 2, "B": -1, "C": -1}


def test_wrong_direction_flips_outcome() -> None:
    result = friedman_nemenyi(_clear_winner(True), higher_is_better=False)
    assert result["outcome"]["A"] == {"B": "worse", "C": "worse"}
    assert result["score"]["A"] == -2


def test_nonsignificant_friedman_declares_no_difference() -> None:
    # A beats B on 3 of 4 cases: Nemenyi alone might look small, Friedman is not significant.
    scores = {"A": [0.9, 0.8, 0.7, 0.1], "B": [0.5, 0.4, 0.3, 0.6], "C": [0.6, 0.5, 0.2, 0.2]}
    result = friedman_nemenyi(scores)
    assert result["p_value"] >= 0.05
    assert all(d == "no difference" for row in result["outcome"].values() for d in row.values())
    assert set(result["score"].values()) == {0}
    assert "Demšar" in result["note"]


def test_require_significant_friedman_off_uses_nemenyi_only() -> None:
    scores = _clear_winner(True)
    gated = friedman_nemenyi(scores, alpha=1e-12)
    ungated = friedman_nemenyi(scores, alpha=0.05, require_significant_friedman=False)
    assert gated["score"] == {"A": 0, "B": 0, "C": 0}
    assert ungated["score"] == {"A": 2, "B": -1, "C": -1}


def test_all_ties_do_not_crash() -> None:
    result = friedman_nemenyi({"A": [1.0, 2.0, 3.0], "B": [1.0, 2.0, 3.0], "C": [1.0, 2.0, 3.0]})
    assert result["statistic"] == 0.0 and result["p_value"] == 1.0
    assert result["score"] == {"A": 0, "B": 0, "C": 0}
    json.dumps(result, allow_nan=False)


def test_two_methods_use_wilcoxon() -> None:
    scores = {"real": np.linspace(0.8, 0.9, 10), "hybrid": np.linspace(0.7, 0.8, 10) + [0, 0.001] * 5}
    result = friedman_nemenyi(scores)
    reference = stats.wilcoxon(scores["real"], scores["hybrid"])
    assert result["test"] == "wilcoxon"
    assert "Wilcoxon" in result["note"]
    assert result["p_value"] == pytest.approx(reference.pvalue)
    assert result["outcome"] == {"real": {"hybrid": "better"}, "hybrid": {"real": "worse"}}
    assert result["score"] == {"real": 1, "hybrid": -1}


def test_inf_hausdorff_ranks_worst() -> None:
    # lower is better; an empty prediction (inf) must count as the worst value of its case
    scores = {
        "A": [1.0, 1.5, 1.2, 1.1, 1.3, 1.0, 1.4, 1.2],
        "B": [3.0, np.inf, 2.5, 2.8, 3.1, np.inf, 2.9, 3.0],
        "C": [2.0, 2.2, np.inf, 2.1, 2.3, 2.0, 2.4, 2.2],
    }
    result = friedman_nemenyi(scores, higher_is_better=False)
    assert result["mean_ranks"]["A"] == 1.0
    assert result["mean_ranks"]["B"] > result["mean_ranks"]["C"]
    assert result["outcome"]["A"]["B"] == "better"


def test_length_mismatch_names_methods_and_lengths() -> None:
    with pytest.raises(ValueError, match=r"'real': 3.*'synthetic': 4"):
        friedman_nemenyi({"real": [1, 2, 3], "synthetic": [1, 2, 3, 4], "hybrid": [1, 2, 3]})
    with pytest.raises(ValueError, match="same cases"):
        paired_wilcoxon([1, 2, 3], [1, 2])


def test_nan_is_rejected_with_case_index() -> None:
    with pytest.raises(ValueError, match=r"scores\['B'\] has NaN at case\(s\) \[1\]"):
        friedman_nemenyi({"A": [1, 2, 3], "B": [1, np.nan, 3], "C": [3, 2, 1]})


@pytest.mark.parametrize("bad", [{"A": [1, 2, 3]}, {"A": [1], "B": [2], "C": [3]}, {"A": [[1, 2]], "B": [[1, 2]]}])
def test_too_few_methods_or_cases(bad: dict) -> None:
    with pytest.raises(ValueError):
        friedman_nemenyi(bad)


def test_missing_scikit_posthocs_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "has_scikit_posthocs", False)
    with pytest.raises(ImportError, match="pip install scikit-posthocs"):
        friedman_nemenyi(_random_scores(0, 3))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_paired_wilcoxon_matches_scipy(higher_is_better: bool) -> None:
    rng = np.random.default_rng(5)
    a = rng.random(14) + 0.6
    b = rng.random(14)
    result = paired_wilcoxon(a, b, higher_is_better=higher_is_better)
    reference = stats.wilcoxon(a, b)
    assert result["statistic"] == pytest.approx(reference.statistic)
    assert result["p_value"] == pytest.approx(reference.pvalue)
    assert result["p_value"] < 0.05
    assert result["outcome"] == ("better" if higher_is_better else "worse")


def test_paired_wilcoxon_zero_differences() -> None:
    identical = paired_wilcoxon([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert identical["statistic"] is None and identical["p_value"] == 1.0
    assert identical["outcome"] == "no difference" and "zero" in identical["note"]
    partly = paired_wilcoxon([0.5, 0.6, 0.7, 0.9, 0.8], [0.5, 0.5, 0.6, 0.7, 0.8])
    assert partly["n_zero_differences"] == 2 and "dropped" in partly["note"]


def test_paired_wilcoxon_inf_minus_inf_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"inf - inf.*\[1\]"):
        paired_wilcoxon([1.0, np.inf, 2.0], [2.0, np.inf, 3.0])


@pytest.mark.parametrize(
    "values,expected",
    [
        ([1.0, 2.0, 3.0], (2.0, 1.0, 3, 0, 0)),
        ([1.0, 2.0, np.inf, 3.0, np.nan, -np.inf], (2.0, 1.0, 3, 1, 2)),
        ([np.nan, np.inf], (math.nan, math.nan, 0, 1, 1)),
        ([4.0, np.nan], (4.0, math.nan, 1, 1, 0)),
    ],
)
def test_mean_std_ignores_and_counts_nonfinite(values: list[float], expected: tuple) -> None:
    result = mean_std(values)
    for got, want in zip(result, expected):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    assert result.n_ignored == expected[3] + expected[4]


def test_mean_std_ddof() -> None:
    assert mean_std([1.0, 3.0], ddof=0).std == pytest.approx(1.0)
    assert mean_std([1.0, 3.0]).std == pytest.approx(math.sqrt(2.0))


def test_format_statistics_table() -> None:
    table = format_statistics_table(friedman_nemenyi(_clear_winner(True)))
    lines = table.splitlines()
    assert lines[0].startswith("**friedman**")
    assert "| method | A | B | C | mean rank | score |" in lines
    assert "| A | · | + | + | 1.00 | +2 |" in lines
    assert any(line.startswith("| B | − | · | 0 |") and line.endswith("| -1 |") for line in lines)
    wilcoxon_table = format_statistics_table(paired_wilcoxon([1, 2, 3, 4, 5], [0, 1, 2, 3, 4]))
    assert "| outcome |" in wilcoxon_table and "**wilcoxon**" in wilcoxon_table
