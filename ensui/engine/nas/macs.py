"""Size and cost of a network: parameters, and multiply-accumulates of one image.

MACs count the weights' multiply-accumulates of convs and linear layers, the usual
"FLOPs" of NAS papers (BN, activations, pooling and bias additions are left out). They
are measured from the shapes a forward pass meets, so a super-network counts only its
active configuration: skipped blocks never run and sliced convs report their slices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ensui.engine.models.factory import count_parameters  # noqa: F401  (the one count)


def _conv_macs(conv: nn.Conv2d, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    per_output = inputs[0].shape[1] // conv.groups * math.prod(conv.kernel_size)
    return output.numel() * per_output


def _linear_macs(linear: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    return output.numel() * inputs[0].shape[-1]


def _counter(module: nn.Module, total: list[int]):
    """A forward hook adding `module`'s MACs to total[0], or None for other layers."""
    if isinstance(module, nn.Conv2d):
        count = _conv_macs
    elif isinstance(module, nn.Linear):
        count = _linear_macs
    else:
        return None

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        total[0] += count(mod, inputs, output)

    return hook


def count_macs(module: nn.Module, image_size: int, channels: int = 3) -> int:
    """MACs of `module` on one `channels` × `image_size`² image, in eval mode."""
    total = [0]
    hooks = [(m, _counter(m, total)) for m in module.modules()]
    handles = [m.register_forward_hook(hook) for m, hook in hooks if hook is not None]
    first = next(module.parameters())
    was_training = module.training
    module.eval()  # train mode would move BN statistics
    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, image_size, image_size,
                               device=first.device, dtype=first.dtype))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return total[0]
