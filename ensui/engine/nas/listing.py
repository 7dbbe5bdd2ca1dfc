"""Listing 1 (BootstrapNAS's progressive-shrinking and search settings), parsed and checked.

The JSON follows NNCF 2.x's `bootstrapNAS` config. `load_listing` turns it into frozen
dataclasses, and every bad entry raises `ListingError` naming its JSON path, e.g.
"bootstrapNAS.training.schedule.list_stage_descriptions[2].epochs: must be a positive
integer", which the CLI prints as one line.

Stage descriptions take NNCF's keys and defaults (depth_indicator 1, width_indicator 1,
reorg_weights and bn_adapt false, epochs_lr = epochs). `init_lr` is required: there is no
global learning rate to fall back on. `train_dims` draws from:

- "depth": stages skip up to `depth_indicator` trailing blocks;
- "width": the stem and stages draw from the first `width_indicator` multipliers, and the
  bottleneck expansions vary too, because NNCF's width elasticity covers every conv's
  output channels, bottleneck mids included;
- "expansion": only the bottleneck expansions vary (not an NNCF dim; OFA's expand ratio),
  for studying them apart from stage widths.

A dim not trained stays at its maximum, whatever its indicator says. The width multipliers
must be the super-network's (elastic_resnet cannot change them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from ensui.errors import EnsuiError

from .subnet_config import EXPANSION_CHOICES, FULL_EXPANSION, WIDTH_MULTIPLIERS

TRAIN_DIMS = ("depth", "width", "expansion")
STAGE_KEYS = {"train_dims", "epochs", "depth_indicator", "width_indicator", "reorg_weights",
              "bn_adapt", "init_lr", "epochs_lr"}
SEARCH_KEYS = {"algorithm", "num_evals", "population", "ref_acc"}
NNCF_BN_SAMPLES = 2000  # NNCF's default num_bn_adaptation_samples
ROOT = "bootstrapNAS"


class ListingError(EnsuiError):
    """A Listing 1 entry that cannot be used; the message starts with its JSON path."""


@dataclass(frozen=True)
class Stage:
    """One progressive-shrinking stage (NNCF's StageDescriptor)."""

    train_dims: tuple[str, ...]
    epochs: int
    init_lr: float
    epochs_lr: int
    depth_indicator: int = 1
    width_indicator: int = 1
    reorg_weights: bool = False
    bn_adapt: bool = False

    @property
    def sampled_depth_indicator(self) -> int:
        """Trailing blocks a stage may skip: 0 unless depth is trained."""
        return self.depth_indicator if "depth" in self.train_dims else 0

    @property
    def sampled_width_indicator(self) -> int:
        """Multipliers to draw from: only the full one unless width is trained."""
        return self.width_indicator if "width" in self.train_dims else 1

    @property
    def expansion_choices(self) -> tuple[float, ...]:
        """Bottleneck expansions to draw from; the full one unless width/expansion is trained."""
        if {"width", "expansion"} & set(self.train_dims):
            return EXPANSION_CHOICES
        return (FULL_EXPANSION,)


@dataclass(frozen=True)
class WidthElasticity:
    width_multipliers: tuple[float, ...] = WIDTH_MULTIPLIERS
    min_width: int = 32
    max_num_widths: int = len(WIDTH_MULTIPLIERS)
    width_step: int | None = None  # recorded: the multipliers, not steps, set the widths


@dataclass(frozen=True)
class ProgressiveShrinking:
    stages: tuple[Stage, ...]
    num_bn_adaptation_samples: int
    width: WidthElasticity
    progressivity_of_elasticity: tuple[str, ...] = ()

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)

    def first_epoch(self, stage_index: int) -> int:
        """Epochs of the stages before `stage_index`: where its epochs start, counted globally."""
        return sum(stage.epochs for stage in self.stages[:stage_index])


@dataclass(frozen=True)
class SearchSettings:
    algorithm: str
    num_evals: int
    population: int
    ref_acc: float | None = None  # percent, as NNCF's config writes it


@dataclass(frozen=True)
class Listing:
    training: ProgressiveShrinking
    search: SearchSettings


def _fail(path: str, message: str) -> ListingError:
    return ListingError(f"{path}: {message}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _block(parent: dict, key: str, path: str, required: bool = True) -> dict:
    where = f"{path}.{key}" if path else key
    if key not in parent:
        if required:
            raise _fail(where, "missing")
        return {}
    value = parent[key]
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, got {value!r}")
    return value


def _int(block: dict, key: str, path: str, default: int | None = None, least: int = 1) -> int:
    value = block.get(key, default)
    if value is None:
        raise _fail(f"{path}.{key}", "missing")
    if not _is_int(value) or value < least:
        word = "positive" if least == 1 else f">= {least}"
        raise _fail(f"{path}.{key}", f"must be a {word} integer, got {value!r}")
    return value


def _bool(block: dict, key: str, path: str) -> bool:
    value = block.get(key, False)
    if not isinstance(value, bool):
        raise _fail(f"{path}.{key}", f"must be true or false, got {value!r}")
    return value


def _positive_number(block: dict, key: str, path: str) -> float:
    value = block.get(key)
    if value is None:
        raise _fail(f"{path}.{key}", "missing")
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise _fail(f"{path}.{key}", f"must be a positive number, got {value!r}")
    return float(value)


def _dims(value, path: str, allowed) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, f"expected a non-empty list of {', '.join(allowed)}, got {value!r}")
    for i, dim in enumerate(value):
        if dim not in allowed:
            raise _fail(f"{path}[{i}]", f"unknown dim {dim!r}; known: {', '.join(allowed)}")
    return tuple(value)


def _unknown_keys(block: dict, known: set[str], path: str) -> None:
    extra = sorted(set(block) - known)
    if extra:
        raise _fail(f"{path}.{extra[0]}", f"unknown key; known: {', '.join(sorted(known))}")


def _stage(entry, path: str, width: WidthElasticity, available: tuple[str, ...]) -> Stage:
    if not isinstance(entry, dict):
        raise _fail(path, f"expected an object, got {entry!r}")
    _unknown_keys(entry, STAGE_KEYS, path)
    if "train_dims" not in entry:
        raise _fail(f"{path}.train_dims", "missing")
    dims = _dims(entry["train_dims"], f"{path}.train_dims", available)
    epochs = _int(entry, "epochs", path)
    most = min(width.max_num_widths, len(width.width_multipliers))
    width_indicator = _int(entry, "width_indicator", path, default=1)
    if width_indicator > most:
        raise _fail(f"{path}.width_indicator",
                    f"{width_indicator} exceeds the {most} width multipliers available")
    return Stage(train_dims=dims, epochs=epochs,
                 init_lr=_positive_number(entry, "init_lr", path),
                 epochs_lr=_int(entry, "epochs_lr", path, default=epochs),
                 depth_indicator=_int(entry, "depth_indicator", path, default=1, least=0),
                 width_indicator=width_indicator,
                 reorg_weights=_bool(entry, "reorg_weights", path),
                 bn_adapt=_bool(entry, "bn_adapt", path))


def _width(elasticity: dict, path: str) -> WidthElasticity:
    block = _block(elasticity, "width", path, required=False)
    path = f"{path}.width"
    multipliers = block.get("width_multipliers", list(WIDTH_MULTIPLIERS))
    if not isinstance(multipliers, list) or tuple(multipliers) != WIDTH_MULTIPLIERS:
        raise _fail(f"{path}.width_multipliers",
                    f"the super-network's multipliers are {list(WIDTH_MULTIPLIERS)}, "
                    f"got {multipliers!r}")
    step = block.get("width_step")
    if step is not None:
        step = _int(block, "width_step", path)
    return WidthElasticity(tuple(float(m) for m in multipliers),
                           _int(block, "min_width", path, default=32),
                           _int(block, "max_num_widths", path, default=len(multipliers)), step)


def _training(training: dict, path: str) -> ProgressiveShrinking:
    if training.get("algorithm", "progressive_shrinking") != "progressive_shrinking":
        raise _fail(f"{path}.algorithm",
                    f"only progressive_shrinking is supported, got {training['algorithm']!r}")
    elasticity = _block(training, "elasticity", path, required=False)
    available = TRAIN_DIMS
    if "available_elasticity_dims" in elasticity:
        available = _dims(elasticity["available_elasticity_dims"],
                          f"{path}.elasticity.available_elasticity_dims", TRAIN_DIMS)
    width = _width(elasticity, f"{path}.elasticity")
    order = ()
    if "progressivity_of_elasticity" in training:
        order = _dims(training["progressivity_of_elasticity"],
                      f"{path}.progressivity_of_elasticity", TRAIN_DIMS)
    bn = _block(training, "batchnorm_adaptation", path, required=False)
    bn_samples = _int(bn, "num_bn_adaptation_samples", f"{path}.batchnorm_adaptation",
                      default=NNCF_BN_SAMPLES)
    schedule = _block(training, "schedule", path)
    stages_path = f"{path}.schedule.list_stage_descriptions"
    entries = schedule.get("list_stage_descriptions")
    if not isinstance(entries, list) or not entries:
        raise _fail(stages_path, f"expected a non-empty list of stages, got {entries!r}")
    stages = tuple(_stage(entry, f"{stages_path}[{i}]", width, available)
                   for i, entry in enumerate(entries))
    return ProgressiveShrinking(stages, bn_samples, width, order)


def _search(search: dict, path: str) -> SearchSettings:
    _unknown_keys(search, SEARCH_KEYS, path)
    if search.get("algorithm") != "NSGA2":
        raise _fail(f"{path}.algorithm", f"only NSGA2 is supported, got "
                                         f"{search.get('algorithm')!r}")
    ref_acc = search.get("ref_acc")
    if ref_acc is not None:
        ref_acc = _positive_number(search, "ref_acc", path)
    return SearchSettings("NSGA2", _int(search, "num_evals", path),
                          _int(search, "population", path), ref_acc)


def parse_listing(config: dict) -> Listing:
    """Listing 1 from its JSON object; ListingError names the first bad entry."""
    if not isinstance(config, dict):
        raise _fail("(top level)", f"expected an object, got {config!r}")
    root = _block(config, ROOT, "")
    return Listing(_training(_block(root, "training", ROOT), f"{ROOT}.training"),
                   _search(_block(root, "search", ROOT), f"{ROOT}.search"))


def load_listing(source: str | Path | dict) -> Listing:
    """Listing 1 from a JSON file or an already loaded object.

    Errors from a file start with its name, then the JSON path of the bad entry.
    """
    if isinstance(source, dict):
        return parse_listing(source)
    path = Path(source)
    try:
        config = json.loads(path.read_text())
    except OSError as err:
        raise ListingError(f"{path}: cannot read ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise ListingError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None
    try:
        return parse_listing(config)
    except ListingError as err:
        raise ListingError(f"{path.name}: {err}") from None


def scaled(listing: Listing, epochs_scale: float | None = None,
           total_epochs: int | None = None) -> Listing:
    """Listing 1 with shorter stages, for tiny runs; give exactly one of the two arguments.

    Every stage's epochs and epochs_lr are multiplied by the same factor (total_epochs /
    the listing's total, when that is given) and rounded, but each stays at least 1 so no
    stage disappears; the total can therefore differ a little from total_epochs.
    Everything else is kept.
    """
    if (epochs_scale is None) == (total_epochs is None):
        raise ValueError("give exactly one of epochs_scale and total_epochs")
    factor = epochs_scale
    if total_epochs is not None:
        factor = total_epochs / listing.training.total_epochs
    if not factor > 0:
        raise ValueError(f"the epoch scale must be positive, got {factor}")

    def shrink(value: int) -> int:
        return max(1, round(value * factor))

    stages = tuple(replace(s, epochs=shrink(s.epochs), epochs_lr=shrink(s.epochs_lr))
                   for s in listing.training.stages)
    return replace(listing, training=replace(listing.training, stages=stages))
