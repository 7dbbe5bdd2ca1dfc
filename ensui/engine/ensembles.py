"""Teams, consensus and team accuracy / improvement from cached member outputs.

Everything here works on in-memory arrays of one validation set (`MemberOutputs`), so it
does not care how the outputs were stored. Per-member quantities (predictions, accuracy,
NLL, true-class probabilities) are computed once; per team only the consensus is.

Definitions (methods.md §2):

* Consensus: ``average`` = argmax of the mean probability (the paper's Figure B);
  ``vote`` = plurality of member labels, ties going to the tied class with the highest mean
  probability (then the lowest class index); ``logit_average`` = argmax of the mean
  logits; ``max_confidence`` = the label of the member whose top probability is highest
  on that sample (ties: the earlier member of the team).
* Ensemble NLL = −mean_j log q_j(y_j), q the consensus probability vector: the mean
  member probability for ``average``, ``vote`` and ``max_confidence`` (the last two have
  no probability vector of their own), softmax of the mean logits for ``logit_average``.
  Probabilities are floored at `PROB_FLOOR` before any log, member NLLs included: float16
  stores 0 for a very confident mistake, which would make the loss infinite. The floor is
  applied to member probabilities before averaging, so `nll_gain` ≥ 0 (Jensen) stays
  exact for ``average``.
* Improvement: ``vs_mean`` = Acc(S) − mean_i Acc_i; ``vs_best`` = Acc(S) − max_i Acc_i;
  ``eir`` = (ē − E(S)) / ē with ē the mean member error and E(S) the ensemble error
  (Theisen et al. 2023), None when ē = 0 (no member error to reduce);
  ``nll_gain`` = mean member NLL − ensemble NLL.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

CONSENSUS = ("average", "vote", "logit_average", "max_confidence")
PROB_FLOOR = 1e-12


def teams(members: Sequence[str], sizes: Sequence[int] | str = (2, 3),
          explicit: Sequence[Sequence[str]] | None = None) -> list[tuple[int, ...]]:
    """Member-index tuples (sorted) of every team: all subsets with a size in `sizes`
    ("all" = 2..M), ordered by size then lexicographically; or exactly the `explicit`
    teams (given by member name), which replace the size enumeration."""
    _check_members(members)
    if explicit is not None:
        return _explicit_teams(members, explicit)
    everyone = range(len(members))
    return [t for size in _sizes(sizes, len(members)) for t in combinations(everyone, size)]


def _check_members(members: Sequence[str]) -> None:
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
    repeated = sorted({m for m in members if list(members).count(m) > 1})
    if repeated:
        raise ValueError(f"duplicate member names: {', '.join(repeated)}")


def _sizes(sizes: Sequence[int] | str, count: int) -> list[int]:
    if isinstance(sizes, str):
        if sizes != "all":
            raise ValueError(f"team sizes must be a list of integers or 'all', got {sizes!r}")
        return list(range(2, count + 1))
    sizes = list(sizes)
    if not sizes:
        raise ValueError("no team sizes given")
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, (int, np.integer))
           or not 2 <= s <= count]
    if bad:
        raise ValueError(f"team sizes must be integers from 2 to {count} (the number of "
                         f"members); got {bad}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"duplicate team sizes: {sizes}")
    return sorted(sizes)


def _explicit_teams(members: Sequence[str],
                    explicit: Sequence[Sequence[str]]) -> list[tuple[int, ...]]:
    index = {name: i for i, name in enumerate(members)}
    result = []
    for team in explicit:
        unknown = [m for m in team if m not in index]
        if unknown:
            raise ValueError(f"team {list(team)}: unknown member(s) {unknown}; "
                             f"members are {list(members)}")
        if len(set(team)) != len(team):
            raise ValueError(f"team {list(team)} names a member twice")
        if len(team) < 2:
            raise ValueError(f"team {list(team)} has fewer than 2 members")
        indices = tuple(sorted(index[m] for m in team))
        if indices in result:
            raise ValueError(f"team {list(team)} is listed twice")
        result.append(indices)
    if not result:
        raise ValueError("the explicit team list is empty")
    return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(-1, keepdims=True)
    return z


@dataclass(frozen=True)
class MemberOutputs:
    """The outputs of M members on ONE validation set, in the same sample order."""

    names: tuple[str, ...]
    probs: np.ndarray                 # float32 (M, N, C)
    labels: np.ndarray                # int64 (N,)
    logits: np.ndarray | None = None  # float32 (M, N, C), when every member stored logits

    def __post_init__(self):
        m, n, c = self.probs.shape
        if len(self.names) != m:
            raise ValueError(f"{len(self.names)} names for {m} members' outputs")
        if self.labels.shape != (n,):
            raise ValueError(f"labels have shape {self.labels.shape}, expected ({n},)")
        if n and (self.labels.min() < 0 or self.labels.max() >= c):
            raise ValueError(f"labels must lie in 0..{c - 1}")
        if self.logits is not None and self.logits.shape != self.probs.shape:
            raise ValueError(f"logits have shape {self.logits.shape}, probs {self.probs.shape}")

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, object]) -> MemberOutputs:
        """From `{name: evaluate.Outputs}` (anything with values, labels, ids, kind).
        Raises ValueError unless every member has the same sample ids in the same order."""
        names = tuple(outputs)
        _check_members(names)
        first = outputs[names[0]]
        for name in names[1:]:
            _check_same_samples(names[0], first, name, outputs[name])
        all_logits = all(outputs[n].kind == "logits" for n in names)
        probs = np.stack([_member_probs(outputs[n]) for n in names])
        logits = (np.stack([np.asarray(outputs[n].values, np.float32) for n in names])
                  if all_logits else None)
        return cls(names, probs, np.asarray(first.labels, np.int64), logits)

    @property
    def num_classes(self) -> int:
        return self.probs.shape[2]

    @cached_property
    def predictions(self) -> np.ndarray:
        """(M, N) int64 argmax of each member's probabilities."""
        return self.probs.argmax(-1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @cached_property
    def accuracies(self) -> np.ndarray:
        return self.correct.mean(1, dtype=np.float64)

    @cached_property
    def true_probs(self) -> np.ndarray:
        """(M, N) float64 probability of the true class, floored at PROB_FLOOR."""
        picked = np.take_along_axis(self.probs, self.labels[None, :, None], -1)[..., 0]
        return np.maximum(picked.astype(np.float64), PROB_FLOOR)

    @cached_property
    def nlls(self) -> np.ndarray:
        return -np.log(self.true_probs).mean(1)

    @cached_property
    def confidences(self) -> np.ndarray:
        return self.probs.max(-1)


def _check_same_samples(first_name: str, first, name: str, other) -> None:
    ids_a, ids_b = np.asarray(first.ids), np.asarray(other.ids)
    if ids_a.shape != ids_b.shape:
        raise ValueError(f"{name} has {ids_b.size} samples, {first_name} has {ids_a.size}")
    mismatch = np.flatnonzero(ids_a != ids_b)
    if mismatch.size:
        j = mismatch[0]
        raise ValueError(f"{name} and {first_name} differ in sample order: position {j} is "
                         f"{ids_b[j]!r} vs {ids_a[j]!r}")
    if not np.array_equal(first.labels, other.labels):
        raise ValueError(f"{name} and {first_name} have different labels for the same samples")
    if np.shape(first.values) != np.shape(other.values):
        raise ValueError(f"{name} outputs have shape {np.shape(other.values)}, "
                         f"{first_name} {np.shape(first.values)}")


def _member_probs(outputs) -> np.ndarray:
    values = np.asarray(outputs.values)
    if outputs.kind == "logits":
        return _softmax(values).astype(np.float32)
    if outputs.kind == "probs":
        return values.astype(np.float32)
    raise ValueError(f"unknown output kind {outputs.kind!r}")


class _RunningSums:
    """Sums of member arrays for teams visited in lexicographic order. A stack of prefix
    sums (P_S = P_{S∖x} + p_x) makes consecutive teams cost one addition each, while
    memory stays at most one (N, C) array per team member."""

    def __init__(self, arrays: np.ndarray):
        self.arrays = arrays
        self.stack: list[tuple[int, np.ndarray]] = []

    def total(self, team: tuple[int, ...]) -> np.ndarray:
        keep = 0
        while keep < min(len(self.stack), len(team)) and self.stack[keep][0] == team[keep]:
            keep += 1
        del self.stack[keep:]
        for member in team[keep:]:
            array = self.arrays[member]
            running = self.stack[-1][1] + array if self.stack else array.astype(np.float64)
            self.stack.append((member, running))
        return self.stack[-1][1]


def score_teams(outputs: MemberOutputs, team_list: Sequence[tuple[int, ...]],
                consensus: Sequence[str] = ("average",)) -> list[dict]:
    """One row per team × consensus (team order, then consensus order): team (names),
    size, consensus, accuracy, nll, average_accuracy (mean member accuracy), vs_mean,
    vs_best, eir, nll_gain."""
    unknown = [c for c in consensus if c not in CONSENSUS]
    if unknown:
        raise ValueError(f"unknown consensus {unknown}; choose from {list(CONSENSUS)}")
    if "logit_average" in consensus and outputs.logits is None:
        raise ValueError("logit_average needs logits, but some members stored probabilities")
    prob_sums = _RunningSums(outputs.probs)
    logit_sums = _RunningSums(outputs.logits) if outputs.logits is not None else None
    rows: dict[tuple, dict] = {}
    for team in sorted(team_list):
        for name in consensus:
            sums = logit_sums if name == "logit_average" else prob_sums
            total = sums.total(team) if name in ("average", "vote", "logit_average") else None
            rows[team, name] = _row(outputs, team, name, total)
    return [rows[tuple(team), name] for team in team_list for name in consensus]


def _row(outputs: MemberOutputs, team: tuple[int, ...], consensus: str,
         total: np.ndarray | None) -> dict:
    predicted = _consensus_labels(outputs, team, consensus, total)
    accuracy = float(np.mean(predicted == outputs.labels))
    nll = _logit_average_nll(total, outputs.labels, len(team)) if consensus == "logit_average" \
        else float(-np.log(outputs.true_probs[list(team)].mean(0)).mean())
    member_acc = outputs.accuracies[list(team)]
    mean_error = 1.0 - member_acc.mean()
    return {
        "team": tuple(outputs.names[i] for i in team), "size": len(team), "consensus": consensus,
        "accuracy": accuracy, "nll": nll, "average_accuracy": float(member_acc.mean()),
        "vs_mean": accuracy - float(member_acc.mean()),
        "vs_best": accuracy - float(member_acc.max()),
        "eir": None if mean_error == 0 else float((mean_error - (1.0 - accuracy)) / mean_error),
        "nll_gain": float(outputs.nlls[list(team)].mean()) - nll,
    }


def _consensus_labels(outputs: MemberOutputs, team: tuple[int, ...], consensus: str,
                      total: np.ndarray | None) -> np.ndarray:
    if consensus in ("average", "logit_average"):
        return total.argmax(1)
    if consensus == "vote":
        return _vote(outputs.predictions[list(team)], total)
    members = np.asarray(team)[outputs.confidences[list(team)].argmax(0)]
    return outputs.predictions[members, np.arange(outputs.labels.size)]


def _vote(labels: np.ndarray, prob_sum: np.ndarray) -> np.ndarray:
    """Plurality of `labels` (L, N); among tied classes the highest summed probability."""
    n, c = prob_sum.shape
    counts = np.zeros((n, c), np.int32)
    for member_labels in labels:
        counts[np.arange(n), member_labels] += 1
    tied = counts == counts.max(1, keepdims=True)
    return np.where(tied, prob_sum, -np.inf).argmax(1)


def _logit_average_nll(logit_sum: np.ndarray, labels: np.ndarray, size: int) -> float:
    mean = logit_sum / size
    top = mean.max(1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(mean - top).sum(1))
    log_true = mean[np.arange(labels.size), labels] - log_norm
    return float(-np.maximum(log_true, np.log(PROB_FLOOR)).mean())
