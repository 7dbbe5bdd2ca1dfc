"""Correlation of diversity with ensemble improvement (the paper's Figure B), and
resilience of members and teams under corruption (methods.md §2).

Inputs are the plain rows of `ensembles.score_teams` and
`diversity.prediction_diversity`, one list per validation set; outputs are plain rows
for tables and JSON. A statistic that is undefined (too few teams, a constant column, a
control that equals the metric) is None, never NaN, so JSON stays valid.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

# Mean top-1 error of AlexNet over severities 1-5 per ImageNet-C corruption (Hendrycks &
# Dietterich 2019), keyed by name because public copies reorder the names.
ALEXNET_ERRORS: Mapping[str, float] = MappingProxyType({
    "gaussian_noise": .886428, "shot_noise": .894468, "impulse_noise": .922640,
    "defocus_blur": .819880, "glass_blur": .826268, "motion_blur": .785948,
    "zoom_blur": .798360, "snow": .866816, "frost": .826572, "fog": .819324,
    "brightness": .564592, "contrast": .853204, "elastic_transform": .646056,
    "pixelate": .717840, "jpeg_compression": .606500,
})
MIN_TEAMS = 3  # fewer points leave no degree of freedom for a p-value
STATISTICS = ("pearson_r", "pearson_p", "spearman_r", "spearman_p", "pearson_ci_low",
              "pearson_ci_high", "spearman_ci_low", "spearman_ci_high", "partial_r", "partial_p")


def team_table(ensemble_rows: Sequence[dict], diversity_rows: Sequence[dict]) -> list[dict]:
    """Each ensemble row (one per team × consensus) joined with its team's diversity."""
    by_team = {row["team"]: row for row in diversity_rows}
    missing = [row["team"] for row in ensemble_rows if row["team"] not in by_team]
    if missing:
        raise ValueError(f"no diversity values for team(s) {missing[:3]}")
    return [{**by_team[row["team"]], **row} for row in ensemble_rows]


def _column(rows: Sequence[dict], key: str) -> np.ndarray:
    return np.array([np.nan if row.get(key) is None else row[key] for row in rows], np.float64)


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis; NaN where a side is constant."""
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(-1) / den, np.nan)


def _optional(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def bootstrap_ci(x: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, float | None]:
    """Percentile intervals of Pearson and Spearman r over `n_boot` resamples of the
    teams (pairs drawn with replacement); resamples with a constant side are skipped."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, (n_boot, x.size))
    xs, ys = x[idx], y[idx]
    tails = [50 * (1 - level), 50 * (1 + level)]
    result = {}
    ranked = _pearson(stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1))
    for name, values in (("pearson", _pearson(xs, ys)), ("spearman", ranked)):
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, tails) if finite.size else (None, None)
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = _optional(low), _optional(high)
    return result


def partial_correlation(x: np.ndarray, y: np.ndarray,
                        z: np.ndarray) -> tuple[float | None, float | None]:
    """Pearson correlation of x and y with z held fixed, and its two-sided p-value
    (t with n − 3 degrees of freedom). None when z explains x or y completely."""
    r_xy, r_xz, r_yz = (_pearson(a, b) for a, b in ((x, y), (x, z), (y, z)))
    den = (1 - r_xz ** 2) * (1 - r_yz ** 2)
    if not np.isfinite(r_xy) or not den > 1e-12 or x.size <= 3:
        return None, None
    r = float(np.clip((r_xy - r_xz * r_yz) / np.sqrt(den), -1, 1))
    dof = x.size - 3
    t = r * np.sqrt(dof / max(1 - r * r, 1e-300))
    return r, float(2 * stats.t.sf(abs(t), dof))


def correlation(x: np.ndarray, y: np.ndarray, control: np.ndarray | None = None,
                n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Pearson and Spearman (scipy) with p-values, bootstrap intervals and, given a
    control, the partial correlation. Pairs with a missing value are dropped first."""
    columns = [x, y] if control is None else [x, y, control]
    keep = np.logical_and.reduce([np.isfinite(c) for c in columns])
    x, y = x[keep], y[keep]
    result = {"n": int(keep.sum()), **dict.fromkeys(STATISTICS)}
    if x.size < MIN_TEAMS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    result.update(pearson_r=_optional(pearson.statistic), pearson_p=_optional(pearson.pvalue),
                  spearman_r=_optional(spearman.statistic), spearman_p=_optional(spearman.pvalue),
                  **bootstrap_ci(x, y, n_boot, seed, level))
    if control is not None:
        result["partial_r"], result["partial_p"] = partial_correlation(x, y, control[keep])
    return result


def correlation_study(rows_by_set: Mapping[str, Sequence[dict]], metrics: Sequence[str],
                      improvement: str = "vs_mean", control: str | None = "average_accuracy",
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """One row per set × consensus × metric × team size ("all", then each size when there
    are several): the correlation of the metric with `improvement` across teams.
    `rows_by_set` holds `team_table` rows; `average_accuracy` (mean member accuracy, the
    paper's third row) can be a metric. The partial correlation holds `control` fixed."""
    result = []
    for set_name, rows in rows_by_set.items():
        for consensus in dict.fromkeys(row["consensus"] for row in rows):
            chosen = [row for row in rows if row["consensus"] == consensus]
            for size, group in _size_groups(chosen):
                y = _column(group, improvement)
                z = _column(group, control) if control else None
                for metric in metrics:
                    stats_row = correlation(_column(group, metric), y, z, n_boot, seed, level)
                    result.append({"set": set_name, "consensus": consensus, "metric": metric,
                                   "size": size, "improvement": improvement, **stats_row})
    return result


def _size_groups(rows: Sequence[dict]) -> list[tuple[int | str, list[dict]]]:
    sizes = sorted({row["size"] for row in rows})
    groups = [("all", list(rows))]
    if len(sizes) > 1:
        groups += [(s, [row for row in rows if row["size"] == s]) for s in sizes]
    return groups


def figure_b(study: Sequence[dict], consensus: str = "average", size: int | str = "all",
             statistic: str = "pearson_r") -> dict:
    """The paper's Figure B: `statistic` for metrics (rows) × sets (columns), in the order
    first seen; a missing cell is None."""
    chosen = [r for r in study if r["consensus"] == consensus and r["size"] == size]
    metrics = list(dict.fromkeys(r["metric"] for r in chosen))
    sets = list(dict.fromkeys(r["set"] for r in chosen))
    cell = {(r["metric"], r["set"]): r[statistic] for r in chosen}
    return {"metrics": metrics, "sets": sets, "statistic": statistic,
            "values": [[cell.get((m, s)) for s in sets] for m in metrics]}


def accuracy_drops(accuracy: Mapping[Hashable, Mapping[str, float]],
                   clean: str = "clean") -> list[dict]:
    """Per member or team (any key) and non-clean set: accuracy, its clean accuracy, the
    drop (clean − set) and the relative drop (drop / clean; None if clean is 0)."""
    rows = []
    for name, per_set in accuracy.items():
        if clean not in per_set:
            raise ValueError(f"{name}: no accuracy on the clean set {clean!r} to compare with")
        base = per_set[clean]
        for set_name, value in per_set.items():
            if set_name != clean:
                drop = base - value
                rows.append({"name": name, "set": set_name, "accuracy": value,
                             "clean_accuracy": base, "drop": drop,
                             "relative_drop": drop / base if base else None})
    return rows


def corruption_errors(errors: Mapping[str, Mapping[Hashable, float]],
                      reference: Mapping[str, Mapping[Hashable, float]]) -> dict[str, float]:
    """CE_c = Σ_s E_{s,c} / Σ_s E^ref_{s,c} per corruption c, over the severities s of
    `errors` (the reference must have each). A set pooled over severities of equal size
    can be passed as a single key: its error is the mean, so the ratio is the same."""
    result = {}
    for corruption, per_severity in errors.items():
        ref = reference.get(corruption, {})
        missing = [s for s in per_severity if s not in ref]
        if missing:
            raise ValueError(f"reference has no error for {corruption} at severity {missing}")
        ref_sum = sum(ref[s] for s in per_severity)
        if ref_sum <= 0:
            raise ValueError(f"reference error on {corruption} is 0: CE is undefined")
        result[corruption] = sum(per_severity.values()) / ref_sum
    return result


def alexnet_corruption_errors(errors: Mapping[str, Mapping[Hashable, float]]) -> dict[str, float]:
    """CE_c against ImageNet-C's AlexNet: mean_s E_{s,c} / ALEXNET_ERRORS[c]. The constants
    average severities 1-5, so the ratio is ImageNet-C's CE when `errors` covers all five."""
    unknown = [c for c in errors if c not in ALEXNET_ERRORS]
    if unknown:
        raise ValueError(f"no AlexNet error for {unknown}: the constants cover only the 15 "
                         f"ImageNet-C corruptions {list(ALEXNET_ERRORS)}")
    return {c: float(np.mean(list(per_severity.values()))) / ALEXNET_ERRORS[c]
            for c, per_severity in errors.items()}


def mean_corruption_error(ce: Mapping[str, float]) -> float:
    """mCE: the mean of CE over the corruptions present."""
    if not ce:
        raise ValueError("no corruption errors to average")
    return float(np.mean(list(ce.values())))
