"""The one way to make a catalog model: `build_model`, plus weight loading and counting.

Every model returned is a `Normalized` wrapper: it takes [0, 1] pixels, exposes
`.features(x)` (penultimate pooled features) and `.net` (the inner architecture).
"""

import pickle
from pathlib import Path

import torch
from torch import nn

# Importing the family modules is what registers them.
from . import deit, dino, mnasnet, resnet, resnext, squeezenet  # noqa: F401
from .registry import Scale, builder_for

_SHOWN = 5  # keys listed per kind of mismatch in a load error


def build_model(
    arch: dict, scale: str, num_classes: int, image_size: int, seed: int | None = None
) -> nn.Module:
    """Build the catalog architecture `arch` (a row's `arch`, with its `family`) at `scale`.

    With `seed`, initialisation is deterministic and the global RNG is left untouched.
    """
    scale = _scale(scale)
    if "family" not in arch:
        raise ValueError(f"architecture has no 'family': {arch!r}")
    build = builder_for(arch["family"])
    if seed is None:
        return build(arch, scale, num_classes, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(arch, scale, num_classes, image_size)


def _scale(scale: str) -> Scale:
    try:
        return Scale(scale)
    except ValueError:
        raise ValueError(
            f"unknown model scale {scale!r}; expected one of {', '.join(s.value for s in Scale)}"
        ) from None


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (mean/std of the wrapper are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a user-supplied state_dict file into `model` (in place) and return the model.

    The file may hold a raw state_dict or a dict with it under "state_dict" or "model".
    Keys may be the wrapper's ("net.…", as `model.state_dict()` saves them) or the inner
    architecture's (as torchvision/timm save them). Anything that does not fit exactly
    raises ValueError naming the file.
    """
    state = _read_state_dict(Path(path))
    wrapped = all(key.startswith("net.") for key in state)
    target = model if wrapped or not hasattr(model, "net") else model.net
    problems = _mismatches(target.state_dict(), state)
    if problems:
        fit = f"weights in {path} do not fit {type(target).__name__}"
        raise ValueError(f"{fit}: {'; '.join(problems)}")
    target.load_state_dict(state)
    return model


def _read_state_dict(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"cannot read weights from {path}: {error}") from error
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path} holds no state_dict of tensors")
    return data


def _mismatches(expected: dict, found: dict) -> list[str]:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {tuple(found[k].shape)} in file vs {tuple(v.shape)} in model"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    kinds = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes))
    return [f"{name} ({len(items)}): {_few(items)}" for name, items in kinds if items]


def _few(items: list[str]) -> str:
    more = f", … {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more
