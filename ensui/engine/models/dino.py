"""DINO rows of Table i (families "dino_deit", "dino_resnet50"): backbone + linear classifier.

The DINO self-supervised recipe (multi-crop, EMA teacher, DINO loss) lives in
`train/dino_pretrain.py` (methods.md §8); this module builds the network it trains and
the linear probe then completes: a headless backbone and a linear classifier on its
pooled features, as in DINO's linear evaluation (`freeze_backbone`).

- dino_deit: timm DeiT-tiny without head (`deit.vision_transformer`, same scales as the
  "deit" family); the classifier reads the final CLS token (after the last norm). DINO's
  own ViT-S linear evaluation concatenates the CLS tokens of the last 4 blocks instead;
  that choice belongs to the linear-probe recipe and is not made here.
- dino_resnet50: torchvision ResNet50 without `fc` (paper) or the tiny ResNet50 of
  `resnet.py` (tiny); the classifier reads the 2048-D (tiny: 1024-D) average-pooled features.
The classifier is initialised as DINO's `LinearClassifier`: weights N(0, 0.01), bias 0,
after a batch norm without affine parameters on the features.
"""

import torch
from torch import Tensor, nn

from .deit import vision_transformer
from .normalize import Normalized
from .registry import Scale, register_family
from .resnet import resnet50_net


class BackboneClassifier(nn.Module):
    """`classifier(backbone(x))`, with the backbone's pooled output as the features."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        # Standardises the frozen features for the probe (batch norm without affine, as
        # MAE's and MoCo v3's linear probes): a random or a DINO backbone's pooled
        # features can be large, and plain SGD on them diverges. At evaluation it is a
        # fixed affine map, so the classifier stays linear in the features.
        self.feature_norm = nn.BatchNorm1d(feature_dim, affine=False)
        self.classifier = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.classifier.bias)

        self.frozen = False

    def freeze_backbone(self) -> None:
        """The linear probe: the backbone keeps its weights and its batch-norm statistics
        (eval mode even while the classifier trains) and computes no gradients in training."""
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.frozen and self.training:  # attribution (eval) still needs input gradients
            with torch.no_grad():
                features = self.backbone(x)
        else:
            features = self.backbone(x)
        return self.classifier(self.feature_norm(features))


def _wrap(backbone: nn.Module, feature_dim: int, num_classes: int) -> Normalized:
    net = BackboneClassifier(backbone, feature_dim, num_classes)
    return Normalized(net, BackboneClassifier.features)


@register_family("dino_deit")
def build_dino_deit(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    # dynamic_img_size: DINO's local crops are smaller than the image size
    backbone = vision_transformer(arch, scale, num_classes=0, image_size=image_size,
                                  dynamic_img_size=True)
    return _wrap(backbone, backbone.num_features, num_classes)


@register_family("dino_resnet50")
def build_dino_resnet50(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    backbone = resnet50_net(scale, num_classes=0)
    return _wrap(backbone, _pooled_width(backbone), num_classes)


def _pooled_width(net: nn.Module) -> int:
    """Channels of the last stage's output, i.e. the width of the pooled features."""
    return net.layer4[-1].conv3.out_channels
