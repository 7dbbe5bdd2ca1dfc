"""Joint-training losses (NCL, balanced, GNCL) and the GNCL diversity metric, against
per-element references, autograd, and the λ = 0 ≡ independent-training promise."""

import math
from itertools import product

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ensui.engine.diversity import gncl as gncl_module
from ensui.engine.diversity.gncl import (
    gncl_diversity,
    gncl_diversity_from_probs,
    gncl_team_diversity,
)
from ensui.engine.ensembles import MemberOutputs
from ensui.engine.train.ncl_loss import (
    VARIANTS,
    JointLoss,
    gncl_quadratic_forms,
    joint_loss,
    ncl_penalties,
    softmax_ce_hessian,
)

SHAPES = [(1, 3, 4), (2, 3, 3), (3, 4, 5), (4, 2, 2)]


def random_batch(shape, seed=0, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen, dtype=dtype) * scale
    labels = torch.randint(0, shape[2], (shape[1],), generator=gen)
    return logits, labels


def slow_loss(f, y, variant, lam, consensus, detach_hessian=False):
    """(total, member CEs, ensemble CE, penalty) with loops and per-element torch ops."""
    m, b, k = f.shape

    def softmax(z):
        top = max(float(v.detach()) for v in z)
        e = [torch.exp(v - top) for v in z]
        s = sum(e)
        return [v / s for v in e]

    p = [[softmax(f[i, n]) for n in range(b)] for i in range(m)]
    ce = [sum(-torch.log(p[i][n][int(y[n])]) for n in range(b)) / b for i in range(m)]
    fbar = [[sum(f[i, n, c] for i in range(m)) / m for c in range(k)] for n in range(b)]
    if consensus == "average":
        ens = sum(-torch.log(sum(p[i][n][int(y[n])] for i in range(m)) / m) for n in range(b)) / b
    else:
        ens = sum(-torch.log(softmax(fbar[n])[int(y[n])]) for n in range(b)) / b
    pbar = [[sum(p[i][n][c] for i in range(m)) / m for c in range(k)] for n in range(b)]
    zero = torch.zeros((), dtype=f.dtype)
    if variant == "independent":
        return sum(ce), ce, ens, zero
    if variant == "balanced":
        return m * ((1 - lam) * sum(ce) / m + lam * ens), ce, ens, zero
    if variant == "ncl":
        pen = [sum(sum((p[i][n][c] - pbar[n][c]) * sum(p[j][n][c] - pbar[n][c]
                                                      for j in range(m) if j != i)
                       for c in range(k)) for n in range(b)) / b for i in range(m)]
        spread = sum(sum((p[i][n][c] - pbar[n][c]) ** 2 for c in range(k))
                     for i in range(m) for n in range(b)) / (m * b)
        return sum(ce[i] + lam * pen[i] for i in range(m)), ce, ens, spread
    quad = zero
    for n in range(b):
        q = softmax([v.detach() if detach_hessian else v for v in fbar[n]])
        hess = [[q[c] * (c == e) - q[c] * q[e] for e in range(k)] for c in range(k)]
        for i in range(m):
            d = [f[i, n, c] - fbar[n][c] for c in range(k)]
            quad = quad + sum(d[c] * hess[c][e] * d[e] for c in range(k) for e in range(k))
    div = quad / (2 * m * b)
    return m * (sum(ce) / m - lam * div), ce, ens, div


@pytest.mark.parametrize("variant,consensus,lam,shape",
                         list(product(VARIANTS, ("average", "logit_average"), (0.0, 0.35, 1.0),
                                      SHAPES)))
def test_values_match_slow_reference(variant, consensus, lam, shape):
    seed = 100 * VARIANTS.index(variant) + 10 * SHAPES.index(shape) + len(consensus)
    logits, labels = random_batch(shape, seed=seed)
    parts = joint_loss(logits, labels, variant, lam, consensus)
    total, ce, ens, penalty = slow_loss(logits, labels, variant, lam, consensus)
    assert parts.total.item() == pytest.approx(total.item(), rel=1e-12, abs=1e-12)
    assert parts.member_ce.tolist() == pytest.approx([v.item() for v in ce], rel=1e-12)
    assert parts.ensemble_ce.item() == pytest.approx(ens.item(), rel=1e-12)
    assert parts.penalty.item() == pytest.approx(penalty.item(), rel=1e-10, abs=1e-14)
    assert not (parts.member_ce.requires_grad or parts.ensemble_ce.requires_grad
                or parts.penalty.requires_grad)


@pytest.mark.parametrize("variant,consensus,detach",
                         [(v, c, False) for v in VARIANTS for c in ("average", "logit_average")]
                         + [("gncl", "average", True)])
def test_gradients_match_slow_reference(variant, consensus, detach):
    logits, labels = random_batch((3, 3, 4), seed=7)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    joint_loss(a, labels, variant, 0.6, consensus, detach_hessian=detach).total.backward()
    slow_loss(b, labels, variant, 0.6, consensus, detach_hessian=detach)[0].backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_ncl_penalty_identity():
    probs = torch.softmax(random_batch((4, 6, 5), seed=3)[0], -1)
    deviation = probs - probs.mean(0)
    for i in range(4):
        others = sum(deviation[j] for j in range(4) if j != i)
        torch.testing.assert_close(others, -deviation[i], rtol=0, atol=1e-15)
    expected = -(deviation ** 2).sum(-1).mean(-1)
    torch.testing.assert_close(ncl_penalties(probs), expected, rtol=1e-12, atol=1e-15)


def test_ncl_gradient_in_probability_space_is_twice_liu_yao():
    """Documented: autograd through p̄ gives −2(p_i − p̄) per unit λ (Liu & Yao: −(p_i − p̄))."""
    probs = torch.softmax(random_batch((3, 5, 4), seed=4)[0], -1).requires_grad_()
    (grad,) = torch.autograd.grad(ncl_penalties(probs).sum(), probs)
    expected = -2 * (probs - probs.mean(0)).detach() / probs.shape[1]
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)
    deviation = probs - probs.mean(0).detach()  # p̄ held fixed: the same gradient
    fixed = (deviation * (deviation.sum(0) - deviation)).sum(-1).mean(-1).sum()
    torch.testing.assert_close(torch.autograd.grad(fixed, probs)[0], expected,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("variant,consensus",
                         list(product(("balanced", "ncl", "gncl"), ("average", "logit_average"))))
def test_lambda_zero_gradient_is_each_members_own_ce(variant, consensus):
    logits, labels = random_batch((3, 8, 5), seed=11, dtype=torch.float32)
    logits.requires_grad_()
    (joint,) = torch.autograd.grad(joint_loss(logits, labels, variant, 0.0, consensus).total,
                                   logits)
    for i in range(3):
        member = logits.detach()[i].clone().requires_grad_()
        (own,) = torch.autograd.grad(F.cross_entropy(member, labels), member)
        assert torch.equal(joint[i], own)


def _train_alone(model, batches, make_optimizer):
    optimizer = make_optimizer(model.parameters())
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def _train_jointly(models, batches, make_optimizer, variant):
    optimizer = make_optimizer([p for model in models for p in model.parameters()])
    loss = JointLoss(variant, 0.0)
    for x, y in batches:
        optimizer.zero_grad()
        loss(torch.stack([model(x) for model in models]), y).total.backward()
        optimizer.step()


def _linear(seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(6, 4)


OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=1e-2),
    "adam": lambda params: torch.optim.Adam(params, lr=0.05, weight_decay=1e-2),
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("variant", ["balanced", "gncl", "ncl"])
def test_lambda_zero_training_reproduces_independent_training(optimizer, variant):
    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(16, 6, generator=gen), torch.randint(0, 4, (16,), generator=gen))
               for _ in range(6)]
    alone = [_linear(seed) for seed in (1, 2)]
    for model in alone:
        _train_alone(model, batches, OPTIMIZERS[optimizer])
    joint = [_linear(seed) for seed in (1, 2)]
    _train_jointly(joint, batches, OPTIMIZERS[optimizer], variant)
    for seed, a, b in zip((1, 2), alone, joint):
        assert not torch.equal(a.weight, _linear(seed).weight)  # training moved the weights
        for name, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[name]), name


def test_lambda_changes_training():
    """Guards the test above: λ > 0 must move the weights elsewhere."""
    logits, labels = random_batch((2, 8, 4), seed=9)
    logits.requires_grad_()
    (at_zero,) = torch.autograd.grad(joint_loss(logits, labels, "balanced", 0.0).total, logits)
    (at_half,) = torch.autograd.grad(joint_loss(logits, labels, "balanced", 0.5).total, logits)
    assert not torch.allclose(at_zero, at_half)


def test_hessian_matches_autograd():
    logits, labels = random_batch((3, 4, 5), seed=13)
    mean = logits.mean(0)
    hessians = softmax_ce_hessian(mean)
    for n in range(4):
        for label in (int(labels[n]), (int(labels[n]) + 1) % 5):  # D does not depend on y
            target = torch.tensor([label])
            auto = torch.autograd.functional.hessian(
                lambda z, t=target: F.cross_entropy(z[None], t), mean[n])
            torch.testing.assert_close(hessians[n], auto, rtol=1e-10, atol=1e-12)
    d = logits - mean
    explicit = torch.einsum("mbk,bkl,mbl->mb", d, hessians, d).mean(-1)
    torch.testing.assert_close(gncl_quadratic_forms(logits), explicit, rtol=1e-10, atol=1e-14)


def test_detached_hessian_gives_the_constant_d_gradient():
    """With D held fixed, ∂/∂f_i of −(λ/2) Σ_j d_jᵀ D d_j is −λ D d_i (Σ_j d_j = 0)."""
    logits, labels = random_batch((3, 5, 4), seed=17)
    lam, batch = 0.8, 5
    logits.requires_grad_()
    (grad,) = torch.autograd.grad(
        joint_loss(logits, labels, "gncl", lam, detach_hessian=True).total, logits)
    x = logits.detach()
    hessian, d = softmax_ce_hessian(x.mean(0)), x - x.mean(0)
    for i in range(3):
        member = x[i].clone().requires_grad_()
        (own,) = torch.autograd.grad(F.cross_entropy(member, labels), member)
        expected = own - lam * torch.einsum("bkl,bl->bk", hessian, d[i]) / batch
        torch.testing.assert_close(grad[i], expected, rtol=1e-10, atol=1e-13)
    (full,) = torch.autograd.grad(joint_loss(logits, labels, "gncl", lam).total, logits)
    assert not torch.allclose(full, grad)


def test_stable_for_extreme_logits():
    logits = torch.tensor([[[1e4, -1e4, 0.0]], [[-1e4, 1e4, 0.0]]])
    for variant in VARIANTS:
        for consensus in ("average", "logit_average"):
            parts = joint_loss(logits, torch.tensor([2]), variant, 0.5, consensus)
            assert torch.isfinite(parts.total) and torch.isfinite(parts.ensemble_ce)
    parts = joint_loss(logits, torch.tensor([2]), "balanced", 0.5, "average")
    assert parts.ensemble_ce.item() == pytest.approx(1e4, rel=1e-6)


def test_half_precision_logits_are_computed_in_float32():
    logits, labels = random_batch((2, 4, 3), seed=2, dtype=torch.float32)
    parts = joint_loss(logits.bfloat16(), labels, "gncl", 0.5)
    assert parts.total.dtype == torch.float32


@pytest.mark.parametrize("kwargs,field", [
    ({"variant": "ncl2"}, "variant"),
    ({"consensus": "vote"}, "consensus"),
    ({"consensus": "average_probs"}, "consensus"),
    ({"lam": -0.1}, "lam"),
    ({"variant": "ncl", "lam": -1}, "lam"),
    ({"variant": "gncl", "lam": -0.5}, "lam"),
    ({"variant": "balanced", "lam": 1.5}, "lam"),
    ({"lam": float("nan")}, "lam"),
    ({"lam": True}, "lam"),
    ({"lam": "0.5"}, "lam"),
])
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        JointLoss(**kwargs)


def test_lam_above_one_is_allowed_outside_balanced():
    assert JointLoss("gncl", 2.0).lam == 2.0
    assert JointLoss("ncl", 3).lam == 3


@pytest.mark.parametrize("shape,labels_shape,field", [
    ((4, 3), (4,), "logits"), ((2, 4, 3), (5,), "labels"), ((2, 4, 3), (4, 1), "labels")])
def test_invalid_shapes_name_the_tensor(shape, labels_shape, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        joint_loss(torch.zeros(shape), torch.zeros(labels_shape, dtype=torch.long))


# --- the analysis metric -------------------------------------------------------------

def slow_gncl(logits, members=None):
    members = range(logits.shape[0]) if members is None else members
    m, (n, k) = len(members), logits.shape[1:]
    total = 0.0
    for j in range(n):
        fbar = [sum(float(logits[i, j, c]) for i in members) / m for c in range(k)]
        top = max(fbar)
        z = sum(math.exp(v - top) for v in fbar)
        q = [math.exp(v - top) / z for v in fbar]
        for i in members:
            d = [float(logits[i, j, c]) - fbar[c] for c in range(k)]
            total += sum(d[a] * ((a == c) * q[a] - q[a] * q[c]) * d[c]
                         for a in range(k) for c in range(k))
    return total / (2 * m * n)


def random_logits(shape, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(0, scale, shape)


@pytest.mark.parametrize("members", [None, (0, 2), (1, 3, 4), [4, 0]])
def test_gncl_diversity_matches_slow_loop(members):
    logits = random_logits((5, 30, 6), seed=1).astype(np.float32)
    assert gncl_diversity(logits, members) == pytest.approx(slow_gncl(logits, members),
                                                            rel=1e-10)


def test_gncl_diversity_chunks_give_the_same_value(monkeypatch):
    logits = random_logits((3, 50, 4), seed=2)
    whole = gncl_diversity(logits)
    monkeypatch.setattr(gncl_module, "CHUNK_ELEMENTS", 3 * 4 * 7)  # 7 samples a chunk
    assert gncl_diversity(logits) == pytest.approx(whole, rel=1e-12)


def test_gncl_diversity_is_zero_when_members_agree():
    one = random_logits((1, 40, 5), seed=3)
    assert gncl_diversity(np.repeat(one, 4, 0)) == 0.0
    assert gncl_diversity(random_logits((4, 40, 5), seed=3)) > 0


def test_gncl_diversity_ignores_per_sample_shifts_and_accepts_probabilities():
    logits = random_logits((4, 60, 5), seed=4)
    shifts = random_logits((4, 60, 1), seed=5, scale=50.0)
    expected = gncl_diversity(logits)
    assert gncl_diversity(logits + shifts) == pytest.approx(expected, rel=1e-10)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert gncl_diversity_from_probs(probs) == pytest.approx(expected, rel=1e-10)
    assert gncl_diversity_from_probs(probs, (1, 2)) == pytest.approx(
        gncl_diversity(logits, (1, 2)), rel=1e-10)


def test_gncl_diversity_is_the_second_order_gain_of_averaging():
    """mean_i CE(f_i) − CE(f̄) ≈ (1/2M) Σ_i d_iᵀ D d_i for a small spread."""
    rng = np.random.default_rng(6)
    centre = rng.normal(0, 2, (1, 80, 6))
    logits = centre + 1e-3 * rng.normal(0, 1, (4, 80, 6))
    labels = rng.integers(0, 6, 80)
    t = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    members = float(np.mean([F.cross_entropy(f, y).item() for f in t]))
    gain = members - F.cross_entropy(t.mean(0), y).item()
    assert gain == pytest.approx(gncl_diversity(logits), rel=1e-2)


def test_gncl_diversity_equals_the_training_penalty():
    logits, labels = random_batch((3, 20, 4), seed=21)
    parts = joint_loss(logits, labels, "gncl", 0.5)
    assert parts.penalty.item() == pytest.approx(gncl_diversity(logits.numpy()), rel=1e-10)


def test_gncl_team_diversity_uses_logits_or_probabilities():
    logits = random_logits((3, 25, 4), seed=8).astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    labels = np.random.default_rng(8).integers(0, 4, 25)
    names = ("a", "b", "c")
    team_list = [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    from_logits = gncl_team_diversity(MemberOutputs(names, probs, labels, logits), team_list)
    from_probs = gncl_team_diversity(MemberOutputs(names, probs, labels), team_list)
    assert from_logits == pytest.approx([slow_gncl(logits, t) for t in team_list], rel=1e-8)
    assert from_probs == pytest.approx(from_logits, rel=1e-4)


@pytest.mark.parametrize("members,message", [
    ((), "members is empty"), ((0, 3), "out of range"), ((1, 1), "twice")])
def test_gncl_diversity_rejects_bad_members(members, message):
    with pytest.raises(ValueError, match=message):
        gncl_diversity(random_logits((3, 5, 2)), members)


def test_gncl_diversity_rejects_no_samples():
    with pytest.raises(ValueError, match="sample"):
        gncl_diversity(np.zeros((2, 0, 3)))
