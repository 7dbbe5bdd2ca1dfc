"""Sub-network configurations of the elastic ResNet50, and Table ii's Once-for-All encoding.

A `SubnetConfig` says which part of the super-network runs: per stage how many leading
blocks are active (trailing blocks are skipped; a stage's first block, which changes the
resolution and width, always runs), per active block its bottleneck expansion, and a
width-multiplier index into WIDTH_MULTIPLIERS for the stem and for each stage.

Table ii rows use Once-for-All's encoding of OFA's ResNet50-D (base depths 2, 2, 4, 2, a
three-conv stem). Mapped onto this torchvision-layout ResNet50 (layers 3, 4, 6, 3) by
`parse_table_ii` as follows:

- `depth`, 5 entries. d[0] is OFA's flag for skipping the middle conv of its three-conv
  stem; this stem is torchvision's single conv, with nothing to skip, so d[0] must be 0 or
  1 and is kept in `stem_skip` but changes nothing. d[1:] are extra blocks over the base
  depths: stage s runs base[s] + d[s] blocks, so d[s] ranges over 0..(layers[s] - base[s]),
  i.e. 0..1, 0..2, 0..2, 0..1. [0, 0, 0, 0, 1] gives stages of 2, 2, 4, 3 blocks.
- `expansion`: the paper's lists have 12 entries while the active blocks number 10 to 16,
  so entries map to the ACTIVE blocks in order (stage 1's blocks first); the list needs at
  least one entry per active block and at most one per block of the network (16); the
  trailing surplus is kept in `unused_expansion` (B_0 has 11 active blocks, so its 12th
  entry is unused). Values are OFA expand ratios relative to the block output, mid =
  make_divisible(e * out, 8), and ResNet50's full bottleneck is out / 4, so 0 < e <= 0.25
  (OFA's 0.35 would need more mid channels than the super-network has).
- `width`, 6 entries, indices into WIDTH_MULTIPLIERS = [1, 0.8, 0.6]. w[0] and w[1] are
  OFA's stem widths: w[0] its inner stem convs, w[1] its stem output, which feeds stage 1.
  This stem has one conv, producing that output, so the stem uses w[1]; w[0] is checked
  and kept in `stem_input_width` but changes nothing. w[2:] are the four stages.

Every rule breach raises `SubnetConfigError` naming the entry, e.g. "depth[2]: 3 blocks
more than stage 2's base 2 exceeds its 4 blocks".
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ensui.errors import EnsuiError

RESNET50_LAYERS = (3, 4, 6, 3)
OFA_BASE_DEPTHS = (2, 2, 4, 2)
WIDTH_MULTIPLIERS = (1.0, 0.8, 0.6)
FULL_EXPANSION = 0.25  # mid = out / 4: ResNet50's bottleneck
EXPANSION_CHOICES = (0.2, 0.25)  # OFA ResNet50's ratios that fit inside the bottleneck
TABLE_II_DEPTH_LEN = 5
TABLE_II_WIDTH_LEN = 6


class SubnetConfigError(EnsuiError):
    """A sub-network configuration that does not fit the super-network; names the entry."""


@dataclass(frozen=True)
class SubnetConfig:
    """Which part of the super-network runs. Indices count from 0 (full width)."""

    stem_width: int
    depths: tuple[int, ...]
    expansions: tuple[float, ...]  # one per active block, stage 1's blocks first
    widths: tuple[int, ...]
    stem_skip: int = 0  # Table ii's d[0]: recorded only (see module docstring)
    stem_input_width: int = 0  # Table ii's w[0]: recorded only
    unused_expansion: tuple[float, ...] = ()  # Table ii entries beyond the active blocks

    def __post_init__(self) -> None:
        # Tuples keep configs hashable and equal whatever sequence type built them.
        for name in ("depths", "expansions", "widths", "unused_expansion"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def active_blocks(self) -> int:
        return sum(self.depths)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_width_index(name: str, value) -> None:
    if not _is_int(value) or not 0 <= value < len(WIDTH_MULTIPLIERS):
        raise SubnetConfigError(
            f"{name}: {value!r} is not a width index; the multipliers are "
            f"{list(WIDTH_MULTIPLIERS)} (indices 0..{len(WIDTH_MULTIPLIERS) - 1})")


def _check_expansion(name: str, value) -> None:
    if not _is_number(value) or not 0 < value <= FULL_EXPANSION:
        raise SubnetConfigError(
            f"{name}: expansion {value!r} is outside (0, {FULL_EXPANSION}]; "
            f"{FULL_EXPANSION} is ResNet50's full bottleneck (mid = out / 4)")


def check_config(cfg: SubnetConfig, layers: Sequence[int] = RESNET50_LAYERS) -> None:
    """Raise SubnetConfigError unless `cfg` selects a sub-network of `layers` blocks."""
    if len(cfg.depths) != len(layers) or len(cfg.widths) != len(layers):
        raise SubnetConfigError(
            f"depths and widths need {len(layers)} entries (one per stage), got "
            f"{len(cfg.depths)} and {len(cfg.widths)}")
    for s, (depth, most) in enumerate(zip(cfg.depths, layers)):
        if not _is_int(depth) or not 1 <= depth <= most:
            raise SubnetConfigError(
                f"depths[{s}]: stage {s + 1} runs 1..{most} blocks, got {depth!r}")
    _check_width_index("stem_width", cfg.stem_width)
    for s, index in enumerate(cfg.widths):
        _check_width_index(f"widths[{s}]", index)
    if len(cfg.expansions) != cfg.active_blocks:
        raise SubnetConfigError(
            f"expansions: {cfg.active_blocks} active blocks need {cfg.active_blocks} "
            f"entries, got {len(cfg.expansions)}")
    for i, value in enumerate(cfg.expansions):
        _check_expansion(f"expansions[{i}]", value)


def _field(entry: dict, name: str, length: int | None = None) -> list:
    if name not in entry:
        raise SubnetConfigError(f"{name}: missing")
    value = entry[name]
    if not isinstance(value, list | tuple):
        raise SubnetConfigError(f"{name}: expected a list, got {value!r}")
    if length is not None and len(value) != length:
        raise SubnetConfigError(f"{name}: expected {length} entries, got {len(value)}")
    return list(value)


def _table_depths(depth: list, layers: Sequence[int]) -> tuple[int, ...]:
    if not _is_int(depth[0]) or depth[0] not in (0, 1):
        raise SubnetConfigError(f"depth[0]: the stem-skip flag must be 0 or 1, got {depth[0]!r}")
    depths = []
    for s, (extra, base, most) in enumerate(zip(depth[1:], OFA_BASE_DEPTHS, layers), 1):
        if not _is_int(extra) or extra < 0:
            raise SubnetConfigError(f"depth[{s}]: expected a count of extra blocks >= 0, "
                                    f"got {extra!r}")
        if base + extra > most:
            raise SubnetConfigError(
                f"depth[{s}]: {extra} blocks more than stage {s}'s base {base} exceeds "
                f"its {most} blocks")
        depths.append(base + extra)
    return tuple(depths)


def _table_expansions(expansion: list, active: int, total: int) -> list[float]:
    if not active <= len(expansion) <= total:
        raise SubnetConfigError(
            f"expansion: expected {active} to {total} entries (one per active block, at "
            f"most one per block), got {len(expansion)}")
    for i, value in enumerate(expansion):
        _check_expansion(f"expansion[{i}]", value)
    return [float(value) for value in expansion]


def parse_table_ii(entry: dict, layers: Sequence[int] = RESNET50_LAYERS) -> SubnetConfig:
    """A Table ii row ({depth, expansion, width, ...}) as a SubnetConfig of `layers`.

    The rules are the module docstring's; a breach raises SubnetConfigError whose message
    starts with the row's id when it has one.
    """
    try:
        return _parse(entry, tuple(layers))
    except SubnetConfigError as err:
        if "id" in entry:
            raise SubnetConfigError(f"{entry['id']}: {err}") from None
        raise


def _parse(entry: dict, layers: tuple[int, ...]) -> SubnetConfig:
    if len(layers) != len(OFA_BASE_DEPTHS):
        raise SubnetConfigError(f"layers: Table ii describes {len(OFA_BASE_DEPTHS)} stages, "
                                f"got {len(layers)}")
    depth = _field(entry, "depth", TABLE_II_DEPTH_LEN)
    width = _field(entry, "width", TABLE_II_WIDTH_LEN)
    depths = _table_depths(depth, layers)
    expansion = _table_expansions(_field(entry, "expansion"), sum(depths), sum(layers))
    for i, index in enumerate(width):
        _check_width_index(f"width[{i}]", index)
    return SubnetConfig(
        stem_width=width[1], depths=depths, expansions=expansion[:sum(depths)],
        widths=width[2:], stem_skip=depth[0], stem_input_width=width[0],
        unused_expansion=expansion[sum(depths):])


def to_table_ii(cfg: SubnetConfig) -> dict:
    """`cfg` in Table ii's encoding, so that parse_table_ii gives `cfg` back.

    The expansion list is the active blocks' entries followed by `unused_expansion`, not
    padded to the paper's 12. Depths below OFA's base depths cannot be written.
    """
    extra = []
    for s, (depth, base) in enumerate(zip(cfg.depths, OFA_BASE_DEPTHS), 1):
        if depth < base:
            raise SubnetConfigError(f"depths[{s - 1}]: stage {s}'s {depth} blocks are below "
                                    f"OFA's base depth {base}; Table ii cannot express them")
        extra.append(depth - base)
    return {
        "depth": [cfg.stem_skip, *extra],
        "expansion": [*cfg.expansions, *cfg.unused_expansion],
        "width": [cfg.stem_input_width, cfg.stem_width, *cfg.widths],
    }


def config_key(cfg: SubnetConfig) -> str:
    """A stable string naming the network `cfg` builds.

    Only what changes the network enters the key, so configs that differ in the recorded
    Table ii fields (stem_skip, stem_input_width, unused_expansion) share one.
    """
    def join(values) -> str:
        return "-".join(f"{v:g}" for v in values)

    return (f"s{cfg.stem_width}_d{join(cfg.depths)}_w{join(cfg.widths)}"
            f"_e{join(cfg.expansions)}")


def max_config(layers: Sequence[int] = RESNET50_LAYERS) -> SubnetConfig:
    """Every block, full width, full bottleneck: the whole super-network."""
    return SubnetConfig(0, tuple(layers), (FULL_EXPANSION,) * sum(layers), (0,) * len(layers))


def min_config(layers: Sequence[int] = RESNET50_LAYERS,
               expansion_choices: Sequence[float] = EXPANSION_CHOICES) -> SubnetConfig:
    """One block per stage, the narrowest multiplier and the smallest expansion."""
    narrowest = len(WIDTH_MULTIPLIERS) - 1
    return SubnetConfig(narrowest, (1,) * len(layers), (min(expansion_choices),) * len(layers),
                        (narrowest,) * len(layers))


def sample_config(rng: random.Random, depth_indicator: int, width_indicator: int,
                  layers: Sequence[int] = RESNET50_LAYERS,
                  expansion_choices: Sequence[float] = EXPANSION_CHOICES) -> SubnetConfig:
    """A random sub-network for a progressive-shrinking stage (Listing 1).

    `depth_indicator` k: each stage skips 0..k trailing blocks, capped by its skippable
    blocks (all but the first). `width_indicator` n: the stem and each stage draw from the
    first n multipliers. Expansions are drawn from `expansion_choices`; pass
    (FULL_EXPANSION,) for stages that do not train width.
    """
    if depth_indicator < 0 or not 1 <= width_indicator <= len(WIDTH_MULTIPLIERS):
        raise SubnetConfigError(
            f"indicators: depth_indicator must be >= 0 and width_indicator 1.."
            f"{len(WIDTH_MULTIPLIERS)}, got {depth_indicator} and {width_indicator}")
    for i, value in enumerate(expansion_choices):
        _check_expansion(f"expansion_choices[{i}]", value)
    depths = tuple(n - rng.randint(0, min(depth_indicator, n - 1)) for n in layers)
    expansions = tuple(rng.choice(expansion_choices) for _ in range(sum(depths)))
    widths = tuple(rng.randrange(width_indicator) for _ in layers)
    return SubnetConfig(rng.randrange(width_indicator), depths, expansions, widths)
