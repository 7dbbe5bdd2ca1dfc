"""The NNCF BootstrapNAS adapter: its mapping of NNCF sub-networks onto SubnetConfig, checked
on a hand-built layout (always) and on NNCF's own super-networks (when nncf is installed),
and a few-step progressive-shrinking run and search through NNCF's trainer."""

import copy
import importlib.util
import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ensui.engine.nas import nncf_backend
from ensui.engine.nas.listing import load_listing
from ensui.engine.nas.nncf_backend import NncfLayout, to_nncf_config, to_subnet_config
from ensui.engine.nas.subnet_config import (
    RESNET50_LAYERS,
    SubnetConfig,
    SubnetConfigError,
    check_config,
    max_config,
    min_config,
    sample_config,
)
from ensui.engine.train.supernet import stage_min_config
from ensui.errors import EnsuiError

LISTING_1 = Path(__file__).resolve().parents[1] / "data" / "paper" / "listing_1.json"
TINY_MIDS = (32, 64, 128, 256)  # elastic_resnet.TINY_WIDTHS
PAPER_MIDS = (64, 128, 256, 512)


def _listing(bn_samples: int = 32, epochs: int | None = None) -> dict:
    listing = json.loads(LISTING_1.read_text())
    training = listing["bootstrapNAS"]["training"]
    training["batchnorm_adaptation"]["num_bn_adaptation_samples"] = bn_samples
    if epochs is not None:
        for stage in training["schedule"]["list_stage_descriptions"]:
            stage["epochs"] = stage["epochs_lr"] = epochs
    return listing


def _nncf_widths(full: int, min_width: int = 32) -> tuple[int, ...]:
    """NNCF 2.19's widths for multipliers [1, 0.8, 0.6]: floored to 8, at least min_width."""
    if full <= min_width:
        return (full,)
    widths = [full]
    for m in (0.8, 0.6):
        w = max(int(full * m) // 8 * 8, min_width)
        if w not in widths:
            widths.append(w)
    return tuple(widths)


def _layout(mids, layers=RESNET50_LAYERS, stem: int = 64) -> NncfLayout:
    """The layout NNCF builds for a ResNet50 of these mid widths (outputs are 4 × mid),
    numbered as NNCF numbers it: stage outputs, stem, then conv1/conv2 of every block."""
    widths = {s: _nncf_widths(4 * mid) for s, mid in enumerate(mids)}
    stem_group = len(mids)
    widths[stem_group] = _nncf_widths(stem)
    mid_groups, group = {}, stem_group + 1
    for s, (n, mid) in enumerate(zip(layers, mids)):
        for b in range(n):
            mid_groups[(s, b)] = (group, group + 1)
            widths[group] = widths[group + 1] = _nncf_widths(mid)
            group += 2
    blocks = tuple((s, b) for s, n in enumerate(layers) for b in range(1, n))
    return NncfLayout(tuple(layers), blocks, stem_group, tuple(range(len(mids))), mid_groups,
                      widths)


def _skipped(layout: NncfLayout, depths) -> list[int]:
    return [i for i, (s, b) in enumerate(layout.depth_blocks) if b >= depths[s]]


# ------------------------------------------------------------------ without nncf (always)

def _load_module_copy(name: str, monkeypatch):
    """Execute nncf_backend.py afresh under another name (the real module stays as it is)."""
    spec = importlib.util.spec_from_file_location(f"ensui.engine.nas.{name}",
                                                  nncf_backend.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_imports_without_nncf_and_names_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)  # makes `import nncf` fail
    module = _load_module_copy("_nncf_backend_without_nncf", monkeypatch)
    assert module.available() is False
    with pytest.raises(EnsuiError, match=r"pip install -e '\.\[nncf\]'") as err:
        module.wrap_supernet(torch.nn.Linear(1, 1), _listing(), [], tmp_path, "cpu")
    assert isinstance(err.value, module.NncfUnavailable)
    assert "nncf==2.19.0" in str(err.value)


def test_maximum_and_minimum_layout_configs_map_to_ensui_extremes():
    for mids in (TINY_MIDS, PAPER_MIDS):
        layout = _layout(mids)
        full = {g: w[0] for g, w in layout.group_widths.items()}
        narrow = {g: w[-1] for g, w in layout.group_widths.items()}
        assert to_subnet_config({}, layout) == max_config()
        assert to_subnet_config({"depth": [], "width": full}, layout) == max_config()
        every = list(range(len(layout.depth_blocks)))
        assert to_subnet_config({"depth": every, "width": narrow}, layout) == min_config()


def test_widths_map_to_the_nearest_multiplier_and_mids_to_expansions():
    layout = _layout(TINY_MIDS)
    widths = {0: 96, 1: 152, 2: 512, 3: 816, 4: 32}  # 0.75, 0.59, 1, 0.80; stem 0.5
    widths |= {11: 48, 12: 64, 13: 48, 14: 48, 15: 32, 16: 32}  # stage 2, blocks 0-2
    cfg = to_subnet_config({"width": widths}, layout)
    assert (cfg.stem_width, cfg.widths) == (2, (1, 2, 0, 1))
    # Stage 1's 32-channel mids cannot shrink and follow the stage (0.8 -> 0.2); stage 2's
    # blocks take the wider of their two mids: 64 -> 0.25, 48 -> 0.2, 32 (0.5) -> 0.2.
    assert cfg.expansions[:3] == (0.2,) * 3
    assert cfg.expansions[3:7] == (0.25, 0.2, 0.2, 0.25)
    assert cfg.expansions[7:] == (0.25,) * 9


def test_depth_counts_trailing_skips_and_refuses_others():
    layout = _layout(TINY_MIDS)
    # NNCF's ids: stage 1 blocks 1-2 are 0-1, stage 2's 2-4, stage 3's 5-9, stage 4's 10-11.
    cfg = to_subnet_config({"depth": [1, 4, 8, 9, 10, 11]}, layout)
    assert cfg.depths == (2, 3, 4, 1)
    with pytest.raises(SubnetConfigError, match="stage 2 skips blocks \\[1\\]"):
        to_subnet_config({"depth": [2]}, layout)
    with pytest.raises(SubnetConfigError, match="kernel"):
        to_subnet_config({"kernel": [3]}, layout)
    with pytest.raises(SubnetConfigError, match="group 99"):
        to_subnet_config({"width": {99: 8}}, layout)


def test_ensui_configs_survive_the_trip_through_nncf_configs():
    """Paper scale has no fixed-width groups, so every sampled config comes back as it was."""
    layout = _layout(PAPER_MIDS)
    rng = random.Random(0)
    for _ in range(20):
        cfg = sample_config(rng, depth_indicator=5, width_indicator=3)
        nncf_cfg = to_nncf_config(cfg, layout)
        assert nncf_cfg["depth"] == _skipped(layout, cfg.depths)
        assert to_subnet_config(nncf_cfg, layout) == cfg


# --------------------------------------------------------------------------- with nncf

needs_nncf = pytest.mark.skipif(not nncf_backend.available(), reason="nncf is not installed")


def _loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


@pytest.fixture(scope="module")
def digits():
    from ensui.engine.data.embedded import embedded_split

    train, val = embedded_split(32, 0.2, 0)
    return ((train.images[:64].float() / 255, train.labels[:64]),
            (val.images[:32].float() / 255, val.labels[:32]))


def _supernet(scale: str, digits, log_dir):
    from ensui.engine.models.registry import Scale
    from ensui.engine.models.resnet import resnet50_net

    (x, y), _ = digits
    model = resnet50_net(Scale(scale), 10)
    return nncf_backend.wrap_supernet(model, _listing(), _loader(x, y, 16), log_dir, "cpu")


@pytest.fixture(scope="module")
def tiny_supernet(digits, tmp_path_factory):
    if not nncf_backend.available():
        pytest.skip("nncf is not installed")
    supernet = _supernet("tiny", digits, tmp_path_factory.mktemp("nncf-tiny"))
    nncf_backend.enter_stage(supernet, 3)  # Listing 1's last stage: depth 2, width 3
    return supernet


@needs_nncf
def test_nncf_layout_of_the_tiny_resnet50_is_the_expected_one(tiny_supernet):
    assert tiny_supernet.layout == _layout(TINY_MIDS)


def _mapped_after(supernet, activate) -> SubnetConfig:
    activate()
    return to_subnet_config(nncf_backend.active_nncf_config(supernet), supernet)


@needs_nncf
@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_nncf_maximum_and_minimum_subnets_map_to_ensui_max_and_min(
        scale, digits, tiny_supernet, tmp_path):
    supernet = tiny_supernet if scale == "tiny" else _supernet(scale, digits, tmp_path)
    if scale == "paper":
        nncf_backend.enter_stage(supernet, 3)
    handler = supernet.handler
    depth = handler.depth_handler
    assert _mapped_after(supernet, handler.activate_maximum_subnet) == max_config()
    last_stage = load_listing(_listing()).training.stages[-1]
    assert (_mapped_after(supernet, handler.activate_minimum_subnet)
            == stage_min_config(last_stage, RESNET50_LAYERS))
    indicator = depth.depth_indicator
    depth.depth_indicator = 5  # lets every stage drop to one block
    try:
        assert _mapped_after(supernet, handler.activate_minimum_subnet) == min_config()
    finally:
        depth.depth_indicator = indicator


@needs_nncf
def test_random_nncf_subnets_map_to_valid_configs_and_back(tiny_supernet):
    supernet, layout = tiny_supernet, tiny_supernet.layout
    random.seed(0)
    for _ in range(5):
        cfg = _mapped_after(supernet, supernet.handler.activate_random_subnet)
        check_config(cfg, layout.layers)
        active = nncf_backend.active_nncf_config(supernet)
        assert sorted(active["depth"]) == _skipped(layout, cfg.depths)
        for group, index in zip(layout.out_groups, cfg.widths):
            assert active["width"][group] == layout.group_widths[group][index]
        # ensui -> NNCF -> ensui is a fixed point of the mapping.
        assert nncf_backend.activate(supernet, cfg) == cfg
        assert nncf_backend.activate(supernet, active) == cfg


@needs_nncf
def test_short_progressive_shrinking_and_search_run_through_nncf(digits, tmp_path):
    from ensui.engine.models.registry import Scale
    from ensui.engine.models.resnet import resnet50_net

    (x, y), (vx, vy) = digits
    listing = _listing(epochs=1)
    seen = []
    supernet = nncf_backend.train_supernet(
        resnet50_net(Scale.TINY, 10), copy.deepcopy(listing), _loader(x, y, 16),
        _loader(vx, vy, 16), {"lr": 0.05, "steps_per_epoch": 2, "seed": 0},
        tmp_path / "train", "cpu", on_epoch=seen.append)
    assert [(e.stage_index, e.epoch) for e in seen] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    metrics = supernet.stage_metrics()
    assert [m["stage"] for m in metrics] == [0, 1, 2, 3]
    for m in metrics:
        assert math.isfinite(m["loss"]) and m["loss"] > 0
        assert 0 < m["lr"] <= 0.05
        assert 0 <= m["supernet_acc"] <= 100 and 0 <= m["min_subnet_acc"] <= 100
    assert (tmp_path / "train" / "supernet_last.pth").is_file()

    rows = nncf_backend.search(supernet, _loader(vx, vy, 16), listing, num_evals=4,
                               population=4, log_dir=tmp_path / "search")
    assert rows
    for row in rows:
        check_config(row["config"])
        assert row["config"] == to_subnet_config(row["nncf_config"], supernet)
        assert 0 <= row["accuracy"] <= 100
        assert row["macs"] > 0 and row["params"] > 0


NNCF_SPEC = """\
name: nncf-mini
dataset: {val_fraction: 0.8}
training:
  batch_size: 32
  epochs: 1
  supernet: {backend: nncf, total_epochs: 4, lr: 0.05, bn_samples: 32, num_evals: 4,
             population: 4}
validation: {sets: [clean], limit: 60}
analysis: {enabled: false}
members: [SqueezeNet]
"""


@needs_nncf
def test_backend_nncf_runs_as_a_job_and_records_the_mapped_front(tmp_path):
    """`ensui headless` with backend nncf: one job runs Listing 1's four stages (shrunk to
    an epoch each) and the search through NNCF; the front lands in the catalog in Table
    ii's format, ready for `ensui catalog save-subnet`."""
    from conftest import headless_json

    proc, home = headless_json(tmp_path, NNCF_SPEC)
    assert "supernet stage 1/1 epoch 4/4" in proc.stderr and "min_subnet_acc" in proc.stderr
    front = json.loads(proc.stdout)["front"]
    assert front and all(a["macs"] < b["macs"] and a["accuracy"] < b["accuracy"]
                         for a, b in zip(front, front[1:]))
    for point in front:
        check_config(SubnetConfig(point["subnet"]["stem_width"],
                                  tuple(point["subnet"]["depths"]),
                                  tuple(point["subnet"]["expansions"]),
                                  tuple(point["subnet"]["widths"])))
