"""MNASNet rows of Table i (family "mnasnet"), torchvision's MNASNet (B1 variant).

Paper scale: `MNASNet(alpha, dropout)`; alpha 1.0 is MNASNet 1.0 (4.4 M parameters).

Tiny scale, for 32 px images:
- kept: the whole B1 block layout (stem, depthwise-separable stage, six inverted-residual
  stacks with their kernels, expansions, repeats and strides), the 1280-wide final 1×1
  conv, dropout, and the total stride 32 (the last stage sees 1×1 at 32 px).
- scaled: the width multiplier, alpha / 2 (1.0 -> 0.5, i.e. MNASNet 0.5 layer widths;
  torchvision rounds them to multiples of 8), so rows differing in alpha still differ.
- adapted to short runs: batch-norm momentum 0.1 instead of torchvision's TensorFlow-style
  0.0003, whose running statistics need hundreds of thousands of steps to settle (after
  the few hundred of a tiny run, evaluation would use the initial statistics); and the
  classifier is initialised by fan-in. torchvision initialises it by fan-out, which makes
  its scale grow as 1/sqrt(num_classes): fine for 1000 classes, but with 10 the initial
  logits have a standard deviation near 10 and the recipe diverges.
"""

from torch import Tensor, nn
from torchvision.models import MNASNet

from .normalize import Normalized
from .registry import Scale, register_family

TINY_ALPHA_FACTOR = 0.5


def mnasnet_pre_logits(net: MNASNet, x: Tensor) -> Tensor:
    """MNASNet's forward without its classifier: globally averaged final features."""
    return net.layers(x).mean([2, 3])


@register_family("mnasnet")
def build_mnasnet(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    alpha = arch["alpha"] if scale is Scale.PAPER else arch["alpha"] * TINY_ALPHA_FACTOR
    net = MNASNet(alpha=alpha, num_classes=num_classes, dropout=arch["dropout"])
    if scale is Scale.TINY:
        _adapt_to_short_runs(net)
    return Normalized(net, mnasnet_pre_logits)


def _adapt_to_short_runs(net: MNASNet) -> None:
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    head = net.classifier[-1]
    nn.init.kaiming_uniform_(head.weight, mode="fan_in", nonlinearity="linear")
    nn.init.zeros_(head.bias)
