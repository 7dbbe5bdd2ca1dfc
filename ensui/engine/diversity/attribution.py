"""Attribution diversity: per-image similarity of the members' attribution maps.

`maps` is (M, N, G): M members, the same N images in the same order for every member,
each map channel-reduced and pooled to a common grid of G cells (flattened). Any float
dtype is accepted; everything is computed in float64. Per image, every member pair gets

=========  =================================================================
cosine     ⟨a, b⟩ / (‖a‖ ‖b‖) (the default)
spearman   Spearman's ρ: the cosine of the centred average-tie ranks, i.e. the
           Pearson correlation of the ranks (as scipy.stats.spearmanr)
topk       |top_k(a) ∩ top_k(b)| / k with k = max(1, round(fraction · G)) (capped
           at G); a map's top k cells are its first k in a stable descending
           order, so tied values are taken lower cell index first
=========  =================================================================

Undefined values are NaN: cosine when either map is all zeros, spearman when either
map is constant (its centred ranks vanish); top-k is always defined. Pair matrices
average over images ignoring NaN images, and are NaN where no image is defined.
Attribution diversity = 1 − similarity, so **higher = more diverse**; the diagonal is
diversity 0 wherever it is defined.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

SIMILARITIES = ("cosine", "spearman", "topk")
CHUNK_ELEMENTS = 50_000_000  # bound on M·M·n·G per image chunk


def _cosine(x: np.ndarray) -> np.ndarray:
    """(M, n, G) float64 -> (M, M, n) cosines, NaN where a map has zero norm."""
    norm = np.sqrt(np.einsum("ing,ing->in", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = x / norm[..., None]  # zero norm -> NaN row, which propagates to its pairs
    return np.clip(np.einsum("ing,kng->ikn", unit, unit, optimize=True), -1.0, 1.0)


def _spearman(x: np.ndarray) -> np.ndarray:
    ranks = rankdata(x, axis=-1)  # average ties, as spearmanr
    return _cosine(ranks - (x.shape[-1] + 1) / 2)  # average ranks always sum to G(G+1)/2


def topk_count(fraction: float, cells: int) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"topk_fraction must be in (0, 1], got {fraction}")
    return min(cells, max(1, round(fraction * cells)))


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]  # ties: lower cell first
    member = np.zeros(x.shape, np.float64)
    np.put_along_axis(member, order, 1.0, axis=-1)
    return np.einsum("ing,kng->ikn", member, member, optimize=True) / k


def image_similarity(maps: np.ndarray, similarity: str = "cosine",
                     topk_fraction: float = 0.05) -> np.ndarray:
    """(M, M, N) similarity of every member pair on every image."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[-1] == 0:
        raise ValueError(f"maps must be (members, images, cells), got shape {maps.shape}")
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
    m, n, g = maps.shape
    k = topk_count(topk_fraction, g) if similarity == "topk" else 0
    out = np.empty((m, m, n))
    step = max(1, CHUNK_ELEMENTS // max(m * m * g, 1))
    for start in range(0, n, step):
        part = slice(start, min(start + step, n))
        x = maps[:, part].astype(np.float64)
        if similarity == "cosine":
            out[:, :, part] = _cosine(x)
        elif similarity == "spearman":
            out[:, :, part] = _spearman(x)
        else:
            out[:, :, part] = _topk(x, k)
    return out


def pairwise_similarity(maps: np.ndarray, similarity: str = "cosine",
                        topk_fraction: float = 0.05) -> np.ndarray:
    """(M, M) mean over images of the defined (non-NaN) per-image similarities."""
    per_image = image_similarity(maps, similarity, topk_fraction)
    defined = ~np.isnan(per_image)
    count = defined.sum(-1)
    total = np.where(defined, per_image, 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def attribution_diversity(maps: np.ndarray, similarity: str = "cosine",
                          topk_fraction: float = 0.05) -> np.ndarray:
    """(M, M) 1 − pairwise_similarity: higher = more diverse."""
    return 1.0 - pairwise_similarity(maps, similarity, topk_fraction)
