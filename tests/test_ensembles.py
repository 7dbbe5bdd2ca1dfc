"""Teams, consensus and improvement against per-sample loops and hand-computed values."""

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pytest

from ensui.engine.ensembles import CONSENSUS, PROB_FLOOR, MemberOutputs, score_teams, teams

M, N, C = 5, 200, 7


@dataclass
class FakeOutputs:
    values: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    kind: str


def random_outputs(seed=0, kind="logits", m=M, n=N, c=C):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    ids = np.array([f"s{j}" for j in range(n)])
    result = {}
    for i in range(m):
        logits = rng.normal(0, 2, (n, c))
        logits[np.arange(n), labels] += rng.uniform(0, 3)  # members of differing skill
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        values = logits if kind == "logits" else probs
        result[f"m{i}"] = FakeOutputs(values.astype(np.float16), labels, ids, kind)
    return MemberOutputs.from_outputs(result)


def slow_row(out, team, consensus):
    """Per-sample reference, written without the module's helpers."""
    n = out.labels.size
    hits, log_losses = 0, []
    member_acc = [np.mean([out.probs[i, j].argmax() == out.labels[j] for j in range(n)])
                  for i in team]
    member_nll = [np.mean([-math.log(max(float(out.probs[i, j, out.labels[j]]), PROB_FLOOR))
                           for j in range(n)]) for i in team]
    for j in range(n):
        y = out.labels[j]
        mean_p = out.probs[team[0], j].astype(np.float64)
        for i in team[1:]:
            mean_p = mean_p + out.probs[i, j]
        if consensus == "average":
            label = mean_p.argmax()
        elif consensus == "vote":
            votes = [out.probs[i, j].argmax() for i in team]
            counts = {k: votes.count(k) for k in set(votes)}
            best = max(counts.values())
            tied = [k for k in range(out.num_classes) if counts.get(k, 0) == best]
            label = max(tied, key=lambda k: (mean_p[k], -k))
        elif consensus == "max_confidence":
            confs = [out.probs[i, j].max() for i in team]
            label = out.probs[team[confs.index(max(confs))], j].argmax()
        else:
            z = out.logits[team[0], j].astype(np.float64)
            for i in team[1:]:
                z = z + out.logits[i, j]
            label = z.argmax()
            zbar = z / len(team)
            log_q = zbar[y] - (zbar.max() + math.log(np.exp(zbar - zbar.max()).sum()))
            log_losses.append(-max(log_q, math.log(PROB_FLOOR)))
        hits += label == y
        if consensus != "logit_average":
            q = sum(max(float(out.probs[i, j, y]), PROB_FLOOR) for i in team) / len(team)
            log_losses.append(-math.log(q))
    acc, nll = hits / n, float(np.mean(log_losses))
    mean_err = 1 - np.mean(member_acc)
    return {"accuracy": acc, "nll": nll, "average_accuracy": np.mean(member_acc),
            "vs_mean": acc - np.mean(member_acc), "vs_best": acc - max(member_acc),
            "eir": (mean_err - (1 - acc)) / mean_err, "nll_gain": np.mean(member_nll) - nll}


def test_teams_enumerates_sizes_in_order():
    names = ["a", "b", "c", "d"]
    assert teams(names) == list(combinations(range(4), 2)) + list(combinations(range(4), 3))
    assert teams(names, "all")[-1] == (0, 1, 2, 3)
    assert len(teams([f"m{i}" for i in range(12)], [2])) == 66  # no 10-member limit


def test_explicit_teams_by_name():
    assert teams(["a", "b", "c"], explicit=[["c", "a"], ["a", "b", "c"]]) == [(0, 2), (0, 1, 2)]


@pytest.mark.parametrize("kwargs, message", [
    ({"sizes": [4]}, "from 2 to 3"),
    ({"sizes": [1]}, "from 2 to 3"),
    ({"sizes": [2, 2]}, "duplicate team sizes"),
    ({"sizes": "most"}, "'all'"),
    ({"explicit": [["a", "z"]]}, "unknown member"),
    ({"explicit": [["a", "a"]]}, "twice"),
    ({"explicit": [["a", "b"], ["b", "a"]]}, "listed twice"),
    ({"explicit": [["a"]]}, "fewer than 2"),
])
def test_teams_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        teams(["a", "b", "c"], **kwargs)


def test_duplicate_member_names_rejected():
    with pytest.raises(ValueError, match="duplicate member names: a"):
        teams(["a", "b", "a"])


def test_mismatched_sample_order_rejected():
    labels = np.array([0, 1, 1])
    values = np.zeros((3, 2), np.float16)
    a = FakeOutputs(values, labels, np.array(["x", "y", "z"]), "logits")
    b = FakeOutputs(values, labels, np.array(["x", "z", "y"]), "logits")
    with pytest.raises(ValueError, match="sample order: position 1"):
        MemberOutputs.from_outputs({"a": a, "b": b})


def test_logit_average_needs_logits():
    out = random_outputs(kind="probs", m=3, n=20)
    assert out.logits is None
    with pytest.raises(ValueError, match="needs logits"):
        score_teams(out, [(0, 1)], ["logit_average"])


@pytest.mark.parametrize("consensus", CONSENSUS)
def test_every_team_matches_per_sample_reference(consensus):
    out = random_outputs()
    team_list = teams(out.names, "all")
    rows = score_teams(out, team_list, [consensus])
    assert [r["team"] for r in rows] == [tuple(out.names[i] for i in t) for t in team_list]
    for team, row in zip(team_list, rows):
        expected = slow_row(out, team, consensus)
        assert row["size"] == len(team) and row["consensus"] == consensus
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-12), (team, key)


def test_rows_in_given_order_whatever_the_walk():
    out = random_outputs(m=4, n=50)
    order = [(1, 3), (0, 1, 2), (0, 1), (2, 3)]
    rows = score_teams(out, order, ["average", "vote"])
    assert [(r["team"], r["consensus"]) for r in rows] == [
        (tuple(out.names[i] for i in t), c) for t in order for c in ("average", "vote")]
    alone = score_teams(out, [(0, 1)], ["average"])[0]
    assert rows[4] == alone


def test_nll_gain_non_negative_for_averaging():
    for seed in range(3):
        out = random_outputs(seed, kind="probs")
        rows = score_teams(out, teams(out.names, "all"), ["average"])
        assert min(r["nll_gain"] for r in rows) >= 0


def hand_outputs():
    """3 members, 6 samples, 3 classes; every label is 0.
    Predictions: a = 0 0 0 1 1 2 (3/6 right), b = 0 1 0 0 2 2 (3/6), c = 1 2 0 1 2 2 (1/6)."""
    probs = np.array([
        [[.6, .3, .1], [.6, .3, .1], [.6, .3, .1], [.2, .7, .1], [.2, .7, .1], [.2, .1, .7]],
        [[.5, .4, .1], [.3, .6, .1], [.6, .3, .1], [.6, .3, .1], [.3, .1, .6], [.2, .1, .7]],
        [[.2, .7, .1], [.2, .05, .75], [.5, .4, .1], [.3, .6, .1], [.4, .1, .5], [.1, .1, .8]],
    ], np.float32)
    return MemberOutputs(("a", "b", "c"), probs, np.zeros(6, np.int64))


def test_vote_tie_goes_to_highest_mean_probability():
    out = hand_outputs()
    # votes of a, b, c: (0,0,1) (0,1,2) (0,0,0) (1,0,1) (1,2,2) (2,2,2); sample 1 is a
    # three-way tie, mean probabilities (.37, .32, .32) -> class 0: right on samples 0-2.
    assert score_teams(out, [(0, 1, 2)], ["vote"])[0]["accuracy"] == pytest.approx(3 / 6)
    # a with c: sample 0 ties 0/1 with sums (.8, 1.0, .2) -> 1, so the vote's first class
    # does not win; sample 4 ties 1/2 with sums (.6, .8, .6) -> 1. Right only on sample 2.
    assert score_teams(out, [(0, 2)], ["vote"])[0]["accuracy"] == pytest.approx(1 / 6)


def test_vote_exact_tie_in_probability_goes_to_lowest_class():
    probs = np.array([[[.5, .25, .25]], [[.25, .25, .5]]], np.float32)  # votes 0 and 2
    for label, hits in ((0, 1.0), (2, 0.0)):
        out = MemberOutputs(("a", "b"), probs, np.array([label]))
        assert score_teams(out, [(0, 1)], ["vote"])[0]["accuracy"] == hits


def test_improvement_on_hand_example():
    out = hand_outputs()
    assert list(out.accuracies) == pytest.approx([3 / 6, 3 / 6, 1 / 6])
    row = score_teams(out, [(0, 1, 2)], ["average"])[0]
    # summed probabilities: (1.3, 1.4, .3) (1.1, .95, .95) (1.7, 1.0, .3) (1.1, 1.6, .3)
    # (.9, .9, 1.2) (.5, .3, 2.2) -> right on samples 1 and 2
    assert row["accuracy"] == pytest.approx(2 / 6)
    mean_acc = 7 / 18
    assert row["average_accuracy"] == pytest.approx(mean_acc)
    assert row["vs_mean"] == pytest.approx(2 / 6 - 7 / 18)
    assert row["vs_best"] == pytest.approx(2 / 6 - 3 / 6)
    assert row["eir"] == pytest.approx((11 / 18 - 4 / 6) / (11 / 18))
    true_p = np.array([[.6, .6, .6, .2, .2, .2], [.5, .3, .6, .6, .3, .2],
                       [.2, .2, .5, .3, .4, .1]])
    nll = -np.log(true_p.mean(0)).mean()
    assert row["nll"] == pytest.approx(nll, rel=1e-6)
    assert row["nll_gain"] == pytest.approx(-np.log(true_p).mean() - nll, rel=1e-5)


def test_max_confidence_follows_most_confident_member():
    out = hand_outputs()
    row = score_teams(out, [(0, 2)], ["max_confidence"])[0]
    # most confident: c(.7)->1, c(.75)->2, a(.6)->0, a(.7)->1, a(.7)->1, c(.8)->2
    assert row["accuracy"] == pytest.approx(1 / 6)


def test_eir_undefined_when_members_never_err():
    probs = np.tile(np.array([[.9, .1]], np.float32), (2, 4, 1))
    out = MemberOutputs(("a", "b"), probs, np.zeros(4, np.int64))
    row = score_teams(out, [(0, 1)], ["average"])[0]
    assert row["eir"] is None and row["vs_mean"] == 0.0


def test_running_sums_reuse_the_shared_prefix():
    from ensui.engine.ensembles import _RunningSums
    arrays = np.random.default_rng(0).random((4, 3, 2)).astype(np.float32)
    sums = _RunningSums(arrays)
    sums.total((0, 1, 2))
    prefix = sums.stack[1][1]
    total = sums.total((0, 1, 3))
    assert sums.stack[1][1] is prefix  # P_{0,1,3} = P_{0,1} + p_3, P_{0,1} not recomputed
    assert np.array_equal(total, arrays[0].astype(np.float64) + arrays[1] + arrays[3])
    assert np.array_equal(sums.total((2,)), arrays[2]) and len(sums.stack) == 1
