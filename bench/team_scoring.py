"""Team scoring sweep: the fast path (score_teams + prediction_diversity) against a
straightforward per-team recomputation from samples, same process, same inputs.

Random member outputs (seeded float16 logits: the label's logit raised by a per-member
skill, plus Gaussian noise shared a little between members, so accuracies spread over
about 30-80 % and members are correlated) for M members on S sets of N samples x C
classes. Every team of sizes 2-4 is scored on every set by the fast path: ensemble metrics
with consensus ``average`` and all prediction-diversity metrics, KL/JS included. A seeded
subset of teams (spread over the sizes, each checked on one set, round-robin over the
sets) is recomputed the straightforward way: stack the team's member probabilities and
recompute everything from samples (no count matrices, no running sums); the values must
agree to 1e-9 (absolute or relative), else the exit status is 1.

Speedup = reference time per team / fast-path time per team, the fast path amortised
over the whole sweep (its per-set work - counts, KL/JS matrices, member caches -
is shared by every team of the set). Target >= 50x. Also printed: the fast path run on
the subset's teams alone, per-set work included.

    python bench/team_scoring.py [--members 14 --sets 5 --samples 10000 --classes 1000
                                  --subset 40 --seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from itertools import combinations

import numpy as np
from scipy.special import ndtr, rel_entr

from ensui.engine.diversity.prediction import METRICS, prediction_diversity
from ensui.engine.ensembles import MemberOutputs, score_teams, teams

SIZES = (2, 3, 4)
FLOOR = 1e-12            # methods.md: probabilities floored before any log
SHARED = 0.2             # share of the logit noise variance common to all members
LOGIT_SCALE = 2.5        # sharpens the softmax (top probability ~0.5 for C = 1000)
ACCURACY_RANGE = (0.30, 0.80)
ENSEMBLE_KEYS = ("accuracy", "nll", "average_accuracy", "vs_mean", "vs_best", "eir",
                 "nll_gain")
TOLERANCE = 1e-9


# ---------------------------------------------------------------------------------------
# data

def signal_for_accuracy(target: float, classes: int) -> float:
    """The label-logit offset s with P(s + z_y > max of C-1 other z) = target, z ~ N(0,1)
    iid (the accuracy of a member whose noise is unit-variance per class)."""
    z = np.linspace(-9, 9, 6001)
    density = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def accuracy(s: float) -> float:
        return float(np.sum(density * ndtr(z + s) ** (classes - 1)) * (z[1] - z[0]))

    low, high = -10.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if accuracy(mid) < target else (low, mid)
    return (low + high) / 2


def member_skills(members: int, classes: int, seed: int) -> np.ndarray:
    targets = np.random.default_rng([seed, 1 << 20]).uniform(*ACCURACY_RANGE, members)
    return np.array([signal_for_accuracy(t, classes) for t in targets])


def make_set(members: int, samples: int, classes: int, skills: np.ndarray, seed: int,
             set_index: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 probabilities (M, N, C) from float16 logits, and int64 labels (N,). Only one
    member's logits exist at a time besides the result."""
    rng = np.random.default_rng([seed, set_index])
    labels = rng.integers(0, classes, samples)
    shared = rng.standard_normal((samples, classes), dtype=np.float32)
    rows = np.arange(samples)
    probs = np.empty((members, samples, classes), np.float32)
    for i in range(members):
        noise = rng.standard_normal((samples, classes), dtype=np.float32)
        noise *= math.sqrt(1 - SHARED)
        noise += math.sqrt(SHARED) * shared
        noise[rows, labels] += skills[i]
        noise *= LOGIT_SCALE
        logits = noise.astype(np.float16)           # what a member would have stored
        z = logits.astype(np.float32)
        z -= z.max(1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(1, keepdims=True)
        probs[i] = z
    return probs, labels


def pick_subset(team_list: list[tuple[int, ...]], count: int, sets: int,
                seed: int) -> dict[int, list[tuple[int, ...]]]:
    """`count` teams spread evenly over the sizes, each assigned to one set."""
    rng = np.random.default_rng([seed, 1 << 21])
    sizes = sorted({len(t) for t in team_list})
    chosen: list[tuple[int, ...]] = []
    for position, size in enumerate(sizes):
        pool = [t for t in team_list if len(t) == size]
        want = min(len(pool), count // len(sizes) + (position < count % len(sizes)))
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), want, replace=False))]
    per_set: dict[int, list[tuple[int, ...]]] = {s: [] for s in range(sets)}
    for slot, j in enumerate(rng.permutation(len(chosen))):
        per_set[slot % sets].append(chosen[j])
    return per_set


# ---------------------------------------------------------------------------------------
# the straightforward reference: one team at a time, everything from samples

def reference_team(probs: np.ndarray, labels: np.ndarray, team: tuple[int, ...]) -> dict:
    size, n = len(team), labels.size
    rows = np.arange(n)
    p = probs[list(team)].astype(np.float64)                      # (L, N, C)
    pred = p.argmax(-1)                                           # (L, N)
    right = pred == labels                                        # (L, N)
    true_p = np.maximum(p[:, rows, labels], FLOOR)                # (L, N)

    # ensemble metrics, consensus "average": argmax of the mean probability
    member_acc = right.mean(1)
    member_nll = -np.log(true_p).mean(1)
    accuracy = float(np.mean(p.mean(0).argmax(-1) == labels))
    nll = float(-np.log(true_p.mean(0)).mean())
    mean_err = 1.0 - member_acc.mean()
    values = {
        "accuracy": accuracy, "nll": nll, "average_accuracy": float(member_acc.mean()),
        "vs_mean": accuracy - float(member_acc.mean()),
        "vs_best": accuracy - float(member_acc.max()),
        "eir": None if mean_err == 0 else float((mean_err - (1 - accuracy)) / mean_err),
        "nll_gain": float(member_nll.mean()) - nll,
    }

    # pairwise diversity, each pair straight from its samples, then the mean over pairs
    log_p = np.log(np.maximum(p, FLOOR))
    pairs = [reference_pair(p[a], p[b], log_p[a], log_p[b], pred[a], pred[b], right[a],
                            right[b], probs.shape[2])
             for a, b in combinations(range(size), 2)]
    for key in pairs[0]:
        values[key] = float(np.mean([pair[key] for pair in pairs]))

    # team-level diversity from l_j, the number of members right on sample j
    l = right.sum(0)
    kw = float(np.sum(l * (size - l)) / (n * size * size))
    fails = size - l
    share = np.bincount(fails, minlength=size + 1) / n            # p_i: i members fail
    i = np.arange(size + 1)
    p1 = float(np.sum(i / size * share))
    p2 = float(np.sum(i * (i - 1) / (size * (size - 1)) * share))
    agreement = (l * (l - 1) + fails * (fails - 1)) / (size * (size - 1))  # Fleiss P_j
    p_bar = l.sum() / (n * size)
    chance = p_bar ** 2 + (1 - p_bar) ** 2
    fleiss = (agreement.mean() - chance) / (1 - chance) if chance < 1 else 1.0
    values.update({
        "kw_variance": kw,
        "generalized_diversity": 1 - p2 / p1 if p1 > 0 else 0.0,
        "fleiss_kappa_diversity": float(1 - fleiss),
        "entropy": float(np.minimum(l, size - l).mean() / (size - math.ceil(size / 2))),
    })
    return values


def reference_pair(u, v, log_u, log_v, pred_u, pred_v, right_u, right_v, classes) -> dict:
    n = pred_u.size
    n11 = int(np.count_nonzero(right_u & right_v))
    n00 = int(np.count_nonzero(~right_u & ~right_v))
    n10 = int(np.count_nonzero(right_u & ~right_v))
    n01 = int(np.count_nonzero(~right_u & right_v))
    same = n10 + n01 == 0
    q_den = n11 * n00 + n01 * n10
    q = (n11 * n00 - n01 * n10) / q_den if q_den else (1.0 if same else 0.0)
    # ρ: Pearson correlation of the two correctness indicators
    a = right_u - right_u.mean()
    b = right_v - right_v.mean()
    rho_den = math.sqrt(float(a @ a) * float(b @ b))
    rho = float(a @ b) / rho_den if rho_den else (1.0 if same else 0.0)
    # Cohen's κ on predicted labels
    agree = float(np.mean(pred_u == pred_v))
    hist_u = np.bincount(pred_u, minlength=classes) / n
    hist_v = np.bincount(pred_v, minlength=classes) / n
    chance = float(hist_u @ hist_v)
    cohen = (agree - chance) / (1 - chance) if chance < 1 else 1.0
    # error consistency (Geirhos et al. 2020)
    acc_u, acc_v = right_u.mean(), right_v.mean()
    c_exp = acc_u * acc_v + (1 - acc_u) * (1 - acc_v)
    c_obs = float(np.mean(right_u == right_v))
    consistency = (c_obs - c_exp) / (1 - c_exp) if c_exp < 1 else 1.0
    # probability level: symmetric KL (floored logs) and JS = mean of KL to the midpoint
    kl = (np.sum(u * (log_u - log_v)) + np.sum(v * (log_v - log_u))) / (2 * n)
    mid = (u + v) / 2
    js = (rel_entr(u, mid).sum() + rel_entr(v, mid).sum()) / (2 * n)
    return {
        "label_disagreement": 1 - agree,
        "oracle_disagreement": float(np.mean(right_u != right_v)),
        "q_diversity": 1 - q,
        "correlation_diversity": 1 - rho,
        "double_fault_diversity": 1 - n00 / n,
        "cohen_kappa_diversity": 1 - cohen,
        "error_consistency_diversity": float(1 - consistency),
        "kl_divergence": float(kl),
        "js_divergence": float(js),
    }


# ---------------------------------------------------------------------------------------
# the fast path

def fast_path(probs: np.ndarray, labels: np.ndarray, names: tuple[str, ...],
              team_list: list[tuple[int, ...]]) -> tuple[dict, float, float]:
    """Rows by team (ensemble + diversity merged), seconds in score_teams and in
    prediction_diversity. A fresh MemberOutputs, so its per-member caches are timed too."""
    outputs = MemberOutputs(names, probs, labels)
    began = time.perf_counter()
    scored = score_teams(outputs, team_list, ["average"])
    middle = time.perf_counter()
    diversity, _ = prediction_diversity(outputs, team_list)
    ended = time.perf_counter()
    rows = {team: {**s, **d} for team, s, d in zip(team_list, scored, diversity)}
    return rows, middle - began, ended - middle


# ---------------------------------------------------------------------------------------

def differs(fast, ref) -> bool:
    if fast is None or ref is None:
        return (fast is None) != (ref is None)
    gap = abs(fast - ref)
    return not (gap <= TOLERANCE or gap <= TOLERANCE * abs(ref))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=14)
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--subset", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 6 members, 2 sets, 500 samples, 50 classes, subset 12")
    args = parser.parse_args()
    if args.quick:
        args.members, args.sets, args.samples, args.classes, args.subset = 6, 2, 500, 50, 12
    m, s, n, c = args.members, args.sets, args.samples, args.classes
    if m < 2 or s < 1 or n < 1 or c < 2 or args.subset < 1:
        parser.error("need members >= 2, sets >= 1, samples >= 1, classes >= 2, subset >= 1")

    names = tuple(f"m{i:02d}" for i in range(m))
    sizes = [size for size in SIZES if size <= m]
    team_list = teams(names, sizes)
    per_size = [sum(len(t) == size for t in team_list) for size in sizes]
    subset = pick_subset(team_list, args.subset, s, args.seed)
    checked = sum(len(v) for v in subset.values())
    skills = member_skills(m, c, args.seed)

    print(f"sizes: M={m} members, S={s} sets, N={n} samples, C={c} classes, seed {args.seed}; "
          f"float16 logits {m * n * c * 2 / 1e6:.0f} MB per set, float32 probabilities "
          f"{m * n * c * 4 / 1e6:.0f} MB (one set at a time)")
    print(f"teams: sizes {sizes[0]}-{sizes[-1]} -> {' + '.join(map(str, per_size))} = "
          f"{len(team_list)} per set, {len(team_list) * s} team-set evaluations; consensus "
          f"average; {len(METRICS)} diversity metrics (KL/JS included)")

    fast_score = fast_div = sub_score = sub_div = 0.0
    ref_time = {size: 0.0 for size in sizes}
    ref_count = {size: 0 for size in sizes}
    worst = {key: 0.0 for key in ENSEMBLE_KEYS + METRICS}
    failures: list[str] = []
    member_acc: list[np.ndarray] = []
    for set_index in range(s):
        probs, labels = make_set(m, n, c, skills, args.seed, set_index)
        member_acc.append((probs.argmax(-1) == labels).mean(1))

        rows, t_score, t_div = fast_path(probs, labels, names, team_list)
        fast_score += t_score
        fast_div += t_div
        t_set = t_score + t_div
        mine = subset[set_index]
        fast_rows = {team: rows[team] for team in mine}
        del rows

        if mine:  # the fast path on the subset's teams alone, per-set work included
            alone, t_score, t_div = fast_path(probs, labels, names, mine)
            sub_score += t_score
            sub_div += t_div
            for team in mine:
                if alone[team] != fast_rows[team]:
                    failures.append(f"set {set_index} team {team}: subset-only fast rows "
                                    f"differ from the sweep's")

        t_ref = 0.0
        for team in mine:
            began = time.perf_counter()
            expected = reference_team(probs, labels, team)
            spent = time.perf_counter() - began
            t_ref += spent
            ref_time[len(team)] += spent
            ref_count[len(team)] += 1
            got = fast_rows[team]
            missing = set(METRICS) - set(expected)
            if missing:
                failures.append(f"no reference for {sorted(missing)}")
            for key in ENSEMBLE_KEYS + METRICS:
                fast_value, ref_value = got.get(key), expected.get(key)
                if fast_value is not None and ref_value is not None:
                    worst[key] = max(worst[key], abs(fast_value - ref_value))
                if differs(fast_value, ref_value):
                    failures.append(f"set {set_index} team {team} {key}: fast {fast_value!r} "
                                    f"reference {ref_value!r}")
        print(f"  set {set_index + 1}/{s}: member accuracy {member_acc[-1].min():.3f}-"
              f"{member_acc[-1].max():.3f}; fast sweep {t_set:.1f} s; reference on {len(mine)} "
              f"teams {t_ref:.1f} s",
              flush=True)
        del probs, labels

    accs = np.concatenate(member_acc)
    fast_total = fast_score + fast_div
    evaluations = len(team_list) * s
    fast_per_team = fast_total / evaluations
    ref_total = sum(ref_time.values())
    ref_per_team = ref_total / checked
    sub_total = sub_score + sub_div
    sub_per_team = sub_total / checked
    print(f"member accuracies over all sets: min {accs.min():.3f}, mean {accs.mean():.3f}, "
          f"max {accs.max():.3f}")
    print(f"fast path, whole sweep: {fast_total:.2f} s (score_teams {fast_score:.2f} s, "
          f"prediction_diversity {fast_div:.2f} s) for {evaluations} team-set evaluations "
          f"= {fast_per_team * 1e3:.3f} ms per team")
    print(f"subset: {checked} teams ("
          + ", ".join(f"{ref_count[size]} of size {size}" for size in sizes)
          + f"), each checked on one of the {s} sets")
    print(f"fast path on the subset alone (per-set work included): {sub_total:.2f} s "
          f"= {sub_per_team * 1e3:.3f} ms per team")
    print(f"reference on the subset: {ref_total:.2f} s = {ref_per_team * 1e3:.3f} ms per team ("
          + ", ".join(f"size {size}: {ref_time[size] / ref_count[size] * 1e3:.1f} ms"
                      for size in sizes if ref_count[size]) + ")")
    print("max |fast - reference| per metric:")
    for key in ENSEMBLE_KEYS + METRICS:
        print(f"  {key:<30s} {worst[key]:.3e}")
    speedup = ref_per_team / fast_per_team
    print(f"speedup (reference per team / fast per team, whole sweep): {speedup:.1f}x "
          f"(target >= 50x: {'met' if speedup >= 50 else 'NOT met'})")
    print(f"speedup against the fast path on the subset alone: {ref_per_team / sub_per_team:.1f}x")
    if failures:
        print(f"MISMATCH: {len(failures)} value(s) differ beyond {TOLERANCE:g}:")
        for line in failures[:50]:
            print(f"  {line}")
        return 1
    print(f"all {len(ENSEMBLE_KEYS) + len(METRICS)} metrics agree to {TOLERANCE:g} on every "
          f"checked team")
    return 0


if __name__ == "__main__":
    sys.exit(main())
