"""The elastic ResNet50 super-network against independent references: torchvision's and
the project's ResNet50 for the maximum network, hand-computed channel and parameter
counts, torch's FLOP counter, plain BatchNorm, and Table ii's rows."""

import copy
import json
import random
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ensui.engine.models.normalize import Normalized
from ensui.engine.models.registry import Scale
from ensui.engine.models.resnet import resnet50_net
from ensui.engine.nas.elastic_resnet import (
    MIN_WIDTH,
    TINY_WIDTHS,
    DynamicBatchNorm2d,
    SubnetResNet,
    build_supernet,
    channel_plan,
    extract,
    make_divisible,
    pre_logits,
    recalibrate_bn,
)
from ensui.engine.nas.macs import count_macs, count_parameters
from ensui.engine.nas.subnet_config import (
    EXPANSION_CHOICES,
    RESNET50_LAYERS,
    SubnetConfig,
    SubnetConfigError,
    config_key,
    max_config,
    min_config,
    parse_table_ii,
    sample_config,
    to_table_ii,
)
from ensui.errors import EnsuiError

PAPER = Path(__file__).resolve().parents[1] / "data" / "paper"
TABLE_II = yaml.safe_load((PAPER / "table_ii.yaml").read_text())
ROWS = {row["id"]: row for row in TABLE_II}
OFA_BASE = (2, 2, 4, 2)


def _randomize_bns(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial affine parameters and statistics in every BN, so that a channel mixed up
    anywhere changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            c = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(c, generator=gen))
            bn.bias.copy_(0.1 * torch.randn(c, generator=gen))
            bn.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    return net


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_bns(build_supernet("tiny", 10), seed).eval()


def _images(n: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- the maximum network is ResNet50 -------------------------------------------------------

def test_paper_max_config_is_torchvision_resnet50():
    torch.manual_seed(0)
    reference = tvm.resnet50(weights=None).eval()
    net = build_supernet("paper", 1000).eval()
    assert count_parameters(net) == count_parameters(reference) == 25_557_032
    net.load_state_dict(reference.state_dict())  # strict: same names and shapes
    x = _images(1, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), atol=1e-5, rtol=1e-5)


def test_tiny_max_config_is_the_project_tiny_resnet50():
    torch.manual_seed(0)
    reference = _randomize_bns(resnet50_net(Scale.TINY, 10)).eval()
    net = build_supernet(Scale.TINY, 10).eval()
    net.load_state_dict(reference.state_dict())
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), atol=1e-5, rtol=1e-5)


def test_min_width_is_listing_1s():
    listing = json.loads((PAPER / "listing_1.json").read_text())
    assert MIN_WIDTH == listing["bootstrapNAS"]["training"]["elasticity"]["width"]["min_width"]


# -- channel counts ------------------------------------------------------------------------

@pytest.mark.parametrize("value, floor, expected", [
    (153.6, None, 152),  # nearest multiple of 8
    (38.4, None, 40),
    (307.2, None, 304),
    (614.4, None, 616),
    (9.0, None, 16),  # 8 would lose more than 10%
    (3.0, None, 8),  # never below the divisor
    (16.0, 32, 32),  # never below min_width
])
def test_make_divisible(value, floor, expected):
    assert make_divisible(value, 8, floor) == expected


def test_channel_plans_by_hand():
    # tiny min: stem 64*0.6=38.4 -> 40; outs 0.6*(128, 256, 512, 1024) -> 80, 152, 304, 616;
    # mids 0.2*out = 16, 30.4, 60.8, 123.2 -> 16 (raised to min_width 32), 32, 64, 120.
    plan = channel_plan(TINY_WIDTHS, min_config())
    assert (plan.stem, plan.outs, plan.mids) == (40, (80, 152, 304, 616),
                                                 ((32,), (32,), (64,), (120,)))
    # paper B_0: widths (0, 2, 2, 2) -> outs 256, 304, 616, 1232 (2048*0.6=1228.8);
    # stage 1 expansions 0.2, 0.2 of 256 = 51.2 -> 48; stage 4's 0.25 of 1232 = 308 -> 312.
    paper = build_supernet("paper", 1000).channel_plan(parse_table_ii(ROWS["B_0"]))
    assert paper.stem == 64 and paper.outs == (256, 304, 616, 1232)
    assert paper.mids[0] == (48, 48) and paper.mids[3] == (248, 312, 312)


def test_min_config_parameter_count_by_hand():
    def conv(i, o, k=1):
        return i * o * k * k

    def block(i, mid, out):
        return (conv(i, mid) + conv(mid, mid, 3) + conv(mid, out) + conv(i, out)
                + 2 * (2 * mid + 2 * out))  # BN weight and bias; downsample conv + BN

    stem, outs, mids = 40, (80, 152, 304, 616), (32, 32, 64, 120)
    ins = (stem, *outs[:-1])
    expected = (conv(3, stem, 3) + 2 * stem
                + sum(block(i, m, o) for i, m, o in zip(ins, mids, outs)) + 616 * 10 + 10)
    net = _tiny()
    sub = extract(net, min_config())
    assert count_parameters(sub) == expected
    full = count_parameters(extract(net, max_config()))
    assert count_parameters(sub) < full == count_parameters(net)


# -- extraction ----------------------------------------------------------------------------

CONFIGS = {
    "min": min_config(),
    "max": max_config(),
    "random0": sample_config(random.Random(0), 5, 3),
    "random1": sample_config(random.Random(1), 2, 2),
    "B_0": parse_table_ii(ROWS["B_0"]),
    "wB_1c": parse_table_ii(ROWS["wB_1c"]),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_extracted_module_computes_the_configured_supernet(name):
    cfg = CONFIGS[name]
    net = _tiny()
    net.set_config(cfg)
    sub = extract(net, cfg)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(sub(x), net(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pre_logits(sub, x), pre_logits(net, x), atol=1e-5, rtol=1e-5)
    assert pre_logits(sub, x).shape == (3, net.channel_plan(cfg).outs[-1])
    assert isinstance(sub, SubnetResNet) and not sub.training
    assert all(type(m) in (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
               for m in sub.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear))
    assert [len(stage) for stage in sub.stages()] == list(cfg.depths)
    supernet_storage = {p.untyped_storage().data_ptr() for p in net.state_dict().values()}
    assert not supernet_storage & {p.untyped_storage().data_ptr()
                                   for p in sub.state_dict().values()}


def test_extract_leaves_the_supernet_configuration_alone():
    net = _tiny()
    cfg = CONFIGS["random0"]
    net.set_config(cfg)
    extract(net, min_config())
    assert net.config == cfg
    with torch.no_grad():
        torch.testing.assert_close(net(_images()), extract(net, cfg)(_images()))


def test_extracted_macs_match_torch_flop_counter_and_the_supernet():
    net = _tiny()
    cfg = CONFIGS["B_0"]
    net.set_config(cfg)
    sub = extract(net, cfg)
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        sub(torch.zeros(1, 3, 32, 32))
    assert count_macs(sub, 32) == flops.get_total_flops() // 2  # a MAC is two FLOPs
    assert count_macs(net, 32) == count_macs(sub, 32)
    assert count_macs(sub, 32) < count_macs(extract(net, max_config()), 32)


def test_count_macs_by_hand():
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(512, 10))
    # 16 px -> 8x8x8 outputs of 3*3*3 MACs each, then 512 x 10
    assert count_macs(plain, 16) == 8 * 8 * 8 * 27 + 512 * 10
    grouped = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, groups=3), nn.Flatten(),
                            nn.Linear(96, 2))
    # 4 px -> 6x4x4 outputs, each reads one input channel (groups=3) through a 3x3 kernel
    assert count_macs(grouped, 4) == 96 * 9 + 96 * 2


def test_headless_supernet_and_normalized_wrapper():
    net = build_supernet("tiny", 0).eval()
    cfg = CONFIGS["B_0"]
    net.set_config(cfg)
    sub = extract(net, cfg)
    x = torch.rand(2, 3, 32, 32)
    wrapped = Normalized(sub, pre_logits)
    assert isinstance(sub.fc, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(wrapped.features(x), Normalized(net, pre_logits)(x))


def test_training_reaches_only_the_active_slices():
    net = build_supernet("tiny", 10).train()
    net.set_config(min_config())
    nn.functional.cross_entropy(net(_images(4)), torch.arange(4)).backward()
    stem, mid = 40, 32
    grad = net.layer1[0].conv1.weight.grad
    assert grad[:mid, :stem].abs().sum() > 0
    assert grad[mid:].abs().sum() == 0 and grad[:, stem:].abs().sum() == 0
    assert net.layer1[1].conv1.weight.grad is None  # skipped block


# -- channel reorganization ----------------------------------------------------------------

def _filter_norms(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))


def _stream_importance(stage: nn.Sequential) -> torch.Tensor:
    convs = [block.conv3 for block in stage] + [stage[0].downsample[0]]
    return sum(_filter_norms(conv) for conv in convs)


def _descending(values: torch.Tensor) -> bool:
    return bool((values[:-1] >= values[1:]).all())


def test_reorganize_channels_keeps_the_max_network_and_sorts_importance():
    # float64, so that float32's summation-order noise cannot hide or fake a mix-up
    net = _tiny().double()
    before = copy.deepcopy(net)
    x = _images().double()
    assert not _descending(_filter_norms(net.layer2[1].conv1))  # random init is unsorted
    with torch.no_grad():
        expected = net(x)
        net.reorganize_channels()
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
    for block in (b for stage in net.stages() for b in stage):
        assert _descending(_filter_norms(block.conv1)) and _descending(_filter_norms(block.conv2))
    assert _descending(_filter_norms(net.conv1))
    assert all(_descending(_stream_importance(stage)) for stage in net.stages())
    assert _filter_norms(net.layer3[2].conv1)[0] == _filter_norms(before.layer3[2].conv1).max()
    # a narrower prefix now holds other channels, so the sub-network changes
    for model in (net, before):
        model.set_config(min_config())
    with torch.no_grad():
        assert not torch.allclose(net(x), before(x), atol=1e-3)


# -- BN recalibration ----------------------------------------------------------------------

def test_dynamic_batchnorm_updates_like_batchnorm():
    x = [torch.randn(4, 6, 3, 3) for _ in range(3)]
    for momentum in (0.1, None):
        dynamic = DynamicBatchNorm2d(6, momentum=momentum)
        plain = nn.BatchNorm2d(6, momentum=momentum)
        for batch in x:
            torch.testing.assert_close(dynamic(batch), plain(batch))
        torch.testing.assert_close(dynamic.running_mean, plain.running_mean)
        torch.testing.assert_close(dynamic.running_var, plain.running_var)


def test_recalibrate_bn_averages_the_subnetworks_batch_statistics():
    net = _tiny()
    cfg = CONFIGS["B_0"]
    net.set_config(cfg)
    batches = [_images(4, seed=s) for s in range(3)]
    # Reference: pre-BN activations of the extracted network in train mode (batch
    # statistics, so its copied running statistics play no part), captured by hooks.
    sub = extract(net, cfg).train()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for name, bn in sub.named_modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.register_forward_pre_hook(
                lambda m, inp, name=name: seen.setdefault(name, []).append(
                    (inp[0].mean(dim=(0, 2, 3)), inp[0].var(dim=(0, 2, 3), unbiased=True))))
    with torch.no_grad():
        for batch in batches:
            sub(batch)

    recalibrate_bn(net, batches)
    assert not net.training
    for name, stats in seen.items():
        bn = net.get_submodule(name)
        c = stats[0][0].numel()
        assert bn.momentum == 0.1
        torch.testing.assert_close(bn.running_mean[:c], sum(m for m, _ in stats) / len(stats),
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(bn.running_var[:c], sum(v for _, v in stats) / len(stats),
                                   atol=1e-5, rtol=1e-4)
    assert len(seen) == 3 * cfg.active_blocks + 4 + 1  # every active BN was checked
    assert net.layer3[5].bn1.running_mean.abs().sum() == 0  # skipped block: reset


# -- Table ii ------------------------------------------------------------------------------

@pytest.mark.parametrize("row", TABLE_II, ids=[row["id"] for row in TABLE_II])
def test_every_table_ii_row_parses_by_the_rule(row):
    cfg = parse_table_ii(row)
    depths = tuple(base + extra for base, extra in zip(OFA_BASE, row["depth"][1:]))
    active = sum(depths)
    assert cfg.depths == depths
    assert cfg.expansions == tuple(row["expansion"][:active])
    assert cfg.unused_expansion == tuple(row["expansion"][active:])
    assert (cfg.stem_width, cfg.widths) == (row["width"][1], tuple(row["width"][2:]))
    assert (cfg.stem_skip, cfg.stem_input_width) == (row["depth"][0], row["width"][0])
    assert to_table_ii(cfg) == {k: row[k] for k in ("depth", "expansion", "width")}
    channel_plan(TINY_WIDTHS, cfg)  # fits the super-network


def test_table_ii_rules_on_named_rows():
    b0, db1b = parse_table_ii(ROWS["B_0"]), parse_table_ii(ROWS["dB_1b"])
    assert b0.depths == (2, 2, 4, 3) and b0.unused_expansion == (0.25,)
    assert db1b.depths == (2, 2, 4, 2) and db1b.unused_expansion == (0.25, 0.25)
    assert db1b.stem_skip == 1  # recorded, but the network is B_1's
    assert config_key(db1b) == config_key(parse_table_ii({**ROWS["dB_1b"], "depth": [0] * 5}))
    assert config_key(b0) == config_key(parse_table_ii(ROWS["nB_0"]))
    assert config_key(b0) != config_key(parse_table_ii(ROWS["B_1"]))
    assert config_key(b0) == ("s0_d2-2-4-3_w0-2-2-2_"
                              "e0.2-0.2-0.2-0.25-0.2-0.25-0.25-0.25-0.2-0.25-0.25")


def _b0_with(**change) -> dict:
    row = copy.deepcopy(ROWS["B_0"])
    for field, (index, value) in change.items():
        if index is None:
            row[field] = value
        else:
            row[field][index] = value
    return row


@pytest.mark.parametrize("change, message", [
    ({"depth": (None, [0, 0, 0, 1])}, "depth: expected 5 entries, got 4"),
    ({"width": (None, [0, 0, 2, 2, 2])}, "width: expected 6 entries, got 5"),
    ({"expansion": (None, [0.25] * 10)}, "expansion: expected 11 to 16 entries"),
    ({"expansion": (None, [0.25] * 18)}, "expansion: expected 11 to 16 entries"),
    ({"depth": (2, 3)}, "depth[2]: 3 blocks more than stage 2's base 2 exceeds its 4 blocks"),
    ({"depth": (4, -1)}, "depth[4]"),
    ({"depth": (0, 2)}, "depth[0]: the stem-skip flag must be 0 or 1"),
    ({"expansion": (5, 0.35)}, "expansion[5]: expansion 0.35 is outside (0, 0.25]"),
    ({"expansion": (0, 0)}, "expansion[0]"),
    ({"width": (3, 3)}, "width[3]: 3 is not a width index"),
    ({"width": (0, -1)}, "width[0]"),
])
def test_table_ii_errors_name_the_entry(change, message):
    with pytest.raises(SubnetConfigError) as err:
        parse_table_ii(_b0_with(**change))
    assert str(err.value).startswith("B_0: ")
    assert message in str(err.value)
    assert isinstance(err.value, EnsuiError)


def test_missing_field_and_inexpressible_config():
    row = {k: v for k, v in ROWS["B_0"].items() if k != "width"}
    with pytest.raises(SubnetConfigError, match="width: missing"):
        parse_table_ii(row)
    with pytest.raises(SubnetConfigError, match="stage 1's 1 blocks are below"):
        to_table_ii(min_config())


@pytest.mark.parametrize("cfg, message", [
    (SubnetConfig(0, (4, 4, 6, 3), (0.25,) * 17, (0, 0, 0, 0)), "depths[0]: stage 1 runs 1..3"),
    (SubnetConfig(0, (3, 4, 6, 3), (0.25,) * 15, (0, 0, 0, 0)), "16 active blocks need 16"),
    (SubnetConfig(3, (3, 4, 6, 3), (0.25,) * 16, (0, 0, 0, 0)), "stem_width"),
    (SubnetConfig(0, (3, 4, 6), (0.25,) * 13, (0, 0, 0)), "one per stage"),
])
def test_set_config_rejects_configs_that_do_not_fit(cfg, message):
    net = build_supernet("tiny", 10)
    with pytest.raises(SubnetConfigError) as err:
        net.set_config(cfg)
    assert message in str(err.value)
    assert net.config == max_config()


# -- sampling for progressive shrinking ----------------------------------------------------

def _skips(samples: list[SubnetConfig]) -> list[set[int]]:
    return [{n - cfg.depths[s] for cfg in samples} for s, n in enumerate(RESNET50_LAYERS)]


def test_sample_config_respects_the_indicators():
    rng = random.Random(0)
    depth1 = [sample_config(rng, 1, 1) for _ in range(200)]
    assert _skips(depth1) == [{0, 1}] * 4
    assert {cfg.stem_width for cfg in depth1} == {0}
    assert {w for cfg in depth1 for w in cfg.widths} == {0}
    assert {e for cfg in depth1 for e in cfg.expansions} == set(EXPANSION_CHOICES)
    assert all(len(cfg.expansions) == cfg.active_blocks for cfg in depth1)
    wide = [sample_config(rng, 5, 2) for _ in range(400)]
    # capped by each stage's skippable blocks (all but the first)
    assert _skips(wide) == [{0, 1, 2}, {0, 1, 2, 3}, {0, 1, 2, 3, 4, 5}, {0, 1, 2}]
    assert {w for cfg in wide for w in (cfg.stem_width, *cfg.widths)} == {0, 1}
    full = sample_config(rng, 0, 3, expansion_choices=(0.25,))
    assert full.depths == RESNET50_LAYERS and set(full.expansions) == {0.25}


def test_sample_config_rejects_bad_indicators():
    with pytest.raises(SubnetConfigError, match="width_indicator"):
        sample_config(random.Random(0), 1, 4)
    with pytest.raises(SubnetConfigError, match="expansion_choices"):
        sample_config(random.Random(0), 1, 1, expansion_choices=(0.35,))
