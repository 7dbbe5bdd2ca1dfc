"""BootstrapNAS through NNCF 2.19.0: progressive shrinking, NSGA-II search, and the mapping
of NNCF's sub-networks onto ensui's `SubnetConfig`.

Every nncf import lives in this module and happens inside functions, so importing it needs
no nncf; calling a function that needs nncf without it raises `NncfUnavailable` naming the
extra to install. nncf 2.19.0 is the last release with BootstrapNAS (methods.md §9). It
traces torch models only with `NNCF_TORCH_LEGACY_TRACING=1` set before `nncf.torch` is
imported (without it the traced graph is silently empty), which `_nncf()` does.

NNCF's sub-network config is `{depth: [skipped block ids], width: {group id: channels}}`
(keys are NNCF's ElasticityDim or their names). On a torchvision-layout ResNet50 (ensui's
tiny timm ResNet50 or torchvision's resnet50) NNCF finds 12 skippable blocks (every block
but a stage's first) and 37 width groups: the stem conv, one group per stage for the
residual stream (every conv3 and the downsample conv of the stage), and two per block
(conv1's and conv2's outputs, the bottleneck mids). `NncfLayout` records which is which,
read from NNCF's node names. The mapping onto ensui's Table ii / Once-for-All convention:

- depths: stage s runs layers[s] minus its skipped blocks (= OFA's base depth plus the
  active extra blocks; `to_table_ii` writes the extra blocks). NNCF only skips a stage's
  trailing blocks (its progressive-shrinking rule), as ensui does; a config skipping any
  other block raises SubnetConfigError.
- widths: the index of the WIDTH_MULTIPLIERS entry nearest active / full channels of the
  stage's residual-stream group; stem_width likewise from the stem conv. NNCF floors
  multiplier × full to a multiple of 8 (at least min_width), so "0.8" of 128 channels is
  96 (0.75) and "0.6" is 72 (0.5625); nearest maps them back to 0.8 and 0.6 (a tie, at
  exactly 0.9 or 0.7, goes to the wider multiplier).
- expansions, per active block: the EXPANSION_CHOICES value nearest FULL_EXPANSION × m
  (ties to the larger), where m = active / full channels of the wider of the block's two
  mid groups: a full mid gives 0.25; NNCF's 0.8 and 0.6 mids give 0.2 (0.6 has no ensui
  counterpart, 0.15 is not an ensui expansion). A block whose mid groups cannot vary
  (full width at or below min_width, e.g. the tiny scale's 32-channel stage-1 mids) takes
  m = its stage's multiplier, so that NNCF's maximum and minimum sub-networks map to
  ensui's.

What cannot be represented, and is lost in the mapping:

- NNCF sizes a mid independently of its stage (mid = m × full mid); ensui derives it
  from the expansion and the ACTIVE stage width (make_divisible(e × active out)). The
  mapped config is the one whose per-group choices match NNCF's, not one with identical
  channel counts: e.g. NNCF's minimum (all groups at 0.6) maps to expansion 0.2, whose
  ensui mids are 0.2 × 0.6 × out = 0.48 full mids, where NNCF's are 0.6.
- conv1 and conv2 of a block get one expansion (the wider wins); NNCF can shrink them
  apart.
- Widths are rounded to the nearest multiplier, mids to 0.2 or 0.25.
- Table ii's recorded fields (stem_skip, stem_input_width, unused_expansion) stay at
  their defaults: NNCF has nothing for them.

`search` rows therefore keep NNCF's exact config too (`nncf_config`). `to_nncf_config`
goes the other way (stage multiplier index → the nearest NNCF width, expansion e → the
NNCF mid width nearest e / FULL_EXPANSION × full mid), so that ensui configs can be
activated in an NNCF super-network.

Other limits of nncf 2.19.0: its trainer is reachable only through the private
`EpochBasedTrainingAlgorithm._training_ctrl`, and the groups' and blocks' node names only
through private attributes of its width and depth handlers; sub-networks export only as
ONNX (not done here); `visualize_search_progression` fails with matplotlib 3.11 (not
called).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import random
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ensui.errors import EnsuiError

from .listing import load_listing, scaled
from .subnet_config import (
    EXPANSION_CHOICES,
    FULL_EXPANSION,
    WIDTH_MULTIPLIERS,
    SubnetConfig,
    SubnetConfigError,
    check_config,
)

NNCF_VERSION = "2.19.0"
INSTALL_HINT = "pip install -e '.[nncf]'"
LEGACY_TRACING = "NNCF_TORCH_LEGACY_TRACING"
DEPTH, WIDTH = "depth", "width"
NNCF_DIMS = (DEPTH, WIDTH)
DEFAULT_PARAMS = {"momentum": 0.9, "weight_decay": 0.0}


class NncfUnavailable(EnsuiError):
    """nncf (with BootstrapNAS) is not installed, or cannot trace models."""


# ---------------------------------------------------------------------------- nncf import

def available() -> bool:
    """Whether nncf can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("nncf") is not None
    except (ImportError, ValueError):
        return False


def _enable_legacy_tracing() -> None:
    if os.environ.get(LEGACY_TRACING, "").lower() in ("1", "on", "true"):
        return
    if "nncf.torch" in sys.modules:  # patched torch at import: too late to switch
        raise NncfUnavailable(
            f"nncf.torch was imported before {LEGACY_TRACING}=1 was set, so NNCF would trace "
            f"empty graphs; set {LEGACY_TRACING}=1 in the environment before starting")
    os.environ[LEGACY_TRACING] = "1"


def _nncf() -> SimpleNamespace:
    """The nncf names this module uses; NncfUnavailable when nncf or BootstrapNAS is missing."""
    if not available():
        raise NncfUnavailable(f"the NNCF backend needs nncf=={NNCF_VERSION}, which is not "
                              f"installed: {INSTALL_HINT}")
    _enable_legacy_tracing()
    try:
        from nncf import NNCFConfig
        from nncf.experimental.torch.nas.bootstrapNAS import BaseSearchAlgorithm
        from nncf.experimental.torch.nas.bootstrapNAS.elasticity.elasticity_dim import (
            ElasticityDim,
        )
        from nncf.experimental.torch.nas.bootstrapNAS.training.training_algorithm import (
            EpochBasedTrainingAlgorithm,
        )
        from nncf.torch.initialization import register_default_init_args
        from nncf.torch.model_creation import create_nncf_network
    except ImportError as err:  # nncf >= 3 removed BootstrapNAS
        raise NncfUnavailable(f"the NNCF backend needs nncf=={NNCF_VERSION} with BootstrapNAS "
                              f"({err}): {INSTALL_HINT}") from None
    return SimpleNamespace(NNCFConfig=NNCFConfig, BaseSearchAlgorithm=BaseSearchAlgorithm,
                           ElasticityDim=ElasticityDim,
                           EpochBasedTrainingAlgorithm=EpochBasedTrainingAlgorithm,
                           register_default_init_args=register_default_init_args,
                           create_nncf_network=create_nncf_network)


# ------------------------------------------------------------------------------ NNCF config

def _check_dims(listing_json: dict) -> None:
    """ensui's listing allows an "expansion" dim that NNCF does not have."""
    listing = load_listing(listing_json)
    for i, stage in enumerate(listing.training.stages):
        if not set(stage.train_dims) <= set(NNCF_DIMS):
            raise EnsuiError(f"bootstrapNAS.training.schedule.list_stage_descriptions[{i}]."
                             f"train_dims: NNCF trains only {', '.join(NNCF_DIMS)}, got "
                             f"{list(stage.train_dims)}")


def nncf_config(listing_json: dict, image_size: int, batch_size: int, log_dir, device) -> dict:
    """An NNCFConfig dict: Listing 1's bootstrapNAS section as given, plus the input shape,
    log_dir and device NNCF needs. ListingError/EnsuiError for a listing NNCF cannot run."""
    _check_dims(listing_json)
    return {
        "input_info": {"sample_size": [batch_size, 3, image_size, image_size]},
        "log_dir": str(log_dir),
        "device": str(device),
        "bootstrapNAS": copy.deepcopy(listing_json["bootstrapNAS"]),
    }


def _stage_list(listing_json: dict) -> list[dict]:
    return listing_json["bootstrapNAS"]["training"]["schedule"]["list_stage_descriptions"]


def _apply_params(listing_json: dict, params: Mapping) -> dict:
    """Listing 1 with params' overrides: "lr" replaces every stage's init_lr,
    "total_epochs" shortens the stages as listing.scaled does."""
    out = copy.deepcopy(listing_json)
    stages = _stage_list(out)
    if params.get("total_epochs") is not None:
        short = scaled(load_listing(listing_json), total_epochs=params["total_epochs"])
        for entry, stage in zip(stages, short.training.stages):
            entry["epochs"], entry["epochs_lr"] = stage.epochs, stage.epochs_lr
    if params.get("lr") is not None:
        for entry in stages:
            entry["init_lr"] = float(params["lr"])
    return out


# --------------------------------------------------------------------------------- layout

_BLOCK_CONV = re.compile(r"\[layer(\d+)\]/[^/]*\[(\d+)\]/(?:NNCFConv2d\[(conv\d)\]|"
                         r"Sequential\[downsample\])")
_BLOCK = re.compile(r"\[layer(\d+)\]/[^/]*\[(\d+)\]/")


@dataclass(frozen=True)
class NncfLayout:
    """Where ensui's choices live in NNCF's elastic ResNet50. Stages and blocks count from 0."""

    layers: tuple[int, ...]
    depth_blocks: tuple[tuple[int, int], ...]  # NNCF block id -> (stage, block)
    stem_group: int
    out_groups: tuple[int, ...]  # per stage: the residual stream's group
    mid_groups: Mapping[tuple[int, int], tuple[int, ...]]  # (stage, block) -> conv1's, conv2's
    group_widths: Mapping[int, tuple[int, ...]]  # group id -> NNCF's widths, full first

    def full(self, group: int) -> int:
        return self.group_widths[group][0]

    def pinned(self, group: int) -> bool:
        """A group NNCF cannot narrow (full width at or below min_width)."""
        return len(self.group_widths[group]) == 1


def _role(node_name: str) -> tuple:
    match = _BLOCK_CONV.search(node_name)
    if match:
        stage, block, conv = int(match[1]) - 1, int(match[2]), match[3]
        return ("mid", stage, block, conv) if conv in ("conv1", "conv2") else ("out", stage)
    if "NNCFConv2d[conv1]" in node_name:
        return ("stem",)
    raise EnsuiError(f"NNCF width group node {node_name!r} is not part of a torchvision-layout "
                     f"ResNet50")


def _group_roles(width_handler) -> dict[int, tuple[tuple, tuple[int, ...]]]:
    """group id -> (role, widths). Reads NNCF's private clustering: nothing public names it."""
    roles = {}
    for cluster in width_handler._pruned_module_groups_info.get_all_clusters():
        kinds = {_role(e.node_name) for e in cluster.elements}
        kinds = {k[:2] if k[0] == "out" else k for k in kinds}
        if len(kinds) != 1:
            raise EnsuiError(f"NNCF width group {cluster.id} mixes {sorted(kinds)}; not a "
                             f"torchvision-layout ResNet50")
        roles[cluster.id] = (kinds.pop(), tuple(cluster.elements[0].elastic_op.width_list))
    return roles


def _depth_blocks(depth_handler) -> tuple[tuple[int, int], ...]:
    blocks = []
    for block in depth_handler._tracing_context.skipped_blocks:
        match = _BLOCK.search(block.end_node_name)
        if not match or int(match[2]) == 0:
            raise EnsuiError(f"NNCF skippable block ending at {block.end_node_name!r} is not a "
                             f"non-first ResNet50 bottleneck")
        blocks.append((int(match[1]) - 1, int(match[2])))
    return tuple(blocks)


def nncf_layout(handler) -> NncfLayout:
    """The layout of an NNCF MultiElasticityHandler built on a ResNet50."""
    roles = _group_roles(handler.width_handler)
    mids, outs, stems = {}, {}, []
    for group, (role, _) in roles.items():
        if role[0] == "stem":
            stems.append(group)
        elif role[0] == "out":
            outs[role[1]] = group
        else:
            mids.setdefault(role[1:3], {})[role[3]] = group
    stages = 1 + max(stage for stage, _ in mids)
    layers = tuple(1 + max(b for s, b in mids if s == stage) for stage in range(stages))
    if len(stems) != 1 or sorted(outs) != list(range(stages)):
        raise EnsuiError("NNCF's width groups do not form a ResNet50: expected one stem group "
                         "and one residual-stream group per stage")
    return NncfLayout(
        layers=layers, depth_blocks=_depth_blocks(handler.depth_handler), stem_group=stems[0],
        out_groups=tuple(outs[s] for s in range(stages)),
        mid_groups={key: (convs["conv1"], convs["conv2"]) for key, convs in sorted(mids.items())},
        group_widths={group: widths for group, (_, widths) in sorted(roles.items())})


# -------------------------------------------------------------------------------- mapping

def _dim_name(key) -> str:
    return getattr(key, "value", key)


def _nearest_multiplier(ratio: float) -> int:
    return min(range(len(WIDTH_MULTIPLIERS)), key=lambda i: abs(WIDTH_MULTIPLIERS[i] - ratio))


def _nearest_expansion(multiplier: float) -> float:
    return min(EXPANSION_CHOICES, key=lambda e: (abs(e - FULL_EXPANSION * multiplier), -e))


def _depths(skipped: Sequence[int], layout: NncfLayout) -> tuple[int, ...]:
    per_stage: dict[int, list[int]] = {}
    for block_id in skipped:
        if not 0 <= block_id < len(layout.depth_blocks):
            raise SubnetConfigError(f"depth: NNCF block {block_id} does not exist (there are "
                                    f"{len(layout.depth_blocks)})")
        stage, block = layout.depth_blocks[block_id]
        per_stage.setdefault(stage, []).append(block)
    depths = []
    for stage, n in enumerate(layout.layers):
        blocks = sorted(set(per_stage.get(stage, [])))
        if blocks != list(range(n - len(blocks), n)):
            raise SubnetConfigError(f"depth: stage {stage + 1} skips blocks {blocks}; ensui's "
                                    f"sub-networks skip only trailing blocks")
        depths.append(n - len(blocks))
    return tuple(depths)


def _width_reader(widths: Mapping, layout: NncfLayout) -> Callable[[int], float]:
    """group -> active / full channels; groups the config leaves out are at full width."""
    unknown = sorted(set(widths) - set(layout.group_widths))
    if unknown:
        raise SubnetConfigError(f"width: NNCF group {unknown[0]} is not in the layout")

    def ratio(group: int) -> float:
        return widths.get(group, layout.full(group)) / layout.full(group)
    return ratio


def _expansion(layout: NncfLayout, stage: int, block: int, ratio, stage_index: int) -> float:
    groups = [g for g in layout.mid_groups[(stage, block)] if not layout.pinned(g)]
    if not groups:  # NNCF cannot narrow these mids: follow the stage
        return _nearest_expansion(WIDTH_MULTIPLIERS[stage_index])
    return _nearest_expansion(max(ratio(g) for g in groups))


def to_subnet_config(nncf_subnet_config: Mapping, layout) -> SubnetConfig:
    """NNCF's sub-network config as ensui's SubnetConfig, by the module docstring's rule.

    `layout` is an NncfLayout or an NncfSupernet. A dim the config leaves out is at its
    maximum. SubnetConfigError for what ensui cannot express (kernel elasticity, skipped
    blocks that are not trailing, unknown groups).
    """
    layout = getattr(layout, "layout", layout)
    parts = {_dim_name(key): value for key, value in nncf_subnet_config.items()}
    extra = sorted(set(parts) - set(NNCF_DIMS))
    if extra:
        raise SubnetConfigError(f"{extra[0]}: ensui's ResNet50 has no {extra[0]} elasticity")
    depths = _depths(parts.get(DEPTH) or [], layout)
    ratio = _width_reader(parts.get(WIDTH) or {}, layout)
    widths = tuple(_nearest_multiplier(ratio(g)) for g in layout.out_groups)
    expansions = tuple(_expansion(layout, s, b, ratio, widths[s])
                       for s, depth in enumerate(depths) for b in range(depth))
    cfg = SubnetConfig(_nearest_multiplier(ratio(layout.stem_group)), depths, expansions, widths)
    check_config(cfg, layout.layers)
    return cfg


def _nearest_width(layout: NncfLayout, group: int, multiplier: float) -> int:
    target = multiplier * layout.full(group)
    return min(layout.group_widths[group], key=lambda w: (abs(w - target), -w))


def to_nncf_config(cfg: SubnetConfig, layout) -> dict:
    """ensui's SubnetConfig as NNCF's {"depth": [...], "width": {...}} (plain-string keys).

    Mids of skipped blocks stay at full width. Maps back through to_subnet_config to `cfg`
    except where the module docstring says information is lost.
    """
    layout = getattr(layout, "layout", layout)
    check_config(cfg, layout.layers)
    skipped = [i for i, (s, b) in enumerate(layout.depth_blocks) if b >= cfg.depths[s]]
    widths = {g: layout.full(g) for g in layout.group_widths}
    widths[layout.stem_group] = _nearest_width(layout, layout.stem_group,
                                               WIDTH_MULTIPLIERS[cfg.stem_width])
    for group, index in zip(layout.out_groups, cfg.widths):
        widths[group] = _nearest_width(layout, group, WIDTH_MULTIPLIERS[index])
    expansions = iter(cfg.expansions)
    for stage, depth in enumerate(cfg.depths):
        for block in range(depth):
            multiplier = next(expansions) / FULL_EXPANSION
            for group in layout.mid_groups[(stage, block)]:
                widths[group] = _nearest_width(layout, group, multiplier)
    return {DEPTH: skipped, WIDTH: widths}


# ------------------------------------------------------------------------------ supernet

@dataclass(frozen=True)
class NncfEpoch:
    stage_index: int  # 0-based, into the listing's stages
    epoch: int  # 1-based, within the stage
    loss: float  # mean training loss of the sampled sub-networks
    lr: float  # mean over the epoch's steps (NNCF's cosine reaches 0 at a stage's last step)
    supernet_acc: float  # top-1 %, after NNCF's BN adaptation
    min_subnet_acc: float  # top-1 % of the stage's minimal sub-network
    seconds: float


@dataclass
class NncfSupernet:
    """An NNCF super-network and the handles to drive it."""

    model: nn.Module  # NNCFNetwork
    algo: object  # EpochBasedTrainingAlgorithm
    training_ctrl: object  # ProgressiveShrinkingController
    config: object  # NNCFConfig, with the BN-adaptation loader registered
    layout: NncfLayout
    epochs: list[NncfEpoch] = field(default_factory=list)

    @property
    def elasticity_ctrl(self):
        return self.training_ctrl.elasticity_controller

    @property
    def handler(self):
        """NNCF's MultiElasticityHandler."""
        return self.training_ctrl.multi_elasticity_handler

    def stage_metrics(self) -> list[dict]:
        """Per trained stage: its epochs and its last epoch's metrics."""
        stages: dict[int, list[NncfEpoch]] = {}
        for epoch in self.epochs:
            stages.setdefault(epoch.stage_index, []).append(epoch)
        return [{"stage": index, "epochs": len(done), "loss": done[-1].loss, "lr": done[-1].lr,
                 "supernet_acc": done[-1].supernet_acc,
                 "min_subnet_acc": done[-1].min_subnet_acc,
                 "seconds": sum(e.seconds for e in done)}
                for index, done in sorted(stages.items())]


def _first_batch_shape(loader) -> tuple[int, int]:
    x, _ = next(iter(loader))
    return x.shape[0], x.shape[-1]


def wrap_supernet(model: nn.Module, listing_json: dict, train_loader, log_dir, device
                  ) -> NncfSupernet:
    """`model` (a ResNet50) as an NNCF BootstrapNAS super-network, not trained yet.

    `train_loader` (a torch DataLoader of (images, labels)) feeds NNCF's BN adaptation and
    sets the traced input shape. No elasticity is enabled until a stage is entered
    (`enter_stage` or training).
    """
    nn_ = _nncf()
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    batch, size = _first_batch_shape(train_loader)
    cfg = nn_.NNCFConfig.from_dict(nncf_config(listing_json, size, batch, log_dir, device))
    cfg = nn_.register_default_init_args(cfg, train_loader, nn.CrossEntropyLoss(),
                                         device=str(device))
    network = nn_.create_nncf_network(model.to(device), cfg)
    algo = nn_.EpochBasedTrainingAlgorithm.from_config(network, cfg)
    ctrl = algo._training_ctrl  # nncf 2.19.0 exposes the trainer only here
    return NncfSupernet(algo._model, algo, ctrl, cfg, nncf_layout(ctrl.multi_elasticity_handler))


def enter_stage(supernet: NncfSupernet, stage_index: int) -> None:
    """Set up progressive-shrinking stage `stage_index` as NNCF's scheduler does on entry
    (dims, indicators, reorg_weights, bn_adapt), without training."""
    stages = supernet.training_ctrl.scheduler.list_stage_descriptors
    supernet.training_ctrl.set_stage(stages[stage_index])


def active_nncf_config(supernet: NncfSupernet) -> dict:
    """The active {depth, width} of every handler, enabled or not (NNCF's own
    get_active_config leaves disabled dims out)."""
    handler = supernet.handler
    return {DEPTH: list(handler.depth_handler.get_active_config() or []),
            WIDTH: dict(handler.width_handler.get_active_config())}


def activate(supernet: NncfSupernet, config: SubnetConfig | Mapping) -> SubnetConfig:
    """Activate an ensui SubnetConfig or an NNCF config; returns the active one as ensui's."""
    if isinstance(config, SubnetConfig):
        config = to_nncf_config(config, supernet.layout)
    dims = {d.value: d for d in _nncf().ElasticityDim}
    supernet.handler.activate_subnet_for_config(
        {dims[_dim_name(key)]: copy.deepcopy(value) for key, value in config.items()})
    return to_subnet_config(active_nncf_config(supernet), supernet.layout)


# ------------------------------------------------------------------------------ training

class _ScalarLog:
    """The tensorboard writer NNCF's trainer wants: keeps scalars, writes nothing."""

    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}
        self.on_scalar: Callable[[str], None] | None = None

    def add_scalar(self, tag: str, value, step=None, *args, **kwargs) -> None:
        self.scalars[tag] = float(value)
        if self.on_scalar is not None:
            self.on_scalar(tag)

    def __getattr__(self, name: str):  # add_text, flush, close, ...: nothing to do
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def _batches(loader, limit: int | None):
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
        yield batch


def _validate(model: nn.Module, loader, device) -> tuple[float, float, float]:
    """(top-1 %, top-5 %, mean loss): what NNCF's trainer expects from val_fn."""
    model.eval()
    top1 = top5 = loss = 0.0
    n = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (best[:, 0] == y).sum().item()
            top5 += (best == y[:, None]).any(dim=1).sum().item()
            n += len(y)
    return 100.0 * top1 / max(n, 1), 100.0 * top5 / max(n, 1), loss / max(n, 1)


class _EpochRecorder:
    """Builds one NncfEpoch per epoch from the training pass and NNCF's logged scalars."""

    def __init__(self, supernet: NncfSupernet, writer: _ScalarLog, on_epoch):
        self.supernet, self.writer, self.on_epoch = supernet, writer, on_epoch
        self.pending: dict | None = None
        writer.on_scalar = self._scalar

    def start(self, epoch: int, loss: float, lr: float, started: float) -> None:
        scheduler = self.supernet.training_ctrl.scheduler
        index = scheduler.current_stage_idx
        first = sum(s.epochs for s in scheduler.list_stage_descriptors[:index])
        self.pending = {"stage_index": index, "epoch": epoch - first + 1, "loss": loss,
                        "lr": lr, "started": started}

    def _scalar(self, tag: str) -> None:
        # NNCF logs the minimal sub-network, then the super-network; top5 comes last.
        if tag != "val/supernet_top5" or self.pending is None:
            return
        p, s = self.pending, self.writer.scalars
        record = NncfEpoch(p["stage_index"], p["epoch"], p["loss"], p["lr"],
                           s["val/supernet_top1"], s["val/min_subnet_top1"],
                           time.monotonic() - p["started"])
        self.pending = None
        self.supernet.epochs.append(record)
        if self.on_epoch is not None:
            self.on_epoch(record)


def _train_epoch_fn(recorder: _EpochRecorder, device, steps: int | None):
    """NNCF's train_epoch_fn: one sampled sub-network per step, cross-entropy loss."""
    def train_epoch(loader, model, ctrl, epoch, optimizer) -> None:
        started, total, lrs, n = time.monotonic(), 0.0, 0.0, 0
        model.train()
        for x, y in _batches(loader, steps):
            ctrl.scheduler.step()  # samples the step's sub-network, sets the lr
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, lrs, n = total + loss.item(), lrs + optimizer.param_groups[0]["lr"], n + 1
        recorder.start(epoch, total / max(n, 1), lrs / max(n, 1), started)
    return train_epoch


def _seed(seed: int | None) -> None:
    """NNCF samples sub-networks with the global `random`; pymoo with numpy."""
    if seed is None:
        return
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_supernet(model: nn.Module, listing_json: dict, train_loader, val_loader,
                   params: Mapping, log_dir, device,
                   on_epoch: Callable[[NncfEpoch], None] | None = None) -> NncfSupernet:
    """Run every progressive-shrinking stage of Listing 1 with NNCF's trainer.

    params: "lr" overrides the stages' init_lr (NNCF's per-stage cosine schedule stays);
    "total_epochs" shortens the stages (listing.scaled's rule); "steps_per_epoch" caps
    the batches per epoch; "momentum" (0.9) and "weight_decay" (0) of SGD; "seed".
    `on_epoch` gets each NncfEpoch as it ends. NNCF writes its checkpoints
    (supernet_last.pth, last_elasticity.pth, last_model_weights.pth) and graphs to log_dir.
    """
    params = {**DEFAULT_PARAMS, **params}
    _seed(params.get("seed"))
    listing_json = _apply_params(listing_json, params)
    supernet = wrap_supernet(model, listing_json, train_loader, log_dir, device)
    optimizer = torch.optim.SGD(supernet.model.parameters(), lr=0.0,  # NNCF sets the lr
                                momentum=params["momentum"],
                                weight_decay=params["weight_decay"])
    steps = params.get("steps_per_epoch")
    writer = _ScalarLog()
    recorder = _EpochRecorder(supernet, writer, on_epoch)
    supernet.algo.run(_train_epoch_fn(recorder, device, steps), train_loader,
                      lambda m, loader: _validate(m, loader, device), val_loader, optimizer,
                      str(log_dir), tensorboard_writer=writer,
                      train_iters=min(steps, len(train_loader)) if steps else None)
    return supernet


# -------------------------------------------------------------------------------- search

def _search_config(supernet: NncfSupernet, listing_json: dict, overrides: dict, log_dir):
    """The supernet's NNCFConfig with Listing 1's search section and `overrides`.

    NNCF's search adapts BN with its own default (2000 images) unless told: it gets the
    training section's num_bn_adaptation_samples, as Listing 1 gives one number for both.
    """
    nn_ = _nncf()
    data = copy.deepcopy(dict(supernet.config))
    root = copy.deepcopy(listing_json["bootstrapNAS"])
    search = {**root["search"], **{k: v for k, v in overrides.items() if v is not None}}
    bn = root["training"].get("batchnorm_adaptation")
    if bn is not None:
        search.setdefault("batchnorm_adaptation", bn)
    data["bootstrapNAS"]["search"] = search
    if log_dir is not None:
        data["log_dir"] = str(log_dir)
    Path(data["log_dir"]).mkdir(parents=True, exist_ok=True)
    cfg = nn_.NNCFConfig.from_dict(data)
    cfg.register_extra_structs(supernet.config.get_all_extra_structs())
    return cfg


def _record_values(record: list) -> tuple[object, dict[str, float]]:
    """NNCF's search record [config, name, value, name, value, ...] (values negated to minimise)."""
    return record[0], {record[i]: abs(record[i + 1]) for i in range(1, len(record) - 1, 2)}


def _search_rows(supernet: NncfSupernet, records: list, best) -> list[dict]:
    rows, seen = [], set()
    handler = supernet.handler
    for record in records:
        sample, values = _record_values(record)
        handler.activate_subnet_for_config(copy.deepcopy(sample))
        active = active_nncf_config(supernet)
        key = repr(active)
        if key in seen:
            continue
        seen.add(key)
        flops, weights = handler.count_flops_and_weights_for_active_subnet()
        rows.append({"config": to_subnet_config(active, supernet.layout),
                     "accuracy": values["top1_acc"], "macs": int(flops // 2),
                     "params": int(weights), "nncf_config": active,
                     "best": _dim_dict(sample) == _dim_dict(best)})
    return rows


def _dim_dict(config) -> dict:
    return {_dim_name(k): v for k, v in config.items()}


def search(nncf_supernet: NncfSupernet, val_loader, listing_json: dict, *,
           num_evals: int | None = None, population: int | None = None, seed: int = 0,
           ref_acc: float | None = None, log_dir=None, device="cpu") -> list[dict]:
    """NNCF's NSGA-II search over the supernet's last stage's elasticity.

    Listing 1's search settings unless overridden (num_evals, population, ref_acc).
    One row per distinct evaluated sub-network: {config (ensui SubnetConfig), accuracy
    (top-1 %, after NNCF's BN adaptation), macs, params (NNCF's count of conv and linear
    weights), nncf_config (NNCF's exact config), best (NNCF's pick)}. The super-network is
    left with NNCF's pick active. BN adaptation reuses the training loader.
    """
    nn_ = _nncf()
    _seed(seed)
    cfg = _search_config(nncf_supernet, listing_json,
                         {"num_evals": num_evals, "population": population, "seed": seed,
                          "ref_acc": ref_acc}, log_dir)
    algo = nn_.BaseSearchAlgorithm.from_config(nncf_supernet.model,
                                               nncf_supernet.elasticity_ctrl, cfg)
    _, best, _ = algo.run(lambda m, loader: _validate(m, loader, device)[0], val_loader,
                          cfg["log_dir"], tensorboard_writer=_ScalarLog())
    rows = _search_rows(nncf_supernet, algo.search_records, best)
    nncf_supernet.handler.activate_subnet_for_config(copy.deepcopy(best))
    return rows
