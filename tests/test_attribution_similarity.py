"""Attribution similarity: the vectorized path against per-pair scipy/set references,
hand-computed cases, the NaN rule and the chunked path."""

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cosine as cosine_distance
from scipy.stats import spearmanr

from ensui.engine.diversity import attribution
from ensui.engine.diversity.attribution import (
    SIMILARITIES,
    attribution_diversity,
    image_similarity,
    pairwise_similarity,
    topk_count,
)

M, N, G = 4, 6, 49


def random_maps(seed=0, m=M, n=N, g=G, ties=False):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(m, n, g))
    if ties:  # ReLU'd and coarsely quantized, like pooled Grad-CAM: many zeros and repeats
        maps = np.round(np.maximum(maps, 0) * 2) / 2
    return maps


def slow_cosine(a, b):
    return 1 - cosine_distance(a, b)


def slow_spearman(a, b):
    return spearmanr(a, b).statistic


def slow_topk(a, b, k):
    def top(x):
        return set(sorted(range(len(x)), key=lambda c: (-x[c], c))[:k])
    return len(top(a) & top(b)) / k


def slow_image_similarity(maps, pair):
    m, n, _ = maps.shape
    out = np.empty((m, m, n))
    for i in range(m):
        for k in range(m):
            for j in range(n):
                out[i, k, j] = pair(maps[i, j], maps[k, j])
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_cosine_matches_scipy(ties):
    maps = random_maps(1, ties=ties)
    maps[:, :, 0] += 0.1  # no all-zero map here; zeros have their own test
    assert np.allclose(image_similarity(maps), slow_image_similarity(maps, slow_cosine),
                       atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy(ties):
    maps = random_maps(2, ties=ties)
    if ties:
        assert any(len(np.unique(row)) < G / 2 for row in maps.reshape(-1, G))
    assert np.allclose(image_similarity(maps, "spearman"),
                       slow_image_similarity(maps, slow_spearman), atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_topk_matches_sets(ties, fraction):
    maps = random_maps(3, ties=ties)
    k = topk_count(fraction, G)
    expected = slow_image_similarity(maps, lambda a, b: slow_topk(a, b, k))
    assert np.array_equal(image_similarity(maps, "topk", fraction), expected)


def test_topk_count():
    assert topk_count(0.05, 49) == 2 and topk_count(0.05, 196) == 10
    assert topk_count(0.05, 4) == 1 and topk_count(1.0, 4) == 4
    with pytest.raises(ValueError):
        topk_count(0.0, 49)


def test_topk_ties_take_the_lower_cell():
    # both top-2 sets: a = {0, 1} (tie 0/1/2 -> lower cells), b = {2, 3}
    maps = np.array([[[5.0, 5, 5, 1]], [[0.0, 0, 5, 5]]])
    assert image_similarity(maps, "topk", 0.5)[0, 1, 0] == 0.0


def test_hand_cases():
    a, b = [1.0, 2, 0, 0], [0.0, 0, 3, 1]
    identical = np.array([[a], [a]])
    for name in SIMILARITIES:
        assert np.allclose(pairwise_similarity(identical, name, 0.5), 1.0)
        assert np.allclose(attribution_diversity(identical, name, 0.5), 0.0, atol=1e-15)
    disjoint = np.array([[a], [b]])
    assert pairwise_similarity(disjoint)[0, 1] == pytest.approx(0.0, abs=1e-15)  # orthogonal
    assert pairwise_similarity(disjoint, "topk", 0.5)[0, 1] == 0.0  # {0, 1} vs {2, 3}
    reverse = np.array([[[1.0, 2, 3, 4]], [[8.0, 6, 4, 2]]])
    assert pairwise_similarity(reverse, "spearman")[0, 1] == pytest.approx(-1.0)
    # cosine by hand: (3·1 + 4·0) / (5 · 1)
    assert pairwise_similarity(np.array([[[3.0, 4]], [[1.0, 0]]]))[0, 1] == pytest.approx(0.6)


def test_nan_images_are_ignored():
    maps = random_maps(4, n=3)
    maps[1, 0] = 0.0  # member 1's first map is all zeros: undefined for cosine and spearman
    maps[2, 1] = 7.0  # member 2's second map is constant: undefined for spearman only
    cos = image_similarity(maps)
    assert np.isnan(cos[1, :, 0]).all() and np.isnan(cos[:, 1, 0]).all()
    assert np.isfinite(np.delete(cos, 1, 0)[:, [0, 2, 3]][..., 0]).all()
    assert np.isfinite(cos[..., 1:]).all()
    rho = image_similarity(maps, "spearman")
    assert np.isnan(rho[2, :, 1]).all() and np.isnan(rho[:, 2, 1]).all()
    assert np.isfinite(image_similarity(maps, "topk")).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pair = pairwise_similarity(maps)
    assert pair[0, 1] == pytest.approx(cos[0, 1, 1:].mean())
    assert pair[0, 2] == pytest.approx(cos[0, 2].mean())
    assert pairwise_similarity(maps, "spearman")[0, 2] == pytest.approx(rho[0, 2, [0, 2]].mean())


def test_all_zero_member_gives_nan():
    maps = random_maps(5)
    maps[3] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("cosine", "spearman"):
            sim = pairwise_similarity(maps, name)
            assert np.isnan(sim[3]).all() and np.isnan(sim[:, 3]).all()
            assert np.isfinite(sim[:3, :3]).all()
            assert np.isnan(attribution_diversity(maps, name)[3]).all()


@pytest.mark.parametrize("name", SIMILARITIES)
def test_symmetric_with_unit_diagonal(name):
    sim = pairwise_similarity(random_maps(6, ties=True) + 0.01, name)
    assert np.allclose(sim, sim.T, atol=1e-15)
    assert np.allclose(np.diag(sim), 1.0, atol=1e-12)
    assert (np.abs(sim) <= 1).all()


@pytest.mark.parametrize("name", SIMILARITIES)
def test_chunked_equals_unchunked(name, monkeypatch):
    maps = random_maps(7, n=11, ties=True).astype(np.float16)
    maps[0, 4] = 0.0
    whole = image_similarity(maps, name)
    monkeypatch.setattr(attribution, "CHUNK_ELEMENTS", M * M * G * 3)  # 3 images a chunk
    assert np.array_equal(image_similarity(maps, name), whole, equal_nan=True)


def test_dtypes_compute_in_float64():
    maps = random_maps(8).astype(np.float32)
    assert np.allclose(image_similarity(maps.astype(np.float16)),
                       image_similarity(maps.astype(np.float16).astype(np.float64)))
    assert image_similarity(maps).dtype == np.float64


@pytest.mark.parametrize("name", SIMILARITIES)
def test_diversity_is_one_minus_similarity(name):
    maps = random_maps(9)
    assert np.array_equal(attribution_diversity(maps, name, 0.1),
                          1 - pairwise_similarity(maps, name, 0.1))


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        image_similarity(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        image_similarity(random_maps(), "pearson")
