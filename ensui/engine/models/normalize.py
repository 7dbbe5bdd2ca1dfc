"""The wrapper every built model wears: [0, 1] pixels in, ImageNet normalization inside.

Normalizing inside the model means every ensemble member sees the same input space, so a
dataset loader, a corruption or an attribution method never needs to know which member
it is feeding.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PreLogits = Callable[[nn.Module, Tensor], Tensor]


class Normalized(nn.Module):
    """Normalize (B, 3, H, W) pixels in [0, 1], then run `net`.

    `pre_logits(net, x)` returns the penultimate pooled features (B, D) of `net` for
    normalized `x`; it is a module-level function (not a lambda) so models stay picklable.
    """

    def __init__(self, net: nn.Module, pre_logits: PreLogits):
        super().__init__()
        self.net = net
        self._pre_logits = pre_logits
        # Not persistent: constants, so checkpoints hold only the inner net's weights
        # (keys "net.…") and an inner-net state_dict from elsewhere maps onto them directly.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate pooled (pre-logit) features (B, D), the taps of activation CKA."""
        return self._pre_logits(self.net, self.normalize(x))
