"""Prediction (output) diversity of teams, through the pairwise fast path of methods.md §3.

Per validation set everything is reduced once to member × member count matrices
(`Counts`): with C the (M, N) correctness matrix, N11 = C·Cᵀ (both right) and, from it,
N10, N01 and N00 (N00 = N − n_i − n_k + N11, the same integers as (¬C)(¬C)ᵀ without a
second product); label agreement counts; and the chance agreement of the members' label
histograms. A pairwise metric of a team is then the mean over its pairs, and KW variance,
generalized diversity and Fleiss κ follow exactly from sums of these counts, so any team
costs O(L²) whatever N. Only Kuncheva's entropy needs the per-sample number of right
members, taken from C.

Direction: **higher = more diverse for every metric here.** Agreement statistics s in
[−1, 1] (Q, ρ, Cohen κ, error consistency κ, Fleiss κ) and the double fault rate are
reported as ``<name>_diversity = 1 − s``; the rest are diversities already:

==============================  =====================================================
label_disagreement              mean_j [ŷ_i ≠ ŷ_k] (the paper's "prediction-based
                                disagreement"; two wrong members with different labels
                                disagree)
oracle_disagreement             (N01 + N10) / N
q_diversity                     1 − Q, Q = (N11·N00 − N01·N10) / (N11·N00 + N01·N10)
correlation_diversity           1 − ρ, ρ the correlation of the correctness indicators
double_fault_diversity          1 − N00/N: the share of samples NOT both wrong (not the
                                "not both right" some public code calls double fault)
cohen_kappa_diversity           1 − Cohen's κ on the predicted labels
error_consistency_diversity     1 − κ of Geirhos et al. 2020: c_obs = (N11 + N00)/N,
                                c_exp = p_i p_k + (1 − p_i)(1 − p_k)
kl_divergence                   KL(p_i ‖ p_k) averaged over both directions and samples,
                                in nats; probabilities floored at PROB_FLOOR in the log
js_divergence                   Jensen–Shannon divergence in nats (0 … ln 2), mean over
                                samples
kw_variance                     Kohavi–Wolpert variance (1/(N L²)) Σ_j l_j (L − l_j),
                                l_j the members right on sample j
generalized_diversity           Partridge & Krzanowski's GD = 1 − p(2)/p(1)
fleiss_kappa_diversity          1 − Fleiss' κ on right/wrong (Kuncheva & Whitaker's
                                interrater agreement κ)
entropy                         Kuncheva's E = mean_j min(l_j, L − l_j) / (L − ⌈L/2⌉)
==============================  =====================================================

Undefined values get the value of identical members, never NaN: Q and ρ are 1 when the
two members are right on exactly the same samples (diversity 0), and 0 when the
denominator vanishes otherwise (one member's correctness is constant, so independent of
the other's); the κs are 1 when chance agreement is 1 (which forces identical outputs);
GD is 0 when no member ever errs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import entr

from ensui.engine.ensembles import PROB_FLOOR, MemberOutputs

PAIRWISE = ("label_disagreement", "oracle_disagreement", "q_diversity", "correlation_diversity",
            "double_fault_diversity", "cohen_kappa_diversity", "error_consistency_diversity")
PROBABILITY = ("kl_divergence", "js_divergence")
TEAM_LEVEL = ("kw_variance", "generalized_diversity", "fleiss_kappa_diversity", "entropy")
METRICS = PAIRWISE + PROBABILITY + TEAM_LEVEL
CHUNK_ELEMENTS = 1 << 22  # bounds the temporaries of the per-sample passes


@dataclass(frozen=True)
class Counts:
    """Member × member counts of one validation set; every matrix is float64 (M, M)."""

    n: int
    correct: np.ndarray         # bool (M, N)
    n11: np.ndarray             # both right; the diagonal is each member's right count
    agree: np.ndarray           # same predicted label
    chance_agree: np.ndarray    # Σ_c h_i(c) h_k(c), h a member's label histogram

    @property
    def right(self) -> np.ndarray:
        return np.diag(self.n11)

    @property
    def n10(self) -> np.ndarray:
        """Row member right, column member wrong."""
        return self.right[:, None] - self.n11

    @property
    def n01(self) -> np.ndarray:
        return self.right[None, :] - self.n11

    @property
    def n00(self) -> np.ndarray:
        return self.n - self.right[:, None] - self.right[None, :] + self.n11


def counts(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> Counts:
    """The once-per-set pass over samples: `predictions` (M, N) int, `labels` (N,)."""
    correct = predictions == labels
    c = correct.astype(np.float64)
    agree = np.stack([(row == predictions).sum(1) for row in predictions]).astype(np.float64)
    hist = np.stack([np.bincount(row, minlength=num_classes) for row in predictions])
    hist = hist.astype(np.float64)
    return Counts(labels.size, correct, c @ c.T, agree, hist @ hist.T)


def _association(num: np.ndarray, den: np.ndarray, same: np.ndarray) -> np.ndarray:
    """num/den, or 1 where undefined and the members behave identically, else 0."""
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, np.where(same, 1.0, 0.0))


def _kappa(observed: np.ndarray, chance: np.ndarray, total: float) -> np.ndarray:
    """(observed − chance)/(total − chance) in counts; 1 where chance is total."""
    den = total - chance
    return np.where(den > 0, (observed - chance) / np.where(den > 0, den, 1.0), 1.0)


def pairwise_matrices(c: Counts) -> dict[str, np.ndarray]:
    """Every pairwise metric as a symmetric (M, M) matrix, diversity-oriented. The diagonal
    pairs a member with itself: 0, except double fault diversity (its accuracy)."""
    n11, n00, n10, n01, n = c.n11, c.n00, c.n10, c.n01, float(c.n)
    same = (n10 + n01) == 0
    q = _association(n11 * n00 - n01 * n10, n11 * n00 + n01 * n10, same)
    rho = _association(n11 * n00 - n01 * n10, np.sqrt(
        (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)), same)
    right = c.right
    chance_right = np.outer(right, right) + np.outer(n - right, n - right)
    return {
        "label_disagreement": (n - c.agree) / n,
        "oracle_disagreement": (n10 + n01) / n,
        "q_diversity": 1.0 - q,
        "correlation_diversity": 1.0 - rho,
        "double_fault_diversity": 1.0 - n00 / n,
        "cohen_kappa_diversity": 1.0 - _kappa(n * c.agree, c.chance_agree, n * n),
        "error_consistency_diversity": 1.0 - _kappa(n * (n11 + n00), chance_right, n * n),
    }


def _sample_chunks(n: int, per_sample: int):
    step = max(1, CHUNK_ELEMENTS // max(per_sample, 1))
    return (slice(start, min(start + step, n)) for start in range(0, n, step))


def probability_matrices(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Symmetric KL and Jensen–Shannon between members, (M, M), mean over samples.
    `probs` (M, N, C); read in sample chunks so no (M, N·C) float64 copy is made."""
    m, n, k = probs.shape
    cross = np.zeros((m, m))
    js = np.zeros((m, m))
    for part in _sample_chunks(n, m * k):
        p = probs[:, part].astype(np.float64).reshape(m, -1)
        cross += p @ np.log(np.maximum(p, PROB_FLOOR)).T
        js += _js_sums(p)
    kl = (np.diag(cross)[:, None] - cross) / n  # row: KL(p_row ‖ p_col)
    return {"kl_divergence": (kl + kl.T) / 2, "js_divergence": js / n}


def _js_sums(p: np.ndarray) -> np.ndarray:
    """Σ over the chunk of JS(p_i, p_k) = H(mean) − (H(p_i) + H(p_k)) / 2."""
    m = p.shape[0]
    own = entr(p).sum(1)
    out = np.zeros((m, m))
    for i in range(m):
        for k in range(i + 1, m):
            out[i, k] = out[k, i] = entr((p[i] + p[k]) / 2).sum() - (own[i] + own[k]) / 2
    return out


def team_values(c: Counts, matrices: dict[str, np.ndarray],
                team_list: Sequence[tuple[int, ...]]) -> list[dict[str, float]]:
    """Every metric for every team (in the given order), grouped by size so each group is
    one gather from the matrices."""
    by_size: dict[int, list[int]] = {}
    for position, team in enumerate(team_list):
        by_size.setdefault(len(team), []).append(position)
    values: list[dict[str, float]] = [{} for _ in team_list]
    for size, positions in by_size.items():
        idx = np.array([team_list[p] for p in positions], np.intp).reshape(len(positions), size)
        columns = {**_pair_means(matrices, idx), **_team_level(c, idx)}
        for row, position in enumerate(positions):
            values[position] = {name: float(col[row]) for name, col in columns.items()}
    return values


def _pair_means(matrices: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    first, second = np.triu_indices(idx.shape[1], 1)
    a, b = idx[:, first], idx[:, second]
    return {name: mat[a, b].mean(1) for name, mat in matrices.items()}


def _team_level(c: Counts, idx: np.ndarray) -> dict[str, np.ndarray]:
    size, n = idx.shape[1], float(c.n)
    sum_l = c.right[idx].sum(1)                                    # Σ_j l_j
    sum_l2 = c.n11[idx[:, :, None], idx[:, None, :]].sum((1, 2))  # Σ_j l_j² = Σ_ik N11_ik
    spread = size * sum_l - sum_l2                                 # Σ_j l_j (L − l_j)
    p_right = sum_l / (n * size)
    fleiss_den = n * size * (size - 1) * p_right * (1 - p_right)
    wrong = n * size - sum_l                                       # Σ_j f_j, f = L − l
    both_wrong = c.n00[idx[:, :, None], idx[:, None, :]].sum((1, 2)) - wrong  # Σ_j f_j(f_j − 1)
    return {
        "kw_variance": spread / (n * size ** 2),
        "generalized_diversity": np.where(wrong > 0, 1.0 - both_wrong / (
            (size - 1) * np.where(wrong > 0, wrong, 1.0)), 0.0),
        "fleiss_kappa_diversity": np.where(fleiss_den > 0, spread / np.where(
            fleiss_den > 0, fleiss_den, 1.0), 0.0),
        "entropy": _entropy(c.correct, idx),
    }


def _entropy(correct: np.ndarray, idx: np.ndarray) -> np.ndarray:
    size, n = idx.shape[1], correct.shape[1]
    out = np.empty(idx.shape[0])
    step = max(1, CHUNK_ELEMENTS // (size * n))
    for start in range(0, idx.shape[0], step):
        right = correct[idx[start:start + step]].sum(1)            # (teams, N) l_j
        out[start:start + step] = np.minimum(right, size - right).mean(1) / (size // 2)
    return out


def prediction_diversity(outputs: MemberOutputs, team_list: Sequence[tuple[int, ...]],
                         probabilities: bool = True) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows (team as names, size, every metric) and the pairwise (M, M) matrices that
    feed heatmaps. `probabilities=False` skips KL/JS, the only O(M² N C) part."""
    c = counts(outputs.predictions, outputs.labels, outputs.num_classes)
    matrices = pairwise_matrices(c)
    if probabilities:
        matrices.update(probability_matrices(outputs.probs))
    rows = [{"team": tuple(outputs.names[i] for i in team), "size": len(team), **values}
            for team, values in zip(team_list, team_values(c, matrices, team_list))]
    return rows, matrices
