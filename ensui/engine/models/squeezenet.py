"""SqueezeNet rows of Table i (family "squeezenet"), torchvision's SqueezeNet 1.1.

Paper scale: `squeezenet1_1(weights=None, num_classes, dropout)` (1.24 M parameters).

Tiny scale: the same layers — at 32 px it already trains an epoch of 1,400 images in
about a second on two CPU cores, so nothing needs scaling. Only the catalog's num_classes
changes the final 1×1 conv. At 32 px the last Fire modules see 1×1 maps.
One adaptation to short runs: the class scores pass through a ReLU, and with 1×1 maps a
class whose score hits 0 for every input gets no gradient again. With torchvision's
zero bias on the final conv, SGD with momentum 0.9 at the rows' lr 0.01 kills every
class within the first hundred steps on the embedded digits and the loss stays at
ln 10. A positive initial bias (0.5) keeps the scores alive until they learn.
"""

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import SqueezeNet, squeezenet1_1

from .normalize import Normalized
from .registry import Scale, register_family

TINY_FINAL_BIAS = 0.5


def squeezenet_pre_logits(net: SqueezeNet, x: Tensor) -> Tensor:
    """Globally averaged output of the last Fire module (512-D).

    SqueezeNet has no linear head: its classifier is a 1×1 conv, ReLU, then the average
    pool, so this is the last pooled representation before class scores, not one that a
    linear map turns into the logits.
    """
    return F.adaptive_avg_pool2d(net.features(x), 1).flatten(1)


@register_family("squeezenet")
def build_squeezenet(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    version = str(arch.get("version", "1.1"))
    if version != "1.1":
        raise ValueError(f"only SqueezeNet version 1.1 is in the catalog; got version {version!r}")
    net = squeezenet1_1(weights=None, num_classes=num_classes, dropout=arch["dropout"])
    if scale is Scale.TINY:
        nn.init.constant_(net.classifier[1].bias, TINY_FINAL_BIAS)
    return Normalized(net, squeezenet_pre_logits)
