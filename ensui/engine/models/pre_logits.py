"""Penultimate pooled-feature taps shared by several families (see `Normalized.features`)."""

import torch
from torch import Tensor, nn


def timm_pre_logits(net: nn.Module, x: Tensor) -> Tensor:
    """timm's own tap: pooled features just before the classifier."""
    return net.forward_head(net.forward_features(x), pre_logits=True)


def torchvision_resnet_pre_logits(net: nn.Module, x: Tensor) -> Tensor:
    """torchvision ResNet's forward without its final `fc`."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)
