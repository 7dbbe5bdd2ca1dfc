"""Correlation study, Figure B table and resilience on known data and hand examples."""

import numpy as np
import pytest
from scipy import stats

from ensui.engine.analysis import (
    ALEXNET_ERRORS, accuracy_drops, alexnet_corruption_errors, bootstrap_ci, correlation,
    correlation_study, corruption_errors, figure_b, mean_corruption_error, partial_correlation,
    team_table,
)
from ensui.engine.diversity import prediction_diversity
from ensui.engine.ensembles import MemberOutputs, score_teams, teams


def known_data(n=60, seed=3):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    x = z + rng.normal(size=n)
    y = 0.5 * x - z + rng.normal(size=n)
    return x, y, z


def test_pearson_and_spearman_equal_scipy():
    x, y, _ = known_data()
    result = correlation(x, y, n_boot=50)
    assert result["n"] == 60
    assert result["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert result["pearson_p"] == pytest.approx(stats.pearsonr(x, y).pvalue, rel=1e-9)
    assert result["spearman_r"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert result["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue, rel=1e-9)


def test_partial_correlation_equals_residual_method():
    x, y, z = known_data()
    design = np.column_stack([np.ones_like(z), z])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    expected = np.corrcoef(rx, ry)[0, 1]
    r, p = partial_correlation(x, y, z)
    assert r == pytest.approx(expected, abs=1e-12)
    # the p-value of a partial r has n - 3 degrees of freedom
    t = expected * np.sqrt((len(x) - 3) / (1 - expected ** 2))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), len(x) - 3), rel=1e-9)
    assert partial_correlation(x, y, x) == (None, None)


def test_bootstrap_is_seeded_and_contains_the_estimate():
    x, y, _ = known_data()
    first = bootstrap_ci(x, y, n_boot=300, seed=7)
    assert first == bootstrap_ci(x, y, n_boot=300, seed=7)
    assert first != bootstrap_ci(x, y, n_boot=300, seed=8)
    r, rho = stats.pearsonr(x, y).statistic, stats.spearmanr(x, y).statistic
    assert first["pearson_ci_low"] < r < first["pearson_ci_high"]
    assert first["spearman_ci_low"] < rho < first["spearman_ci_high"]


def test_undefined_correlations_are_none():
    result = correlation(np.ones(10), np.arange(10.0))
    assert result["n"] == 10 and result["pearson_r"] is None and result["spearman_ci_low"] is None
    assert correlation(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0]))["n"] == 2


def random_set(seed, m=5, n=150, c=6):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 2, (m, n, c))
    logits[:, np.arange(n), labels] += rng.uniform(0, 3, (m, 1))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    out = MemberOutputs(tuple(f"m{i}" for i in range(m)), probs.astype(np.float32), labels)
    team_list = teams(out.names, "all")
    diversity, _ = prediction_diversity(out, team_list, probabilities=False)
    return team_table(score_teams(out, team_list, ["average", "vote"]), diversity)


def test_correlation_study_rows_and_figure_b():
    rows_by_set = {"clean": random_set(0), "noise": random_set(1)}
    metrics = ["label_disagreement", "average_accuracy"]
    study = correlation_study(rows_by_set, metrics, n_boot=20)
    # 2 sets x 2 consensus x 2 metrics x (all + sizes 2..5)
    assert len(study) == 2 * 2 * 2 * 5
    row = next(r for r in study if (r["set"], r["consensus"], r["metric"], r["size"])
               == ("noise", "vote", "label_disagreement", "all"))
    chosen = [r for r in rows_by_set["noise"] if r["consensus"] == "vote"]
    x = np.array([r["label_disagreement"] for r in chosen])
    y = np.array([r["vs_mean"] for r in chosen])
    assert row["n"] == 26 and row["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    accuracy_row = next(r for r in study if r["metric"] == "average_accuracy")
    assert accuracy_row["partial_r"] is None  # controlling a metric for itself
    sized = [r for r in study if r["size"] == 2 and r["set"] == "clean"
             and r["consensus"] == "average" and r["metric"] == "label_disagreement"]
    assert sized[0]["n"] == 10
    table = figure_b(study)
    assert table["metrics"] == metrics and table["sets"] == ["clean", "noise"]
    assert table["values"][0][1] == next(
        r["pearson_r"] for r in study if (r["set"], r["consensus"], r["metric"], r["size"])
        == ("noise", "average", "label_disagreement", "all"))


def test_team_table_needs_every_team():
    with pytest.raises(ValueError, match="no diversity values"):
        team_table([{"team": ("a", "b")}], [{"team": ("a", "c")}])


def test_accuracy_drops_on_hand_example():
    rows = accuracy_drops({"m": {"clean": 0.8, "noise": 0.6},
                           ("m", "n"): {"clean": 0.5, "blur": 0.5}})
    assert rows[0] == {"name": "m", "set": "noise", "accuracy": 0.6, "clean_accuracy": 0.8,
                       "drop": pytest.approx(0.2), "relative_drop": pytest.approx(0.25)}
    assert rows[1]["name"] == ("m", "n") and rows[1]["drop"] == 0.0
    with pytest.raises(ValueError, match="clean set"):
        accuracy_drops({"m": {"noise": 0.5}})


def test_corruption_error_and_mce_on_hand_example():
    errors = {"fog": {1: 0.2, 2: 0.4}, "snow": {1: 0.3, 2: 0.3}}
    reference = {"fog": {1: 0.4, 2: 0.8, 3: 0.9}, "snow": {1: 0.2, 2: 0.4}}
    ce = corruption_errors(errors, reference)
    assert ce == {"fog": pytest.approx(0.6 / 1.2), "snow": pytest.approx(0.6 / 0.6)}
    assert mean_corruption_error(ce) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="severity"):
        corruption_errors({"fog": {4: 0.5}}, reference)


def test_alexnet_constants_by_name():
    assert len(ALEXNET_ERRORS) == 15
    assert ALEXNET_ERRORS["gaussian_noise"] == 0.886428
    assert ALEXNET_ERRORS["brightness"] == 0.564592
    assert ALEXNET_ERRORS["jpeg_compression"] == 0.606500
    assert ALEXNET_ERRORS["contrast"] == 0.853204
    ce = alexnet_corruption_errors({"fog": {s: 0.5 for s in range(1, 6)},
                                    "contrast": {s: 0.853204 for s in range(1, 6)}})
    assert ce == {"fog": pytest.approx(0.5 / 0.819324), "contrast": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="only the 15"):
        alexnet_corruption_errors({"spatter": {1: 0.3}})
