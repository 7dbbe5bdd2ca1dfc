"""Activation diversity (CKA): the HSIC estimators against their definitions written as
loops, invariances, the minibatch accumulation against a per-pair loop, and errors."""

from itertools import combinations, permutations

import numpy as np
import pytest

from ensui.engine.diversity.activation import (ESTIMATORS, activation_diversity, cka, hsic,
                                               layer_cka, minibatch_cka_matrix)


def gram(x):
    x = np.asarray(x, np.float64)
    return x @ x.T


def features(seed, n, widths, dtype=np.float64):
    """Members sharing a latent signal, so their CKAs are spread between 0 and 1."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    return [(latent @ rng.normal(size=(6, d)) * rng.uniform(0.2, 2)
             + rng.normal(size=(n, d))).astype(dtype) for d in widths]


def u_statistic_hsic(K, L):
    """Song et al. 2012, HSIC1 as the U-statistic over ordered 4-tuples of distinct
    indices of h = k_ij l_ij + k_ij l_qr − 2 k_ij l_iq (summing over every ordering makes
    the symmetrisation over the 4! permutations implicit)."""
    n = len(K)
    total = 0.0
    for i, j, q, r in permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def centred_hsic(K, L):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


# ---------------------------------------------------------------------------------------
# HSIC against the definitions

@pytest.mark.parametrize("seed", range(3))
def test_unbiased_hsic_is_the_u_statistic(seed):
    rng = np.random.default_rng(seed)
    n = 7
    K, L = gram(rng.normal(size=(n, 3))), gram(rng.normal(size=(n, 5)) + 1.0)
    assert hsic(K, L) == pytest.approx(u_statistic_hsic(K, L), rel=1e-10, abs=1e-12)
    assert hsic(K, K) == pytest.approx(u_statistic_hsic(K, K), rel=1e-10, abs=1e-12)


def test_unbiased_hsic_ignores_the_gram_diagonal_and_keeps_inputs():
    rng = np.random.default_rng(3)
    K, L = gram(rng.normal(size=(9, 4))), gram(rng.normal(size=(9, 4)))
    before = K.copy()
    shifted = K + np.diag(rng.uniform(0, 50, 9))
    assert hsic(shifted, L) == pytest.approx(hsic(K, L), rel=1e-12)
    assert np.array_equal(K, before)


@pytest.mark.parametrize("seed", range(3))
def test_biased_hsic_is_tr_khlh(seed):
    rng = np.random.default_rng(seed)
    K, L = gram(rng.normal(size=(11, 3))), gram(rng.normal(size=(11, 8)) - 0.5)
    assert hsic(K, L, "biased") == pytest.approx(centred_hsic(K, L), rel=1e-10)


# ---------------------------------------------------------------------------------------
# CKA invariances and why the unbiased estimator

def test_cka_is_one_for_the_same_representation_up_to_rotation_and_scale():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 40)) + rng.normal(size=(1, 40))
    q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    for y in (x, x @ q, 7.5 * x):
        assert cka(x, y) == pytest.approx(1.0, abs=1e-12)
        assert minibatch_cka_matrix([x, y], 64)[0, 1] == pytest.approx(1.0, abs=1e-12)
        assert cka(x, y, "biased") == pytest.approx(1.0, abs=1e-12)


def test_independent_wide_features_unbiased_near_zero_biased_near_one():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(512, 2048)), rng.normal(size=(512, 2048)).astype(np.float32)
    assert abs(minibatch_cka_matrix([x, y], 64)[0, 1]) < 0.05
    assert abs(cka(x, y)) < 0.05
    # the biased estimator would call these unrelated members near-identical
    assert minibatch_cka_matrix([x, y], 64, "biased")[0, 1] > 0.9


# ---------------------------------------------------------------------------------------
# the minibatch matrix

@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("batch_size", [60, 1000])  # exactly N, and larger than N
def test_one_batch_equals_full_gram_cka(estimator, batch_size):
    members = features(6, 60, (3, 17, 64, 5))
    matrix = minibatch_cka_matrix(members, batch_size, estimator)
    for i, k in combinations(range(len(members)), 2):
        assert matrix[i, k] == pytest.approx(cka(members[i], members[k], estimator),
                                             rel=1e-10, abs=1e-12)


def loop_reference(members, b, estimator):
    """Per pair, per whole batch, `hsic` on that batch's Grams; means, then the ratio."""
    n_batches = len(members[0]) // b
    out = np.ones((len(members), len(members)))
    for i, k in combinations(range(len(members)), 2):
        kl = kk = ll = 0.0
        for s in range(n_batches):
            rows = slice(s * b, (s + 1) * b)
            K, L = gram(members[i][rows]), gram(members[k][rows])
            kl += hsic(K, L, estimator) / n_batches
            kk += hsic(K, K, estimator) / n_batches
            ll += hsic(L, L, estimator) / n_batches
        out[i, k] = out[k, i] = kl / np.sqrt(kk * ll)
    return out


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_minibatches_equal_the_per_pair_loop(estimator):
    members = features(7, 103, (8, 30, 2))  # 5 batches of 20, 3 rows dropped
    assert np.allclose(minibatch_cka_matrix(members, 20, estimator),
                       loop_reference(members, 20, estimator), rtol=1e-10, atol=1e-12)


def test_last_partial_batch_is_dropped():
    members = features(8, 100, (8, 30))
    garbage = [np.concatenate([m, np.random.default_rng(9).normal(0, 1e4, (17, m.shape[1]))])
               for m in members]
    assert np.allclose(minibatch_cka_matrix(garbage, 25), minibatch_cka_matrix(members, 25),
                       rtol=1e-14, atol=0)
    assert not np.allclose(minibatch_cka_matrix(garbage, 39), minibatch_cka_matrix(members, 39))


def test_matrix_symmetric_unit_diagonal_mixed_widths_and_float16():
    members = features(10, 150, (4, 33, 96, 1), np.float16)
    matrix = minibatch_cka_matrix(members, 32)
    assert matrix.shape == (4, 4) and matrix.dtype == np.float64
    assert np.allclose(matrix, matrix.T, rtol=0, atol=1e-15)
    assert np.array_equal(np.diag(matrix), np.ones(4))
    assert np.isfinite(matrix).all() and (np.abs(matrix) <= 1 + 1e-12).all()
    upcast = minibatch_cka_matrix([m.astype(np.float64) for m in members], 32)
    assert np.allclose(matrix, upcast, rtol=1e-12, atol=1e-14)
    diversity = activation_diversity(members, 32)
    assert np.allclose(diversity, 1 - matrix) and np.array_equal(np.diag(diversity), np.zeros(4))


def test_spatial_features_are_flattened_per_sample():
    rng = np.random.default_rng(11)
    maps, pooled = rng.normal(size=(40, 3, 2, 2)), rng.normal(size=(40, 5))
    assert np.allclose(minibatch_cka_matrix([maps, pooled], 16),
                       minibatch_cka_matrix([maps.reshape(40, 12), pooled], 16))


def test_constant_member_is_nan_the_rest_defined():
    members = features(12, 64, (5, 9))
    constant = np.full((64, 3), 2.0)
    matrix = minibatch_cka_matrix([members[0], constant, members[1]], 32)
    assert np.isnan(matrix[1]).all() and np.isnan(matrix[:, 1]).all()
    assert np.isfinite(matrix[np.ix_([0, 2], [0, 2])]).all()


def test_layer_cka_is_the_cross_block():
    a, b = features(13, 90, (4, 12, 7)), features(14, 90, (20, 3))
    got = layer_cka(a, b, 32)
    assert got.shape == (3, 2)
    for i, x in enumerate(a):
        for k, y in enumerate(b):
            assert got[i, k] == pytest.approx(minibatch_cka_matrix([x, y], 32)[0, 1],
                                              rel=1e-12)


# ---------------------------------------------------------------------------------------
# errors

def test_errors_name_the_problem():
    ok = np.ones((3, 2)) + np.arange(6).reshape(3, 2)
    with pytest.raises(ValueError, match="at least 4 samples"):
        minibatch_cka_matrix([ok, ok])
    with pytest.raises(ValueError, match="at least 4 samples"):
        cka(ok, ok)
    x, y = np.ones((10, 2)), np.ones((9, 2))
    with pytest.raises(ValueError, match="member 1 has 9 samples, member 0 has 10"):
        minibatch_cka_matrix([x, y])
    with pytest.raises(ValueError, match="member 1 has 9"):
        cka(x, y)
    with pytest.raises(ValueError, match="batch_size must be at least 4"):
        minibatch_cka_matrix([x, x], batch_size=3)
    with pytest.raises(ValueError, match="unknown estimator"):
        minibatch_cka_matrix([x, x], estimator="debiased")
    with pytest.raises(ValueError, match="no feature matrices"):
        minibatch_cka_matrix([])
    with pytest.raises(ValueError, match="differ in shape"):
        hsic(np.eye(5), np.eye(6))
