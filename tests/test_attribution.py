"""Attribution maps (captum) of every tiny family: completeness of integrated gradients,
cached maps equal to a direct captum call, Grad-CAM on ViT tokens against a hand-made
Grad-CAM, pooling, and the seeded subsets they are computed on."""

from types import SimpleNamespace

import captum.attr as ca
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from pathlib import Path

from ensui.engine.attribute import attribute, attribution_maps, features, pool
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.sample import sample_indices, take_sample
from ensui.engine.models import build_model
from ensui.engine.models.taps import grad_cam_layer
from ensui.engine.spec import ATTRIBUTION_METHODS

ROWS = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "paper" /
                       "table_i.yaml").read_text())
FAMILIES = {}
for _row in ROWS:
    FAMILIES.setdefault(_row["arch"]["family"], _row["arch"])
VITS = ("deit", "dino_deit")


@pytest.fixture(scope="module")
def digits():
    train, val = embedded_split(32, 0.2, 0)
    return train, val


def _fit(model, train, steps: int = 15):
    """A few Adam steps on the digits, so outputs depend on the image (a real model)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(train), (64,))
        loss = F.cross_entropy(model(train.images[idx].float() / 255), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _recalibrate_batch_norm(model, train)


@torch.no_grad()
def _recalibrate_batch_norm(model, train):
    """Running statistics from scratch (a few steps leave them stale, and the eval-mode
    output then barely depends on the image, as in MNASNet)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    for start in range(0, 512, 128):
        model(train.images[start:start + 128].float() / 255)
    return model.eval()


@pytest.fixture(scope="module")
def trained(digits):
    return {family: _fit(build_model(arch, "tiny", 10, 32, seed=0), digits[0])
            for family, arch in FAMILIES.items()}


def _cfg(**kw):
    base = dict(n_steps=32, shap_samples=4, seed=0, batch_size=4, grid=14, reduction="abs_sum")
    return SimpleNamespace(**{**base, **kw})


def _completeness_error(model, x, target, steps: int) -> tuple[float, float]:
    """(Σ_images |Σ attributions − (f(x) − f(black))|, Σ_images |f(x) − f(black)|)."""
    with torch.no_grad():
        gap = model(x)[range(len(x)), target] - model(torch.zeros_like(x))[range(len(x)), target]
    total = attribute(model, x.clone().requires_grad_(), target, "integrated_gradients",
                      _cfg(n_steps=steps)).detach().sum((1, 2, 3))
    return float((total - gap).abs().sum()), float(gap.abs().sum())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_integrated_gradients_completeness(trained, digits, family):
    """Σ attributions = f(x) − f(black) up to the error of the path integral. Smooth ViTs
    (GELU, softmax) are within 0.1 % at the default 32 steps. ReLU CNNs are piecewise
    linear, so the gradient jumps along the path and the error falls only about as
    1/steps: checked as at least 3× smaller at 256 steps than at 32 (barely trained
    MNASNet stays tens of % off even at 1024 steps; its logit is jagged along the path)."""
    model, val = trained[family], digits[1]
    x, target = val.images[:6].float() / 255, val.labels[:6]
    error, gap = _completeness_error(model, x, target, 32)
    assert gap / 6 > 1e-2  # the model reacts to its input
    if family in VITS:
        assert error <= 1e-3 * gap
    else:
        assert _completeness_error(model, x, target, 256)[0] <= error / 3


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("method", ATTRIBUTION_METHODS)
def test_every_method_gives_finite_informative_maps(trained, digits, family, method):
    val = digits[1]
    maps = attribution_maps(trained[family], val.images[:5], val.labels[:5], method, _cfg(),
                            torch.device("cpu"), 32)
    assert maps.shape == (5, 196) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all()  # abs_sum
    assert maps.std() > 0


def _pool_reference(raw: torch.Tensor, grid: int) -> np.ndarray:
    """Channel |.| sum, then mean over each block of cells (sizes divide evenly here)."""
    a = raw.detach().abs().sum(1).numpy()
    n, h, w = a.shape
    return a.reshape(n, grid, h // grid, grid, w // grid).mean((2, 4)).reshape(n, -1)


def test_cached_maps_equal_a_direct_captum_call(trained, digits):
    model, val = trained["resnext"], digits[1]
    images, target = val.images[:6], val.labels[:6]
    maps = attribution_maps(model, images, target, "integrated_gradients",
                            _cfg(grid=8, batch_size=4), torch.device("cpu"), 32)
    x = images.float() / 255
    direct = ca.IntegratedGradients(model).attribute(x, baselines=x * 0, target=target,
                                                     n_steps=32)
    np.testing.assert_allclose(maps, _pool_reference(direct, 8), rtol=1e-4, atol=1e-7)


def test_pooling_by_hand():
    raw = torch.arange(16.0).view(1, 1, 4, 4) - 8  # one channel, signed
    by_hand = [[(8 + 7 + 4 + 3) / 4, (6 + 5 + 2 + 1) / 4], [(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4]]
    assert pool(raw, 2).tolist() == [sum(by_hand, [])]
    two = torch.stack([raw[0, 0], -raw[0, 0]]).unsqueeze(0)  # channels cancel under 'sum'
    assert pool(two, 2, "sum").abs().max() == 0
    np.testing.assert_allclose(pool(two, 4, "l2").numpy(), np.sqrt(2) * raw.abs().view(1, -1))
    coarse = torch.full((1, 1, 1, 1), 3.0)  # a 1 × 1 Grad-CAM map spreads evenly
    assert pool(coarse, 4).tolist() == [[3.0] * 16]


@pytest.mark.parametrize("family", VITS)
def test_grad_cam_on_vit_tokens_matches_a_hand_made_grad_cam(trained, digits, family):
    """Grad-CAM on the patch tokens entering the last block: channel weights are the mean
    token gradient, the map their weighted sum, ReLU'd, on the 8 × 8 patch grid."""
    model, val = trained[family], digits[1]
    x, target = val.images[:3].float() / 255, val.labels[:3]
    vit = getattr(model.net, "backbone", model.net)
    norm = vit.blocks[-1].norm1
    seen = {}
    handle = norm.register_forward_hook(lambda m, i, out: seen.update(tokens=out))
    out = model(x)
    handle.remove()
    tokens = seen["tokens"]
    grads, = torch.autograd.grad(out[range(3), target].sum(), tokens)
    patches, grad_patches = tokens[:, 1:].detach(), grads[:, 1:]   # drop the CLS token
    weights = grad_patches.mean(1, keepdim=True)                     # (B, 1, D)
    expected = F.relu((weights * patches).sum(-1)).view(3, 1, 8, 8)
    cam = attribute(model, x, target, "layer_grad_cam", _cfg())
    torch.testing.assert_close(cam.detach(), expected, rtol=1e-4, atol=1e-6)
    assert vit.blocks[-1].norm1 is norm  # the tap is removed afterwards
    assert cam.abs().sum() > 0


def test_grad_cam_layer_of_cnns(trained):
    with grad_cam_layer(trained["resnext"]) as layer:
        assert layer is trained["resnext"].net.layer4
    with grad_cam_layer(trained["dino_resnet50"]) as layer:
        assert layer is trained["dino_resnet50"].net.backbone.layer4


def test_features_are_the_penultimate_layer(trained, digits):
    model, val = trained["squeezenet"], digits[1]
    feats = features(model, val.images[:7], torch.device("cpu"), 32, batch_size=3)
    with torch.no_grad():
        direct = model.features(val.images[:7].float() / 255)
    np.testing.assert_allclose(feats, direct.numpy(), rtol=1e-5, atol=1e-6)


def test_seeded_subset_is_fixed_sorted_and_shared(digits):
    val = digits[1]
    first = sample_indices(len(val), 50, seed=3)
    assert np.array_equal(first, sample_indices(len(val), 50, seed=3))
    assert not np.array_equal(first, sample_indices(len(val), 50, seed=4))
    assert len(set(first)) == 50 and np.all(np.diff(first) > 0)
    assert np.array_equal(sample_indices(10, 99, 0), np.arange(10))
    assert np.array_equal(sample_indices(10, None, 0), np.arange(10))
    index, sample = take_sample(val, 50, 3)
    assert sample.ids == tuple(val.ids[i] for i in first)
    assert torch.equal(sample.images, val.images[torch.from_numpy(first)])


def test_subset_of_concatenated_parts():
    from ensui.engine.data.validation import ArrayPart, PartSet

    def part(name, n):
        images = np.random.default_rng(n).integers(0, 255, (n, 3, 4, 4), dtype=np.uint8)
        return ArrayPart(images, torch.arange(n), tuple(f"{name}/{i}" for i in range(n)))

    parts = PartSet([part("a", 5), part("b", 7)])
    taken = parts.take(np.array([1, 4, 5, 11]))
    assert taken.ids == ("a/1", "a/4", "b/0", "b/6")
    assert torch.equal(taken.images[2], torch.from_numpy(parts.parts[1].images[0]))
