"""ResNeXt rows of Table i (family "resnext"), built with timm's ResNet.

Paper scale: timm `ResNet(block=Bottleneck, layers, cardinality, base_width, drop_rate)`,
i.e. ResNeXt50-{cardinality}x{base_width}d with the 7×7 stride-2 stem and max-pool;
stage planes (64, 128, 256, 512), grouped 3×3 width `planes * base_width / 64 * cardinality`.

Tiny scale, for 32 px images:
- kept: Bottleneck blocks, the row's layer pattern, cardinality, base_width (timm's knob,
  relative to 64 planes), dropout before the classifier, the 64-channel stem output, the
  stem max-pool and the total stride 32 (at 32 px the stages see 8×8, 4×4, 2×2 and 1×1 maps).
- scaled: stage planes halved to (32, 64, 128, 256), so block outputs are 128…1024 and the
  grouped width is half the paper's (32x2: 32…256, 1 channel per group; 32x4: 64…512 and
  16x4: 32…256, 2 per group). That keeps the rows' width ratios, and the width stays a
  multiple of, and at least, the cardinality for every base_width ≥ 2. The 7×7 stem conv
  becomes 3×3 (same stride 2): a 7×7 kernel would cover a fifth of a 32 px image.
- why not a stride-1 stem (total stride 16, as CIFAR ResNets do): it quadruples the work
  and an epoch of 1,400 images took ~10 s instead of ~4 s on two CPU cores.
"""

from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from .normalize import Normalized
from .pre_logits import timm_pre_logits
from .registry import Scale, register_family

TINY_CHANNELS = (32, 64, 128, 256)
STEM_WIDTH = 64  # timm's single-conv stem always feeds 64 channels to the first stage


def paper_resnext(
    layers, cardinality: int, base_width: int, dropout: float, num_classes: int, **extra
) -> ResNet:
    """timm's ResNet with Bottleneck blocks; `extra` passes timm options (e.g. channels)."""
    return ResNet(
        block=Bottleneck,
        layers=tuple(layers),
        cardinality=cardinality,
        base_width=base_width,
        drop_rate=dropout,
        num_classes=num_classes,
        **extra,
    )


def tiny_resnext(
    layers, cardinality: int, base_width: int, dropout: float, num_classes: int
) -> ResNet:
    """The paper network at half the planes, with a 3×3 stem conv for 32 px images."""
    per_group = TINY_CHANNELS[0] * base_width // 64  # timm floors planes * base_width / 64
    if per_group < 1:
        raise ValueError(
            f"tiny ResNeXt needs base_width >= {64 // TINY_CHANNELS[0]} for at least one "
            f"channel per group; got base_width={base_width}"
        )
    net = paper_resnext(layers, cardinality, base_width, dropout, num_classes,
                        channels=TINY_CHANNELS)
    net.conv1 = nn.Conv2d(3, STEM_WIDTH, kernel_size=3, stride=2, padding=1, bias=False)
    # Initialised as timm initialises every conv of its ResNet.
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


@register_family("resnext")
def build_resnext(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    make = paper_resnext if scale is Scale.PAPER else tiny_resnext
    knobs = arch["layers"], arch["cardinality"], arch["base_width"], arch["dropout"]
    net = make(*knobs, num_classes)
    return Normalized(net, timm_pre_logits)
