"""Activation (representation) diversity: linear CKA between members' features.

Features are (N, D_i) arrays, one per member, rows the same N inputs in the same order;
widths may differ (anything wider than 2-D is flattened per sample). With K = XXᵀ and
L = YYᵀ, CKA = HSIC(K, L) / sqrt(HSIC(K, K)·HSIC(L, L)), and activation diversity is
1 − CKA (methods.md, activation diversity).

Default estimator: Song et al.'s (2012) **unbiased** HSIC1, a U-statistic on Grams with
zeroed diagonals. The biased HSIC0 = tr(KHLH)/(n−1)² is dominated by the diagonal when
features are wide relative to the batch: two independent random (512, 2048) matrices get
CKA ≈ 0.97 in batches of 64 (0.89 in batches of 256), i.e. unrelated members would look
nearly identical; HSIC1 gives ≈ 0.

**Minibatch accumulation** (Nguyen, Raghu & Kornblith 2021): HSIC(K, L), HSIC(K, K) and
HSIC(L, L) are averaged over consecutive batches of a fixed size b ≥ 4, then combined.
Memory is O(M b²) instead of O(N²); all arithmetic is float64. The last partial batch
(N mod b rows) is **dropped**, so every batch has the same n and the same estimator; if
N < b, one batch of all N rows is used. A member whose HSIC(K, K) is ≤ 0 (constant
features, say) has no defined CKA: its row and column are NaN, its diagonal too.
`cka` and `hsic` are the full-Gram references (O(N²) memory).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ESTIMATORS = ("unbiased", "biased")
MIN_SAMPLES = 4  # HSIC1 divides by n(n − 3) and (n − 2)


def _prepare(grams: np.ndarray, estimator: str) -> np.ndarray:
    """In place, on (..., n, n): the zeroed diagonal (unbiased) or HKH (biased; with H
    idempotent, tr(HKH·HLH) = tr(KHLH), so both sides can be centred)."""
    if estimator == "unbiased":
        idx = np.arange(grams.shape[-1])
        grams[..., idx, idx] = 0.0
    else:
        grams -= grams.mean(-1, keepdims=True)
        grams -= grams.mean(-2, keepdims=True)
    return grams


def _cross_hsic(a: np.ndarray, b: np.ndarray, estimator: str) -> np.ndarray:
    """HSIC between every prepared Gram of `a` (p, n, n) and of `b` (q, n, n): (p, q)."""
    n = a.shape[-1]
    # einsum('iab,kab->ik') as one product: tr(K_i K_k) for symmetric Grams
    traces = a.reshape(len(a), -1) @ b.reshape(len(b), -1).T
    if estimator == "biased":
        return traces / (n - 1) ** 2
    rows_a, rows_b = a.sum(-1), b.sum(-1)  # r = K̃1, so 1ᵀK̃_iK̃_k1 = r_i·r_k
    totals = np.outer(rows_a.sum(-1), rows_b.sum(-1))  # (1ᵀK̃_i1)(1ᵀK̃_k1)
    return (traces + totals / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (rows_a @ rows_b.T)) / (n * (n - 3))


def _normalise(h: np.ndarray) -> np.ndarray:
    """CKA from an (M, M) HSIC matrix; NaN where a member's self-HSIC is ≤ 0."""
    own = np.diag(h).copy()
    defined = own > 0
    scale = np.sqrt(np.where(defined, own, np.nan))
    out = h / np.outer(scale, scale)
    np.fill_diagonal(out, np.where(defined, 1.0, np.nan))
    return out


def _check(estimator: str, n: int) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    if n < MIN_SAMPLES:
        raise ValueError(f"CKA needs at least {MIN_SAMPLES} samples per batch, got {n}")


def hsic(K: np.ndarray, L: np.ndarray, estimator: str = "unbiased") -> float:
    """HSIC of two full (n, n) Gram matrices on the same samples (inputs are not changed)."""
    _check(estimator, len(K))
    if np.shape(K) != np.shape(L):
        raise ValueError(f"Gram matrices differ in shape: {np.shape(K)} vs {np.shape(L)}")
    k, l = (_prepare(np.array(g, np.float64)[None], estimator) for g in (K, L))  # copies
    return float(_cross_hsic(k, l, estimator)[0, 0])


def _members(features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """(N, D_i) views of every member; one N for all, or a ValueError naming the member."""
    if len(features) == 0:
        raise ValueError("no feature matrices given")
    members = [np.asarray(x).reshape(len(x), -1) for x in features]
    n = len(members[0])
    for i, x in enumerate(members):
        if len(x) != n:
            raise ValueError(f"member {i} has {len(x)} samples, member 0 has {n}; all "
                             f"members must see the same inputs in the same order")
    return members


def cka(X: np.ndarray, Y: np.ndarray, estimator: str = "unbiased") -> float:
    """Full-Gram CKA of two feature matrices, the reference (two float64 N × N Grams)."""
    x, y = (m.astype(np.float64) for m in _members([X, Y]))
    _check(estimator, len(x))
    k = _prepare((x @ x.T)[None], estimator)
    l = _prepare((y @ y.T)[None], estimator)
    kl = _cross_hsic(k, l, estimator)[0, 0]
    kk, ll = _cross_hsic(k, k, estimator)[0, 0], _cross_hsic(l, l, estimator)[0, 0]
    return float(_normalise(np.array([[kk, kl], [kl, ll]]))[0, 1])


def minibatch_cka_matrix(features: Sequence[np.ndarray], batch_size: int = 256,
                         estimator: str = "unbiased") -> np.ndarray:
    """(M, M) CKA between every pair of members, HSICs averaged over whole batches."""
    members = _members(features)
    n = len(members[0])
    if batch_size < MIN_SAMPLES:
        raise ValueError(f"batch_size must be at least {MIN_SAMPLES}, got {batch_size}")
    b = min(batch_size, n)
    _check(estimator, b)
    starts = range(0, n - b + 1, b)  # whole batches only: the N mod b tail is dropped
    grams = np.empty((len(members), b, b))  # the only O(M b²) buffer, reused per batch
    total = np.zeros((len(members), len(members)))
    for start in starts:
        for i, x in enumerate(members):
            part = x[start:start + b].astype(np.float64)  # float64 before the product
            np.matmul(part, part.T, out=grams[i])
        _prepare(grams, estimator)
        total += _cross_hsic(grams, grams, estimator)
    return _normalise(total / len(starts))


def activation_diversity(features: Sequence[np.ndarray], batch_size: int = 256,
                         estimator: str = "unbiased") -> np.ndarray:
    """(M, M) activation diversity 1 − CKA; 0 on the diagonal (NaN where undefined)."""
    return 1.0 - minibatch_cka_matrix(features, batch_size, estimator)


def layer_cka(layers_a: Sequence[np.ndarray], layers_b: Sequence[np.ndarray],
              batch_size: int = 256, estimator: str = "unbiased") -> np.ndarray:
    """(La, Lb) CKA between every layer of member A and every layer of member B."""
    la = len(layers_a)
    full = minibatch_cka_matrix([*layers_a, *layers_b], batch_size, estimator)
    return full[:la, la:]
