"""Where Grad-CAM looks in each family: the last spatial feature map before pooling.

CNNs: the last stage (`layer4` of ResNet/ResNeXt, `layers` of MNASNet, `features` of
SqueezeNet). ViTs (DeiT, DINO DeiT): the patch tokens entering the last block's attention
(`blocks[-1].norm1`); at the last block's output the CLS token no longer depends on
the patch tokens, so their gradients would be zero. Tokens (B, T, D) are shown to
captum as a (B, D, h, w) grid with the prefix tokens (CLS) set aside and put back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ensui.errors import EnsuiError


class _TokenGrid(nn.Module):
    """Identity on tokens, except that its output is the patch-token grid."""

    def __init__(self, prefix: int, grid: tuple[int, int]):
        super().__init__()
        self.prefix, self.grid = prefix, grid
        self.prefix_tokens: Tensor | None = None

    def forward(self, tokens: Tensor) -> Tensor:
        self.prefix_tokens = tokens[:, :self.prefix]
        batch, _, dim = tokens.shape
        return tokens[:, self.prefix:].transpose(1, 2).reshape(batch, dim, *self.grid)


class _GridTokens(nn.Module):
    """The inverse of `_TokenGrid`: the grid back to tokens, prefix tokens first."""

    def __init__(self, source: _TokenGrid):
        super().__init__()
        self._source = [source]  # a list, so the source is not registered twice

    def forward(self, grid: Tensor) -> Tensor:
        prefix = self._source[0].prefix_tokens
        return torch.cat([prefix, grid.flatten(2).transpose(1, 2)], 1)


def _inner(model: nn.Module) -> nn.Module:
    net = getattr(model, "net", model)          # the Normalized wrapper
    return getattr(net, "backbone", net)        # DINO: backbone + linear classifier


@contextmanager
def grad_cam_layer(model: nn.Module) -> Iterator[nn.Module]:
    """The module whose output Grad-CAM weighs, a (B, C, h, w) map, for the whole block."""
    net = _inner(model)
    if hasattr(net, "blocks") and hasattr(net, "patch_embed"):
        block = net.blocks[-1]
        norm = block.norm1
        tap = _TokenGrid(net.num_prefix_tokens, tuple(net.patch_embed.grid_size))
        block.norm1 = nn.Sequential(norm, tap, _GridTokens(tap))
        try:
            yield tap
        finally:
            block.norm1 = norm
        return
    for name in ("layer4", "layers", "features"):
        if isinstance(getattr(net, name, None), nn.Module):
            yield getattr(net, name)
            return
    raise EnsuiError(f"no Grad-CAM layer is known for {type(net).__name__}")
