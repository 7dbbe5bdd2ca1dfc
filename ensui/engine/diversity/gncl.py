"""Generalized-NCL diversity of a team, from cached member outputs (methods.md §10).

Buschjäger, Pfahler & Morik (2020) expand the ensemble's loss around the mean logits f̄:
CE(f̄) ≈ mean_i CE(f_i) − (1/2M) Σ_i d_iᵀ D d_i with d_i = f_i − f̄ and D = diag(q) − q qᵀ,
q = softmax(f̄), the Hessian of CE in the logits at f̄ (independent of the label). The
subtracted term is how much the team gains over its average member through disagreement,
so it is the diversity reported here: mean over samples of (1/2M) Σ_i d_iᵀ D d_i, ≥ 0,
higher = more diverse, 0 when all members agree.

Log-probabilities stand in for logits when a member stored only probabilities: log p_i
equals f_i up to a per-sample constant, which shifts d_i along the all-ones vector
(D·1 = 0) and leaves softmax(f̄) unchanged, so the value is the same. Probabilities are
floored at `PROB_FLOOR` before the log, as elsewhere, since float16 stores 0 for tiny
ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ensui.engine.diversity.prediction import CHUNK_ELEMENTS
from ensui.engine.ensembles import PROB_FLOOR, MemberOutputs


def gncl_diversity(logits: np.ndarray, members: Sequence[int] | None = None) -> float:
    """Diversity of the team `members` (default: all) from logits (M, N, K); f̄ is the mean
    over that team only."""
    return _mean_diversity(logits, members, from_probs=False)


def gncl_diversity_from_probs(probs: np.ndarray, members: Sequence[int] | None = None) -> float:
    """`gncl_diversity` of members that stored probabilities (M, N, K)."""
    return _mean_diversity(probs, members, from_probs=True)


def gncl_team_diversity(outputs: MemberOutputs,
                        team_list: Sequence[tuple[int, ...]]) -> list[float]:
    """One value per team (member-index tuples, as `ensembles.teams` makes them), from the
    logits when every member stored them, else from the probabilities."""
    if outputs.logits is not None:
        return [gncl_diversity(outputs.logits, team) for team in team_list]
    return [gncl_diversity_from_probs(outputs.probs, team) for team in team_list]


def _team(count: int, members: Sequence[int] | None) -> list[int]:
    team = list(range(count)) if members is None else [int(i) for i in members]
    if not team:
        raise ValueError("members is empty")
    bad = [i for i in team if not 0 <= i < count]
    if bad:
        raise ValueError(f"members {bad} out of range 0..{count - 1}")
    if len(set(team)) != len(team):
        raise ValueError(f"members lists a member twice: {team}")
    return team


def _mean_diversity(values: np.ndarray, members: Sequence[int] | None,
                    from_probs: bool) -> float:
    """Float64 sums over sample chunks, so memory stays bounded whatever N."""
    team = _team(values.shape[0], members)
    n, k = values.shape[1:]
    if n == 0:
        raise ValueError("gncl diversity needs at least one sample")
    total = 0.0
    for part in _chunks(n, len(team) * k):
        z = values[team, part].astype(np.float64)
        if from_probs:
            z = np.log(np.maximum(z, PROB_FLOOR))
        total += float(_quadratic_forms(z).sum())
    return total / (2 * len(team) * n)


def _chunks(n: int, per_sample: int) -> Iterator[slice]:
    step = max(1, CHUNK_ELEMENTS // max(per_sample, 1))
    return (slice(start, min(start + step, n)) for start in range(0, n, step))


def _quadratic_forms(z: np.ndarray) -> np.ndarray:
    """(L, n) d_iᵀ D d_i per member and sample, as the q-weighted variance of d_i over
    classes: no (K, K) matrix, no cancellation, never negative."""
    mean = z.mean(0)
    q = np.exp(mean - mean.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    d = z - mean
    d -= np.einsum("nk,mnk->mn", q, d)[..., None]
    return np.einsum("nk,mnk->mn", q, d * d)
