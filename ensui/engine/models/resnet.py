"""BootstrapNAS rows of Table i (family "resnet50_subnet"): for now, the full ResNet50.

Rows bootstrapNAS-B.0 and B.1 are subnetworks of a BootstrapNAS ResNet50 super-network,
configured by Table ii (`arch["subnet"]`). The elastic super-network and subnetwork
extraction are not built yet, so this family IGNORES the subnet configuration and returns
the super-network's maximal architecture, the full ResNet50. Its parameter count is
therefore ResNet50's (25.6 M), not the subnetwork's.

Paper scale: torchvision `resnet50(weights=None, num_classes)`.

Tiny scale: ResNet50 is ResNeXt with cardinality 1 and base width 64, so it is the tiny
ResNeXt of `resnext.py` with those knobs (timm's ResNet, whose state_dict keys follow
torchvision's): layers [3, 4, 6, 3] and total stride 32 kept,
planes halved (block outputs 128…1024), 3×3 stem conv, no dropout.
"""

from torch import nn
from torchvision.models import resnet50

from .normalize import Normalized
from .pre_logits import timm_pre_logits, torchvision_resnet_pre_logits
from .registry import Scale, register_family
from .resnext import tiny_resnext

RESNET50_LAYERS = (3, 4, 6, 3)


def resnet50_net(scale: Scale, num_classes: int) -> nn.Module:
    """Full ResNet50 at `scale`; num_classes=0 gives a headless backbone (`fc` is Identity)."""
    if scale is Scale.TINY:
        return tiny_resnext(RESNET50_LAYERS, 1, 64, dropout=0.0, num_classes=num_classes)
    if num_classes == 0:
        net = resnet50(weights=None)
        net.fc = nn.Identity()  # torchvision has no headless option
        return net
    return resnet50(weights=None, num_classes=num_classes)


@register_family("resnet50_subnet")
def build_resnet50_subnet(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    pre_logits = torchvision_resnet_pre_logits if scale is Scale.PAPER else timm_pre_logits
    return Normalized(resnet50_net(scale, num_classes), pre_logits)
