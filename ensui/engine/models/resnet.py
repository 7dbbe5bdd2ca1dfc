"""ResNet50 at both scales, and the BootstrapNAS sub-networks (family "resnet50_subnet").

A sub-network is built as ensui's elastic super-network (`nas.elastic_resnet`) cut to its
configuration by `extract`: a standalone network of ordinary layers, with the
sub-network's own parameter count (Table ii's B_0: 8.30 M at paper scale). Its weights
come from the trained super-network (the member's `subnet` job), so the initialisation
here only has to give the right shapes. `arch` names a Table ii row (`subnet`) or holds
the configuration itself (`config`, Table ii's format, e.g. a saved search point).

ResNet50 itself (`resnet50_net`, the DINO ResNet rows' backbone): paper scale is
torchvision `resnet50(weights=None, num_classes)`. Tiny scale: ResNet50 is ResNeXt with
cardinality 1 and base width 64, so it is the tiny ResNeXt of `resnext.py` with those
knobs (timm's ResNet, whose state_dict keys follow torchvision's): layers [3, 4, 6, 3]
and total stride 32 kept, planes halved (block outputs 128…1024), 3×3 stem conv, no
dropout.
"""

from torch import nn
from torchvision.models import resnet50

from .normalize import Normalized
from .registry import Scale, register_family
from .resnext import tiny_resnext

RESNET50_LAYERS = (3, 4, 6, 3)
MIN_WIDTH = 32  # Listing 1's elasticity.width.min_width


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
    from ensui.engine.nas.elastic_resnet import build_supernet, extract, pre_logits

    supernet = build_supernet(scale.value, num_classes, arch.get("min_width", MIN_WIDTH))
    return Normalized(extract(supernet, subnet_config(arch)), pre_logits)


def subnet_config(arch: dict):
    """The SubnetConfig of a `resnet50_subnet` arch: its `config`, else its Table ii row."""
    from ensui import paper
    from ensui.engine.nas.subnet_config import SubnetConfigError, parse_table_ii

    entry = arch.get("config")
    if entry is None:
        rows = {row["id"]: row for row in paper.table_ii()}
        if arch.get("subnet") not in rows:
            raise SubnetConfigError(f"subnet {arch.get('subnet')!r} is not a Table ii row; "
                                    f"known: {', '.join(rows)}")
        entry = rows[arch["subnet"]]
    return parse_table_ii(entry)
