"""The model factory against Table i: reference parameter counts, a real training step per
paper-scale architecture, tiny-scale shapes and determinism, weight loading, errors."""

import json
from functools import cache
from pathlib import Path

import pytest
import timm
import torch
import torchvision.models as tvm
import yaml
from torch import nn
from torchvision.models.resnet import Bottleneck

from ensui import paper
from ensui.engine.models import (
    build_model,
    count_parameters,
    families,
    load_weights,
    register_family,
)
from ensui.engine.models.normalize import IMAGENET_MEAN, IMAGENET_STD

TABLE_I = Path(__file__).resolve().parents[1] / "data" / "paper" / "table_i.yaml"
ROWS = yaml.safe_load(TABLE_I.read_text())


def _distinct_archs() -> list:
    """One param per distinct `arch`, named after every row that uses it, so each row is
    covered while identical architectures (e.g. the two SqueezeNet rows) are built once."""
    by_arch: dict[str, list[str]] = {}
    for row in ROWS:
        by_arch.setdefault(json.dumps(row["arch"], sort_keys=True), []).append(row["id"])
    return [pytest.param(json.loads(arch), id="+".join(ids)) for arch, ids in by_arch.items()]


ARCHS = _distinct_archs()
FIRST_ARCH_OF_FAMILY = {}
for _row in ROWS:
    FIRST_ARCH_OF_FAMILY.setdefault(_row["arch"]["family"], _row["arch"])


@cache
def _reference_count(family: str, layers: tuple = (), groups: int = 1, width: int = 64) -> int:
    """Parameters of an independently built reference at 1000 classes / 224 px."""
    if family == "resnext":
        net = tvm.ResNet(Bottleneck, list(layers), groups=groups, width_per_group=width)
    elif family == "mnasnet":
        net = tvm.mnasnet1_0(weights=None)
    elif family == "squeezenet":
        net = tvm.squeezenet1_1(weights=None)
    elif family in ("deit", "dino_deit"):
        net = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    elif family == "dino_resnet50":
        net = tvm.resnet50(weights=None)
    else:
        raise AssertionError(f"no reference for family {family!r}")
    return count_parameters(net)


def _divisible(value: float, divisor: int = 8) -> int:
    """Once-for-All's rounding: the nearest multiple, never below 90 % of the value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _subnet_reference_count(row: dict, classes: int = 1000) -> int:
    """Parameters of a Table ii row, counted by hand: the 7×7 stem at w[1]'s multiplier,
    stages of 2, 2, 4, 2 blocks plus d[1:], each block 1×1 → 3×3 → 1×1 with mid =
    e · out (the i-th active block takes the i-th expansion), a 1×1 projection shortcut
    on each stage's first block, BN (weight and bias) after every conv, then the fc."""
    mult = (1.0, 0.8, 0.6)
    stem = _divisible(64 * mult[row["width"][1]])
    count, in_ch, block = 3 * stem * 49 + 2 * stem, stem, 0
    for s, (base, extra, w) in enumerate(zip((2, 2, 4, 2), row["depth"][1:], row["width"][2:])):
        out = _divisible(256 * 2 ** s * mult[w])
        for b in range(base + extra):
            mid = _divisible(row["expansion"][block] * out)
            count += in_ch * mid + 9 * mid * mid + mid * out + 2 * (mid + mid + out)
            if b == 0:
                count += in_ch * out + 2 * out
            in_ch, block = out, block + 1
    return count + in_ch * classes + classes


def _reference_for(arch: dict) -> int:
    if arch["family"] == "resnet50_subnet":
        return _subnet_reference_count(next(r for r in paper.table_ii()
                                            if r["id"] == arch["subnet"]))
    if arch["family"] == "resnext":
        knobs = tuple(arch["layers"]), arch["cardinality"], arch["base_width"]
        return _reference_count("resnext", *knobs)
    return _reference_count(arch["family"])


def _paper(arch: dict, seed: int = 0) -> nn.Module:
    return build_model(arch, "paper", num_classes=1000, image_size=224, seed=seed)


def _tiny(arch: dict, seed: int = 0, num_classes: int = 10) -> nn.Module:
    return build_model(arch, "tiny", num_classes=num_classes, image_size=32, seed=seed)


def _pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Close relative to the outputs' own scale: a freshly initialised MNASNet in eval mode
    emits logits of ~1e-7 (torchvision's init shrinks activations), which any fixed
    absolute tolerance would call equal to anything."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def _differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > 1e-3 * b.abs().max().item()


# -- paper scale ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_parameter_count_matches_reference(arch):
    ours, reference = count_parameters(_paper(arch)), _reference_for(arch)
    assert abs(ours - reference) <= 0.01 * reference, (ours, reference)


RESNEXT50_32X4D = {"family": "resnext", "cardinality": 32, "base_width": 4, "layers": [3, 4, 6, 3]}
DEIT_TINY = {"family": "deit", "embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16}


@pytest.mark.parametrize(
    "arch, published",
    [
        ({**RESNEXT50_32X4D, "dropout": 0.2}, 25.0e6),
        ({"family": "mnasnet", "alpha": 1.0, "dropout": 0.2}, 4.4e6),
        ({"family": "squeezenet", "version": "1.1", "dropout": 0.5}, 1.24e6),
        (DEIT_TINY, 5.7e6),
        ({"family": "dino_resnet50"}, 25.6e6),
    ],
    ids=["ResNeXt50-32x4d", "MNASNet1.0", "SqueezeNet1.1", "DeiT-tiny", "ResNet50"],
)
def test_paper_parameter_count_matches_published(arch, published):
    assert abs(count_parameters(_paper(arch)) - published) <= 0.01 * published


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_training_step_changes_weights(arch):
    model = _paper(arch).train()
    params = list(model.parameters())
    first, last = params[0], params[-1]
    before = first.detach().clone(), last.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(_pixels(2, 224)), torch.tensor([3, 997]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before[0], first) and not torch.equal(before[1], last)


# -- tiny scale ----------------------------------------------------------------------------


def test_every_catalog_family_is_registered():
    assert set(FIRST_ARCH_OF_FAMILY) <= set(families())


@pytest.mark.parametrize("arch", FIRST_ARCH_OF_FAMILY.values(), ids=FIRST_ARCH_OF_FAMILY.keys())
def test_tiny_shapes_and_seeded_determinism(arch):
    x = _pixels(4, 32)
    a, again, other = (_tiny(arch, seed).eval() for seed in (1, 1, 2))
    with torch.no_grad():
        logits, features = a(x), a.features(x)
        assert logits.shape == (4, 10)
        assert features.ndim == 2 and features.shape[0] == 4
        assert torch.equal(logits, again(x)) and torch.equal(features, again.features(x))
        assert _differ(logits, other(x))


@pytest.mark.parametrize("arch", FIRST_ARCH_OF_FAMILY.values(), ids=FIRST_ARCH_OF_FAMILY.keys())
def test_features_are_what_the_linear_head_reads(arch):
    """Where the classifier is one Linear layer, logits = head(features): the tap really is
    the pre-logit layer. (SqueezeNet's head is a conv + ReLU + pool; it has no Linear.)
    64 px, so that the CNNs' last maps are 2×2 and a wrong pooling would show."""
    model = build_model(arch, "tiny", num_classes=10, image_size=64, seed=0).eval()
    linears = [m for m in model.net.modules() if isinstance(m, nn.Linear) and m.out_features == 10]
    if arch["family"] == "squeezenet":
        assert not linears
        return
    x = _pixels(4, 64)
    with torch.no_grad():
        _assert_close(linears[-1](model.features(x)), model(x))


def test_models_normalize_pixels_with_imagenet_statistics():
    model = _tiny(FIRST_ARCH_OF_FAMILY["squeezenet"]).eval()
    x = _pixels(2, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        _assert_close(model(x), model.net((x - mean) / std))


def test_tiny_resnext_keeps_cardinality_and_whole_groups():
    for arch in (row["arch"] for row in ROWS if row["arch"]["family"] == "resnext"):
        convs = [m for m in _tiny(arch).net.modules() if isinstance(m, nn.Conv2d)]
        grouped = [m for m in convs if m.groups > 1]
        assert grouped and all(m.groups == arch["cardinality"] for m in grouped)
        assert all(m.out_channels % m.groups == 0 and m.out_channels >= m.groups for m in grouped)


def test_seed_leaves_global_rng_untouched():
    state = torch.get_rng_state()
    _tiny(FIRST_ARCH_OF_FAMILY["deit"], seed=3)
    assert torch.equal(state, torch.get_rng_state())


def test_dino_models_are_backbone_plus_linear_classifier():
    for family in ("dino_deit", "dino_resnet50"):
        inner = _tiny(FIRST_ARCH_OF_FAMILY[family]).net
        assert isinstance(inner.classifier, nn.Linear)
        parts = count_parameters(inner.backbone) + count_parameters(inner.classifier)
        assert count_parameters(inner) == parts


# -- weights -------------------------------------------------------------------------------


def test_load_weights_round_trip(tmp_path):
    arch = FIRST_ARCH_OF_FAMILY["resnext"]
    trained, fresh = _tiny(arch, seed=1).eval(), _tiny(arch, seed=2).eval()
    x = _pixels(2, 32)
    assert _differ(trained(x), fresh(x))
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    load_weights(fresh, tmp_path / "w.pt")
    torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)


def test_load_weights_accepts_inner_state_dict_under_model_key(tmp_path):
    arch = FIRST_ARCH_OF_FAMILY["deit"]
    trained, fresh = _tiny(arch, seed=1).eval(), _tiny(arch, seed=2).eval()
    torch.save({"model": trained.net.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    load_weights(fresh, tmp_path / "ckpt.pth")
    x = _pixels(2, 32)
    torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)


def test_load_weights_names_file_and_missing_keys(tmp_path):
    path = tmp_path / "squeezenet.pt"
    torch.save({"state_dict": _tiny(FIRST_ARCH_OF_FAMILY["squeezenet"]).state_dict()}, path)
    expected = r"squeezenet\.pt.*missing keys \(\d+\): .*unexpected keys"
    with pytest.raises(ValueError, match=expected):
        load_weights(_tiny(FIRST_ARCH_OF_FAMILY["mnasnet"]), path)


def test_load_weights_names_shape_mismatch(tmp_path):
    arch = FIRST_ARCH_OF_FAMILY["mnasnet"]
    path = tmp_path / "hundred.pt"
    torch.save(_tiny(arch, num_classes=100).state_dict(), path)
    expected = r"hundred\.pt.*shape mismatch \(2\): net\.classifier\.1\.weight \(100, "
    with pytest.raises(ValueError, match=expected):
        load_weights(_tiny(arch), path)


def test_load_weights_rejects_a_file_without_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match=r"list\.pt"):
        load_weights(_tiny(FIRST_ARCH_OF_FAMILY["squeezenet"]), path)


# -- errors --------------------------------------------------------------------------------


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="'vgg16'"):
        build_model({"family": "vgg16"}, "tiny", 10, 32)


def test_unknown_scale_is_named():
    with pytest.raises(ValueError, match="'huge'"):
        build_model(FIRST_ARCH_OF_FAMILY["squeezenet"], "huge", 10, 32)


def test_family_registered_twice_is_refused():
    with pytest.raises(ValueError, match="'resnext'"):
        register_family("resnext")(lambda arch, scale, num_classes, image_size: nn.Identity())
