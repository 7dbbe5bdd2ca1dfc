"""Prediction diversity: the fast path against per-sample loops, and hand-computed values."""

import math
from itertools import combinations

import numpy as np
import pytest

from ensui.engine.diversity import METRICS, prediction_diversity
from ensui.engine.diversity.prediction import counts, pairwise_matrices, team_values
from ensui.engine.ensembles import PROB_FLOOR, MemberOutputs, teams

M, N, C = 5, 200, 7


def random_outputs(seed=0, m=M, n=N, c=C):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 2, (m, n, c))
    logits[:, np.arange(n), labels] += rng.uniform(0, 3, (m, 1))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs[0, :5, 0] = 0.0  # a saturated float16 zero: KL must stay finite
    return MemberOutputs(tuple(f"m{i}" for i in range(m)), probs.astype(np.float32), labels)


def slow_pair(pred_i, pred_k, y, p_i, p_k):
    """Pairwise metrics (diversity-oriented) from per-sample loops."""
    n = len(y)
    n11 = n00 = n10 = n01 = same_label = 0
    for a, b, t in zip(pred_i, pred_k, y):
        ri, rk = a == t, b == t
        n11 += ri and rk
        n00 += (not ri) and (not rk)
        n10 += ri and not rk
        n01 += rk and not ri
        same_label += a == b
    q_den = n11 * n00 + n01 * n10
    q = (n11 * n00 - n01 * n10) / q_den if q_den else (1.0 if n10 + n01 == 0 else 0.0)
    rho_den = math.sqrt((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
    rho = (n11 * n00 - n01 * n10) / rho_den if rho_den else (1.0 if n10 + n01 == 0 else 0.0)
    classes = set(pred_i) | set(pred_k)
    pe = sum((list(pred_i).count(c) / n) * (list(pred_k).count(c) / n) for c in classes)
    po = same_label / n
    cohen = (po - pe) / (1 - pe) if pe < 1 else 1.0
    pi_, pk_ = (n11 + n10) / n, (n11 + n01) / n
    c_exp = pi_ * pk_ + (1 - pi_) * (1 - pk_)
    c_obs = (n11 + n00) / n
    ec = (c_obs - c_exp) / (1 - c_exp) if c_exp < 1 else 1.0
    out = {"label_disagreement": 1 - po, "oracle_disagreement": (n01 + n10) / n,
           "q_diversity": 1 - q, "correlation_diversity": 1 - rho,
           "double_fault_diversity": 1 - n00 / n, "cohen_kappa_diversity": 1 - cohen,
           "error_consistency_diversity": 1 - ec}
    if p_i is not None:
        kl_ik = kl_ki = js = 0.0
        for u, v in zip(p_i, p_k):
            u, v = u.astype(np.float64), v.astype(np.float64)
            lu, lv = np.log(np.maximum(u, PROB_FLOOR)), np.log(np.maximum(v, PROB_FLOOR))
            kl_ik += float(np.sum(u * (lu - lv)))
            kl_ki += float(np.sum(v * (lv - lu)))
            js += _js(u, v)
        out["kl_divergence"] = (kl_ik + kl_ki) / (2 * n)
        out["js_divergence"] = js / n
    return out


def _js(u, v):
    total = 0.0
    for a, b in zip(u, v):
        w = (a + b) / 2
        if a > 0:
            total += 0.5 * a * math.log(a / w)
        if b > 0:
            total += 0.5 * b * math.log(b / w)
    return total


def slow_team_level(correct_rows):
    """KW, GD, Fleiss κ diversity and entropy straight from the definitions."""
    L, n = len(correct_rows), len(correct_rows[0])
    ls = [sum(int(row[j]) for row in correct_rows) for j in range(n)]
    kw = sum(l * (L - l) for l in ls) / (n * L * L)
    fails = [L - l for l in ls]
    p_i = [sum(1 for f in fails if f == i) / n for i in range(L + 1)]
    p1 = sum(i / L * p_i[i] for i in range(L + 1))
    p2 = sum(i * (i - 1) / (L * (L - 1)) * p_i[i] for i in range(L + 1))
    gd = 1 - p2 / p1 if p1 > 0 else 0.0
    pbar = sum(ls) / (n * L)
    # Fleiss' κ for two categories (right / wrong), by its own definition
    P_j = [(l * (l - 1) + (L - l) * (L - l - 1)) / (L * (L - 1)) for l in ls]
    Pe = pbar ** 2 + (1 - pbar) ** 2
    fleiss = (np.mean(P_j) - Pe) / (1 - Pe) if Pe < 1 else 1.0
    entropy = sum(min(l, L - l) for l in ls) / (n * (L - math.ceil(L / 2)))
    return {"kw_variance": kw, "generalized_diversity": gd,
            "fleiss_kappa_diversity": 1 - fleiss, "entropy": entropy}


def slow_team(out, team):
    pred, y, probs = out.predictions, out.labels, out.probs
    pairs = [slow_pair(pred[i], pred[k], y, probs[i], probs[k]) for i, k in combinations(team, 2)]
    values = {key: np.mean([p[key] for p in pairs]) for key in pairs[0]}
    values.update(slow_team_level([pred[i] == y for i in team]))
    return values


def test_fast_path_equals_slow_path_for_every_team():
    out = random_outputs()
    team_list = teams(out.names, "all")
    rows, matrices = prediction_diversity(out, team_list)
    assert set(matrices) == set(METRICS) - {"kw_variance", "generalized_diversity",
                                            "fleiss_kappa_diversity", "entropy"}
    for team, row in zip(team_list, rows):
        assert row["team"] == tuple(out.names[i] for i in team) and row["size"] == len(team)
        expected = slow_team(out, team)
        assert set(expected) == set(METRICS)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-12), (team, key)


def test_matrices_are_symmetric_with_zero_diagonal():
    out = random_outputs(1)
    _, matrices = prediction_diversity(out, [(0, 1)])
    for name, mat in matrices.items():
        assert np.allclose(mat, mat.T, atol=1e-15), name
        # a member with itself: no diversity, except that "not both wrong" is its accuracy
        diagonal = out.accuracies if name == "double_fault_diversity" else 0
        assert np.allclose(np.diag(mat), diagonal, atol=1e-12), name
        assert np.isfinite(mat).all(), name


def hand_outputs():
    """3 members, 6 samples, 3 classes, labels all 0 (probabilities only fix the argmax).
    a: 0 0 0 1 1 2   b: 0 1 0 0 2 2   c: 1 2 0 1 2 2"""
    pred = np.array([[0, 0, 0, 1, 1, 2], [0, 1, 0, 0, 2, 2], [1, 2, 0, 1, 2, 2]])
    probs = np.full((3, 6, 3), 0.1, np.float32)
    np.put_along_axis(probs, pred[..., None], 0.8, -1)
    return MemberOutputs(("a", "b", "c"), probs, np.zeros(6, np.int64))


def test_hand_values():
    out = hand_outputs()
    rows, m = prediction_diversity(out, [(0, 1), (0, 1, 2)], probabilities=False)
    # a vs b: right (1,1,1,0,0,0) vs (1,0,1,1,0,0): N11=2, N10=1, N01=1, N00=2
    # labels differ on samples 1, 3, 4 -> disagreement 3/6
    assert m["label_disagreement"][0, 1] == pytest.approx(3 / 6)
    assert m["oracle_disagreement"][0, 1] == pytest.approx(2 / 6)
    assert m["q_diversity"][0, 1] == pytest.approx(1 - (4 - 1) / (4 + 1))
    assert m["double_fault_diversity"][0, 1] == pytest.approx(1 - 2 / 6)
    # a vs c: c right only on sample 2: N11=1, N10=2, N01=0, N00=3; labels differ on 0,1,4
    assert m["q_diversity"][0, 2] == pytest.approx(1 - (3 - 0) / (3 + 0))
    assert m["label_disagreement"][0, 2] == pytest.approx(3 / 6)
    # b vs c: labels differ on 0, 1, 3; on sample 1 both are wrong with different labels,
    # which label disagreement counts and oracle disagreement does not.
    assert m["label_disagreement"][1, 2] == pytest.approx(3 / 6)
    assert m["oracle_disagreement"][1, 2] == pytest.approx(2 / 6)
    assert m["double_fault_diversity"][1, 2] == pytest.approx(1 - 3 / 6)
    # team of three: l_j = 2 1 3 1 0 0 -> KW = Σ l(3-l) / (6·9) = (2+2+0+2+0+0)/54
    assert rows[1]["kw_variance"] == pytest.approx(6 / 54)
    # entropy: min(l, 3-l) / (3 - 2) = 1 1 0 1 0 0 -> 3/6
    assert rows[1]["entropy"] == pytest.approx(3 / 6)
    # failing counts f = 1 2 0 2 3 3: p(1) = 11/18, p(2) = (0+2+0+2+6+6)/(6·6) = 16/36
    assert rows[1]["generalized_diversity"] == pytest.approx(1 - (16 / 36) / (11 / 18))


def test_identical_and_all_correct_members_give_zero_diversity_not_nan():
    probs = np.tile(np.array([[.7, .2, .1]], np.float32), (3, 4, 1))
    out = MemberOutputs(("a", "b", "c"), probs, np.zeros(4, np.int64))
    rows, _ = prediction_diversity(out, [(0, 1), (0, 1, 2)])
    for row in rows:
        for key in METRICS:
            # never failing together is what double fault rewards, whatever the cause
            expected = 1.0 if key == "double_fault_diversity" else 0.0
            assert row[key] == pytest.approx(expected, abs=1e-12), key


def test_constant_member_q_and_rho_are_zero():
    """One member always right, the other not: Q and ρ are 0/0; documented as 0."""
    pred = np.array([[0, 0, 0, 0], [0, 1, 0, 1]])
    c = counts(pred, np.zeros(4, np.int64), 2)
    m = pairwise_matrices(c)
    assert m["q_diversity"][0, 1] == 1.0 and m["correlation_diversity"][0, 1] == 1.0


def test_team_values_keep_order_across_sizes():
    out = random_outputs(2, m=4, n=50)
    c = counts(out.predictions, out.labels, out.num_classes)
    mats = pairwise_matrices(c)
    order = [(0, 1, 2), (1, 3), (0, 1, 2, 3), (0, 2)]
    mixed = team_values(c, mats, order)
    for team, values in zip(order, mixed):
        assert values == team_values(c, mats, [team])[0]
