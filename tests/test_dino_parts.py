import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensui.engine.data.multicrop import MultiCrop, color_jitter, gaussian_blur, solarize
from ensui.engine.train.dino import (
    DINOHead,
    DINOLoss,
    cancel_last_layer_grads,
    clip_gradients,
    cosine_schedule,
    ema_update,
    kl_to_uniform,
    param_groups,
    set_lr_and_wd,
    teacher_entropy,
)

# --- loss -------------------------------------------------------------------------------

def _reference_loss(student, teacher, center, n_crops, s_temp, t_temp):
    """DINO's loss written out with explicit loops over (teacher view, student view)."""
    s_views = (student / s_temp).chunk(n_crops)
    t_views = F.softmax((teacher - center) / t_temp, dim=-1).chunk(2)
    total, terms = 0.0, 0
    for i, q in enumerate(t_views):
        for v, s in enumerate(s_views):
            if v == i:
                continue
            per_sample = [-(q[b] * F.log_softmax(s[b], dim=-1)).sum() for b in range(len(q))]
            total += sum(per_sample) / len(per_sample)
            terms += 1
    return total / terms


def test_loss_matches_loop_reference_and_centre_ema():
    gen = torch.Generator().manual_seed(0)
    n_crops, batch, k = 5, 4, 7
    loss_fn = DINOLoss(k, n_crops, epochs=10, warmup_teacher_temp=0.04, teacher_temp=0.07,
                       warmup_epochs=4, center_momentum=0.9).double()
    loss_fn.center.copy_(torch.randn(1, k, generator=gen, dtype=torch.float64))
    student = torch.randn(n_crops * batch, k, generator=gen, dtype=torch.float64)
    teacher = torch.randn(2 * batch, k, generator=gen, dtype=torch.float64)
    old_center = loss_fn.center.clone()
    for epoch in (0, 2, 7):
        center = loss_fn.center.clone()
        want = _reference_loss(student, teacher, center, n_crops, 0.1,
                               loss_fn.teacher_temp_at(epoch))
        got = loss_fn(student, teacher, epoch)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # three updates of the centre by hand: c <- 0.9 c + 0.1 mean(teacher)
    expected = old_center
    for _ in range(3):
        expected = 0.9 * expected + 0.1 * teacher.mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected, rtol=1e-12, atol=1e-12)


def test_loss_gradient_reaches_student_only():
    loss_fn = DINOLoss(6, 3, epochs=1)
    student = torch.randn(9, 6, requires_grad=True)
    teacher = torch.randn(6, 6, requires_grad=True)
    loss_fn(student, teacher, 0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_teacher_temperature_warmup():
    loss_fn = DINOLoss(4, 2, epochs=20, warmup_teacher_temp=0.04, teacher_temp=0.07,
                       warmup_epochs=11)
    # as DINO's np.linspace(0.04, 0.07, 11): epoch 5 is the midpoint, epoch 10 the end
    assert loss_fn.teacher_temp_at(0) == pytest.approx(0.04)
    assert loss_fn.teacher_temp_at(5) == pytest.approx(0.055)
    assert loss_fn.teacher_temp_at(10) == pytest.approx(0.07)
    assert loss_fn.teacher_temp_at(15) == pytest.approx(0.07)
    dino = np.concatenate((np.linspace(0.04, 0.07, 11), np.ones(9) * 0.07))
    assert [loss_fn.teacher_temp_at(e) for e in range(20)] == pytest.approx(dino.tolist())
    assert DINOLoss(4, 2, epochs=3).teacher_temp_at(0) == pytest.approx(0.04)


# --- collapse indicators ----------------------------------------------------------------

def test_entropy_and_kl_indicators():
    k = 16
    zero = torch.zeros(1, k)
    uniform = torch.zeros(8, k)
    assert teacher_entropy(uniform, 0.04, zero).item() == pytest.approx(math.log(k), abs=1e-5)
    assert kl_to_uniform(uniform, 0.04, zero).item() == pytest.approx(0.0, abs=1e-5)
    same_hot = torch.zeros(8, k)
    same_hot[:, 3] = 10.0
    assert teacher_entropy(same_hot, 0.04, zero).item() < 1e-6
    assert kl_to_uniform(same_hot, 0.04, zero).item() == pytest.approx(math.log(k), abs=1e-5)
    spread = torch.eye(k) * 10.0  # each sample one-hot on its own prototype: healthy
    assert teacher_entropy(spread, 0.04, zero).item() < 1e-6
    assert kl_to_uniform(spread, 0.04, zero).item() == pytest.approx(0.0, abs=1e-5)
    # centring removes a dominant prototype shared by the whole batch
    assert teacher_entropy(same_hot, 0.04, same_hot[:1]).item() == pytest.approx(math.log(k))


# --- EMA, schedules, parameter groups, gradients -----------------------------------------

def test_ema_update_by_hand():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    student(torch.randn(5, 3))  # moves the student's BN running statistics
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    ema_update(student, teacher, 0.75)
    for name, s in student.named_parameters():
        want = 0.75 * before[name] + 0.25 * s
        torch.testing.assert_close(dict(teacher.named_parameters())[name], want)
    for (_, s), (_, t) in zip(student.named_buffers(), teacher.named_buffers()):
        assert torch.equal(s, t)
    ema_update(student, teacher, 0.0)
    assert all(torch.equal(s, t) for s, t in zip(student.parameters(), teacher.parameters()))


def test_cosine_schedule_values():
    s = cosine_schedule(1.0, 0.0, epochs=4, iters_per_epoch=5)
    assert len(s) == 20 and s[0] == 1.0
    assert s[10] == pytest.approx(0.5)  # half-way through the cosine
    assert s[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    w = cosine_schedule(0.5, 0.1, epochs=5, iters_per_epoch=4, warmup_epochs=2, start_warmup=0.0)
    assert len(w) == 20
    assert w[:8].tolist() == pytest.approx(np.linspace(0.0, 0.5, 8).tolist())
    assert w[8] == pytest.approx(0.5) and w[14] == pytest.approx(0.3)
    m = cosine_schedule(0.996, 1.0, epochs=3, iters_per_epoch=10)  # teacher momentum
    assert m[0] == pytest.approx(0.996) and np.all(np.diff(m) > 0) and m[-1] < 1.0


def test_param_groups_exclude_biases_and_norms_once():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.LayerNorm(4 * 6 * 6), nn.Linear(4 * 6 * 6, 8))
    head = DINOHead(8, 10, hidden=12, bottleneck=5)
    both = nn.ModuleDict({"body": model, "head": head})
    decay, no_decay = param_groups(both)
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids))  # nothing twice
    trainable = {id(p) for p in both.parameters() if p.requires_grad}
    assert set(ids) == trainable  # and nothing trainable left out
    no_ids = {id(p) for p in no_decay["params"]}
    for name, p in both.named_parameters():
        if name.endswith(".bias") or isinstance(_owner(both, name), (nn.BatchNorm2d, nn.LayerNorm)):
            assert id(p) in no_ids, name
    assert {id(p) for p in decay["params"]} == {
        id(model[0].weight), id(model[4].weight),
        *(id(m.weight) for m in head.mlp if isinstance(m, nn.Linear)),
        id(head.last_layer.parametrizations.weight.original1)}
    opt = torch.optim.AdamW(param_groups(both), lr=1.0)
    set_lr_and_wd(opt, 0.1, 0.04)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.04, 0.0]
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]


def _owner(root: nn.Module, name: str) -> nn.Module:
    return root.get_submodule(name.rsplit(".", 1)[0])


def test_head_shapes_and_fixed_norm():
    head = DINOHead(8, 10, hidden=12, bottleneck=5, nlayers=3)
    assert len([m for m in head.mlp if isinstance(m, nn.Linear)]) == 3
    out = head(torch.randn(4, 8))
    assert out.shape == (4, 10)
    # unit-norm bottleneck and unit-norm prototypes: logits are cosines
    assert out.abs().max() <= 1 + 1e-5
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad and torch.equal(g, torch.ones_like(g))
    assert DINOHead(8, 10, nlayers=1, bottleneck=5).mlp(torch.randn(2, 8)).shape == (2, 5)


def test_last_layer_grads_cancelled_in_first_epoch_only():
    head = DINOHead(6, 9, hidden=8, bottleneck=4)

    def grads_after(epoch):
        head.zero_grad(set_to_none=True)
        head(torch.randn(3, 6)).pow(2).sum().backward()
        cancel_last_layer_grads(head, epoch, freeze_epochs=1)
        return [p.grad for p in head.last_layer.parameters() if p.requires_grad]

    assert all(g is None or not g.any() for g in grads_after(0))
    assert head.mlp[0].weight.grad is not None  # the rest of the head still learns
    assert all(g is not None and g.any() for g in grads_after(1))


def test_clip_gradients_per_parameter():
    lin = nn.Linear(2, 2)
    lin.weight.grad = torch.full((2, 2), 3.0)  # norm 6
    lin.bias.grad = torch.tensor([0.3, 0.4])   # norm 0.5
    norms = clip_gradients(lin, 1.0)
    assert norms.tolist() == pytest.approx([6.0, 0.5])
    assert lin.weight.grad.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert lin.bias.grad.tolist() == pytest.approx([0.3, 0.4])


# --- multi-crop ---------------------------------------------------------------------------

def _batch(n=16, size=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def test_multicrop_counts_shapes_range_and_determinism():
    crops = MultiCrop(24, 12, global_scale=(0.4, 1.0), local_scale=(0.05, 0.2), n_local=3)
    x = _batch()
    a = crops(x, torch.Generator().manual_seed(1))
    b = crops(x, torch.Generator().manual_seed(1))
    c = crops(x, torch.Generator().manual_seed(2))
    assert len(a) == 5
    assert [v.shape for v in a] == [(16, 3, 24, 24)] * 2 + [(16, 3, 12, 12)] * 3
    assert all(v.dtype == torch.float32 and v.min() >= 0 and v.max() <= 1 for v in a)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(not torch.equal(u, v) for u, v in zip(a, c))
    floats = crops(x.float() / 255, torch.Generator().manual_seed(1))
    assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(a, floats))


def test_multicrop_crop_areas_and_view_probabilities():
    size, n = 96, 2000
    crops = MultiCrop(32, 16, global_scale=(0.14, 1.0), local_scale=(0.05, 0.14), n_local=2)
    draws = crops.draw(n, size, size, torch.Generator().manual_seed(0))
    for i, d in enumerate(draws):
        lo, hi = crops.local_scale if i >= 2 else crops.global_scale
        top, left, h, w = d.boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + h <= size).all() and (left + w <= size).all()
        # rounding the box sides to whole pixels moves the area by at most ~(h + w) / 2 px
        area, slack = h * w, (h + w) / 2 + 0.25
        assert ((area >= lo * size**2 - slack) & (area <= hi * size**2 + slack)).all()
        assert d.size == (16 if i >= 2 else 32)
    blur = [d.blur.float().mean().item() for d in draws]
    solar = [d.solarize.float().mean().item() for d in draws]
    assert blur[0] == 1.0 and blur[1] == pytest.approx(0.1, abs=0.03)
    assert blur[2] == pytest.approx(0.5, abs=0.05)
    assert solar[0] == 0.0 and solar[1] == pytest.approx(0.2, abs=0.03) and solar[2] == 0.0
    for d in draws:
        assert d.jitter.float().mean().item() == pytest.approx(0.8, abs=0.05)
        assert d.gray.float().mean().item() == pytest.approx(0.2, abs=0.05)
        assert d.flips.float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_multicrop_identity_when_every_augmentation_is_off():
    off = MultiCrop(20, 20, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), n_local=1,
                    ratio=(1.0, 1.0), hflip=0.0, jitter_p=0.0, gray_p=0.0,
                    blur_p=(0.0, 0.0, 0.0), solarize_p=(0.0, 0.0, 0.0))
    x = _batch(4, 20)
    for view in off(x, torch.Generator().manual_seed(0)):
        assert torch.allclose(view, x.float() / 255, atol=1e-6)


def test_grayscale_views_have_equal_channels():
    crops = MultiCrop(16, 8, n_local=2, gray_p=1.0)
    views = crops(_batch(6, 32), torch.Generator().manual_seed(0))
    for v in views:
        assert torch.allclose(v[:, 0], v[:, 1], atol=1e-6)
        assert torch.allclose(v[:, 1], v[:, 2], atol=1e-6)


def test_colour_ops():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 8, 8, generator=gen)
    neutral = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 3)
    torch.testing.assert_close(color_jitter(x, neutral), x, atol=1e-5, rtol=0)
    dark = color_jitter(x, torch.tensor([[0.5, 1.0, 1.0, 0.0]] * 3))
    torch.testing.assert_close(dark, x * 0.5, atol=1e-5, rtol=0)
    torch.testing.assert_close(solarize(torch.tensor([0.2, 0.49, 0.5, 0.9])),
                               torch.tensor([0.2, 0.49, 0.5, 0.1]))
    # a hue turn keeps grays gray and (in gamut) keeps the luma
    gray = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(color_jitter(gray, torch.tensor([[1.0, 1.0, 1.0, 0.3]])), gray)
    pale = 0.4 + 0.1 * x
    turned = color_jitter(pale, torch.tensor([[1.0, 1.0, 1.0, 0.25]] * 3))
    luma = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    torch.testing.assert_close((turned * luma).sum(1), (pale * luma).sum(1), atol=1e-5, rtol=0)
    assert (turned - pale).abs().max() > 0.01
    flat = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, torch.tensor([0.5, 2.0])), flat)
    spike = torch.zeros(1, 1, 9, 9)
    spike[..., 4, 4] = 1.0
    blurred = gaussian_blur(spike, torch.tensor([1.0]))
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred[..., 4, 4] < 0.2
