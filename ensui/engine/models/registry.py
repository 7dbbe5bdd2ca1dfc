"""Registry of architecture families: a family name in a catalog row -> its builder.

Modelled on timm's registry: each family module decorates one builder with
`@register_family("name")`, and `factory.build_model` is the only caller.
"""

from collections.abc import Callable
from enum import StrEnum

from torch import nn


class Scale(StrEnum):
    """How large a built model is.

    PAPER is the published architecture; TINY keeps the family and its topology knobs but is
    sized for 32 px images so that tests and demos train in seconds on a CPU.
    """

    PAPER = "paper"
    TINY = "tiny"


Builder = Callable[[dict, Scale, int, int], nn.Module]

_BUILDERS: dict[str, Builder] = {}


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Register `fn(arch, scale, num_classes, image_size) -> nn.Module` under `name`."""

    def decorate(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"architecture family {name!r} is registered twice")
        _BUILDERS[name] = fn
        return fn

    return decorate


def families() -> list[str]:
    """Names of every registered family, sorted."""
    return sorted(_BUILDERS)


def builder_for(name: str) -> Builder:
    """The builder of family `name`; ValueError naming it when unknown."""
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture family {name!r}; known: {', '.join(families())}"
        ) from None
