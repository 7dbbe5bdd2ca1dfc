"""An elastic ResNet50 super-network in plain PyTorch (BootstrapNAS / Once-for-All style).

Its maximum configuration is torchvision's resnet50 (v1.5: stride on the 3×3 conv, a 1×1
conv + BN downsample opening each stage), with torchvision's module names, so a
torchvision (or timm) ResNet50 state_dict loads into it unchanged. The tiny scale mirrors
models/resnet.py's tiny ResNet50: a 3×3 stride-2 stem conv and halved planes.

A SubnetConfig (subnet_config.py) is applied by slicing weights in forward, as OFA's
dynamic layers do: a conv runs weight[:active_out, :channels_in], a BN the first channels
of its affine parameters and running statistics, fc the first input columns. Channel
counts of a configuration (`channel_plan`):

    stem, stage out = make_divisible(multiplier * full, 8)
    block mid       = make_divisible(expansion * active stage out, 8)

each at least `min_width` (Listing 1's elasticity.width.min_width) and at most full.
Prefix slices keep the most important channels once `reorganize_channels` has sorted them.
`extract` copies a configuration into a standalone network of ordinary layers, which
slices nothing per forward and can be trained, saved and wrapped on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from .subnet_config import (
    RESNET50_LAYERS,
    WIDTH_MULTIPLIERS,
    SubnetConfig,
    check_config,
    max_config,
)

MIN_WIDTH = 32  # Listing 1: elasticity.width.min_width
DIVISOR = 8


def make_divisible(value: float, divisor: int = DIVISOR, min_value: int | None = None) -> int:
    """OFA's rounding: the nearest multiple of `divisor`, at least `min_value` (default
    `divisor`), and one step up if rounding lost more than 10%."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class SupernetWidths:
    """Full channel counts of one scale; each block's output is 4 × its mid, as in ResNet50."""

    stem: int
    stem_kernel: int
    mids: tuple[int, ...]
    layers: tuple[int, ...] = RESNET50_LAYERS

    @property
    def outs(self) -> tuple[int, ...]:
        return tuple(4 * mid for mid in self.mids)


PAPER_WIDTHS = SupernetWidths(stem=64, stem_kernel=7, mids=(64, 128, 256, 512))
TINY_WIDTHS = SupernetWidths(stem=64, stem_kernel=3, mids=(32, 64, 128, 256))
SCALES = {"paper": PAPER_WIDTHS, "tiny": TINY_WIDTHS}


@dataclass(frozen=True)
class ChannelPlan:
    """Active channel counts of one configuration."""

    stem: int
    outs: tuple[int, ...]  # per stage
    mids: tuple[tuple[int, ...], ...]  # per stage, per active block


def channel_plan(widths: SupernetWidths, cfg: SubnetConfig, min_width: int = MIN_WIDTH
                 ) -> ChannelPlan:
    """The channels `cfg` activates; SubnetConfigError if it does not fit `widths.layers`."""
    check_config(cfg, widths.layers)

    def fit(value: float, full: int) -> int:
        return min(full, make_divisible(value, DIVISOR, min_width))

    stem = fit(WIDTH_MULTIPLIERS[cfg.stem_width] * widths.stem, widths.stem)
    outs = tuple(fit(WIDTH_MULTIPLIERS[w] * full, full) for w, full in zip(cfg.widths, widths.outs))
    expansions = iter(cfg.expansions)
    mids = tuple(tuple(fit(next(expansions) * out, full_mid) for _ in range(depth))
                 for depth, out, full_mid in zip(cfg.depths, outs, widths.mids))
    return ChannelPlan(stem, outs, mids)


class DynamicConv2d(nn.Conv2d):
    """A bias-free conv running its first `active_out` filters on the channels that arrive."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding=kernel_size // 2, bias=False)
        self.active_out = out_channels

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight[: self.active_out, : x.shape[1]]
        return F.conv2d(x, weight, None, self.stride, self.padding)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first channels of its parameters and running statistics.

    The slices are views, so train-mode updates land in the full buffers, and the running
    averages follow nn.BatchNorm2d (momentum None: cumulative average over batches).
    """

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, self._average_factor(), self.eps)

    def _average_factor(self) -> float:
        """nn.BatchNorm2d's running-average factor; counts the batch in train mode."""
        if not self.training:
            return 0.0
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum


class DynamicLinear(nn.Linear):
    """A linear layer reading the first input features that arrive."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5) around given layers, shared by elastic and plain nets."""

    def __init__(self, convs: Sequence[nn.Conv2d], bns: Sequence[nn.BatchNorm2d],
                 downsample: nn.Sequential | None):
        super().__init__()
        self.conv1, self.bn1 = convs[0], bns[0]
        self.conv2, self.bn2 = convs[1], bns[1]
        self.conv3, self.bn3 = convs[2], bns[2]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class _ResNet(nn.Module):
    """torchvision ResNet's layout (module names, forward) around given layers."""

    def __init__(self, conv1: nn.Conv2d, bn1: nn.BatchNorm2d,
                 stages: Sequence[Sequence[Bottleneck]], fc: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = conv1, bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for s, blocks in enumerate(stages, 1):
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{s}") for s in range(1, self.num_stages + 1)]

    def active_blocks(self, stage: int) -> Iterable[Bottleneck]:
        return self.stages()[stage]

    def pre_logits(self, x: Tensor) -> Tensor:
        """Pooled penultimate features (B, D) of normalized images."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s in range(self.num_stages):
            x = self.run_stage(s, x)
        return torch.flatten(self.avgpool(x), 1)

    def run_stage(self, stage: int, x: Tensor) -> Tensor:
        for block in self.active_blocks(stage):
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pre_logits(x))


class SubnetResNet(_ResNet):
    """A standalone sub-network of ordinary layers, as `extract` builds it."""

    def run_stage(self, stage: int, x: Tensor) -> Tensor:
        return self.stages()[stage](x)  # the stage module itself, so its hooks fire (Grad-CAM)


def _elastic_block(in_ch: int, mid: int, out: int, stride: int, first: bool) -> Bottleneck:
    convs = (DynamicConv2d(in_ch, mid, 1), DynamicConv2d(mid, mid, 3, stride),
             DynamicConv2d(mid, out, 1))
    bns = (DynamicBatchNorm2d(mid), DynamicBatchNorm2d(mid), DynamicBatchNorm2d(out))
    # Every stage's first block changes the width (and, after stage 1, the resolution).
    down = nn.Sequential(DynamicConv2d(in_ch, out, 1, stride), DynamicBatchNorm2d(out))
    return Bottleneck(convs, bns, down if first else None)


class ElasticResNet(_ResNet):
    """The super-network; `set_config` picks the sub-network that forward runs."""

    def __init__(self, widths: SupernetWidths, num_classes: int, min_width: int = MIN_WIDTH):
        stages, in_ch = [], widths.stem
        for s, (n, mid, out) in enumerate(zip(widths.layers, widths.mids, widths.outs)):
            stride = 1 if s == 0 else 2
            stages.append([_elastic_block(in_ch if i == 0 else out, mid, out,
                                          stride if i == 0 else 1, i == 0) for i in range(n)])
            in_ch = out
        fc = DynamicLinear(in_ch, num_classes) if num_classes else nn.Identity()
        super().__init__(DynamicConv2d(3, widths.stem, widths.stem_kernel, stride=2),
                         DynamicBatchNorm2d(widths.stem), stages, fc)
        self.widths = widths
        self.min_width = min_width
        for m in self.modules():  # torchvision's initialisation (BN and fc defaults agree)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.set_config(max_config(widths.layers))

    def channel_plan(self, cfg: SubnetConfig) -> ChannelPlan:
        return channel_plan(self.widths, cfg, self.min_width)

    def set_config(self, cfg: SubnetConfig) -> None:
        """Run the sub-network `cfg` from now on; SubnetConfigError if it does not fit."""
        plan = self.channel_plan(cfg)
        self.conv1.active_out = plan.stem
        for stage, out, mids in zip(self.stages(), plan.outs, plan.mids):
            for block, mid in zip(stage, mids):
                block.conv1.active_out = block.conv2.active_out = mid
                block.conv3.active_out = out
                if block.downsample is not None:
                    block.downsample[0].active_out = out
        self.config = cfg

    def active_blocks(self, stage: int) -> Iterable[Bottleneck]:
        return islice(self.stages()[stage], self.config.depths[stage])

    def reorganize_channels(self) -> None:
        """Sort channels by importance so that prefix slices keep the most important ones.

        BootstrapNAS's `reorg_weights`: a channel's importance is the L1 norm of the conv
        filters producing it, summed over every producer of a residual stream (each
        block's conv3 and the stage's downsample). Producers' outputs, their BNs and
        every consumer's inputs get the same permutation, so the full network computes
        the same function. Optimizer state is not permuted: reorganize where a
        progressive-shrinking stage starts with a fresh optimizer.
        """
        stages = self.stages()
        with torch.no_grad():
            for block in (b for stage in stages for b in stage):
                _sort_channels([(block.conv1, block.bn1)], [block.conv2])
                _sort_channels([(block.conv2, block.bn2)], [block.conv3])
            _sort_channels([(self.conv1, self.bn1)], _stage_inputs(stages[0]))
            for s, stage in enumerate(stages):
                following = _stage_inputs(stages[s + 1]) if s + 1 < len(stages) else [self.fc]
                producers = [(b.conv3, b.bn3) for b in stage]
                producers.append((stage[0].downsample[0], stage[0].downsample[1]))
                consumers = [b.conv1 for b in stage[1:]] + following
                weighted = [m for m in consumers if isinstance(m, nn.Linear | nn.Conv2d)]
                _sort_channels(producers, weighted)  # a headless net's fc has no weight


def _stage_inputs(stage: nn.Sequential) -> list[nn.Conv2d]:
    """The convs reading a stage's input: its first block's conv1 and downsample conv."""
    return [stage[0].conv1, stage[0].downsample[0]]


def _sort_channels(producers: list[tuple[nn.Conv2d, nn.BatchNorm2d]],
                   consumers: list[nn.Module]) -> None:
    importance = sum(conv.weight.abs().sum(dim=(1, 2, 3)) for conv, _ in producers)
    order = torch.sort(importance, descending=True, stable=True).indices
    for conv, bn in producers:
        for tensor in (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var):
            tensor.copy_(tensor.index_select(0, order))
    for module in consumers:
        module.weight.copy_(module.weight.index_select(1, order))


def build_supernet(scale: str, num_classes: int, min_width: int = MIN_WIDTH) -> ElasticResNet:
    """The super-network at "paper" or "tiny" scale; num_classes=0 leaves fc an Identity."""
    if str(scale) not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    return ElasticResNet(SCALES[str(scale)], num_classes, min_width)


def pre_logits(net: nn.Module, x: Tensor) -> Tensor:
    """Pooled features of a super-network or extracted sub-network, for `Normalized`."""
    return net.pre_logits(x)


def recalibrate_bn(net: nn.Module, batches: Iterable[Tensor]) -> None:
    """Re-estimate every BN's running statistics for the active configuration.

    A sub-network sees different activations than the super-network its statistics were
    gathered in, so they are reset and re-estimated as a cumulative average (momentum
    None) of train-mode passes over `batches`, without gradients. How many images to
    pass is the caller's choice: BootstrapNAS's `num_bn_adaptation_samples` (1500 in
    Listing 1). All BNs are reset, including channels and blocks the configuration does
    not use; to leave a super-network untouched, extract first and recalibrate the
    extracted module. The network is left in eval mode, ready to evaluate.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    try:
        with torch.no_grad():
            for x in batches:
                net(x)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        net.eval()


def _conv_slice(conv: nn.Conv2d, out: int, in_ch: int) -> nn.Conv2d:
    new = skip_init(nn.Conv2d, in_ch, out, conv.kernel_size, conv.stride, conv.padding,
                    bias=False, device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight.copy_(conv.weight[:out, :in_ch])
    return new


def _bn_slice(bn: nn.BatchNorm2d, c: int) -> nn.BatchNorm2d:
    new = skip_init(nn.BatchNorm2d, c, eps=bn.eps, momentum=bn.momentum,
                    device=bn.weight.device, dtype=bn.weight.dtype)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(bn, name)[:c])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _block_slice(block: Bottleneck, in_ch: int, mid: int, out: int) -> Bottleneck:
    convs = (_conv_slice(block.conv1, mid, in_ch), _conv_slice(block.conv2, mid, mid),
             _conv_slice(block.conv3, out, mid))
    bns = (_bn_slice(block.bn1, mid), _bn_slice(block.bn2, mid), _bn_slice(block.bn3, out))
    down = None
    if block.downsample is not None:
        down = nn.Sequential(_conv_slice(block.downsample[0], out, in_ch),
                             _bn_slice(block.downsample[1], out))
    return Bottleneck(convs, bns, down)


def _fc_slice(fc: nn.Module, in_features: int) -> nn.Module:
    if not isinstance(fc, nn.Linear):
        return nn.Identity()
    new = skip_init(nn.Linear, in_features, fc.out_features,
                    device=fc.weight.device, dtype=fc.weight.dtype)
    new.weight.copy_(fc.weight[:, :in_features])
    new.bias.copy_(fc.bias)
    return new


def extract(net: ElasticResNet, cfg: SubnetConfig) -> SubnetResNet:
    """Configuration `cfg` of `net` as a standalone network of ordinary layers.

    Weights and BN statistics are copies of the slices `net` would use, so it computes
    what `net.set_config(cfg)` computes and shares no storage with `net`. `net`'s own
    configuration is left as it was.
    """
    plan = net.channel_plan(cfg)
    with torch.no_grad():
        stages, in_ch = [], plan.stem
        for stage, out, mids in zip(net.stages(), plan.outs, plan.mids):
            blocks = []
            for block, mid in zip(stage, mids):
                blocks.append(_block_slice(block, in_ch, mid, out))
                in_ch = out
            stages.append(blocks)
        sub = SubnetResNet(_conv_slice(net.conv1, plan.stem, 3), _bn_slice(net.bn1, plan.stem),
                           stages, _fc_slice(net.fc, in_ch))
    return sub.train(net.training)
