"""Listing 1 parsing and the NSGA-II sub-network search, against brute-force references."""

import copy
import itertools
import json
import random
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ensui.engine.nas.elastic_resnet import build_supernet, extract
from ensui.engine.nas.listing import (
    ListingError,
    SearchSettings,
    load_listing,
    scaled,
)
from ensui.engine.nas.macs import count_macs, count_parameters
from ensui.engine.nas.search import (
    SearchPoint,
    SearchSpace,
    front_rows,
    non_dominated,
    pareto_front,
    run_search,
    supernet_cost,
)
from ensui.engine.nas.subnet_config import (
    EXPANSION_CHOICES,
    FULL_EXPANSION,
    SubnetConfigError,
    config_key,
    max_config,
    min_config,
    parse_table_ii,
    sample_config,
)
from ensui.errors import EnsuiError

LISTING_1 = Path(__file__).resolve().parents[1] / "data" / "paper" / "listing_1.json"
RAW = json.loads(LISTING_1.read_text())
STAGES = "bootstrapNAS.training.schedule.list_stage_descriptions"


# -- Listing 1 ---------------------------------------------------------------------------

def test_listing_1_parses_as_the_paper_describes():
    listing = load_listing(LISTING_1)
    stages = listing.training.stages
    assert len(stages) == 4 and listing.training.total_epochs == 165
    assert [s.epochs for s in stages] == [25, 40, 50, 50] == [s.epochs_lr for s in stages]
    assert [s.train_dims for s in stages] == [("depth",), ("depth",), ("depth", "width"),
                                              ("depth", "width")]
    assert [s.depth_indicator for s in stages] == [1, 2, 2, 2]
    assert [s.width_indicator for s in stages] == [1, 1, 2, 3]  # defaults to 1
    assert [s.reorg_weights for s in stages] == [False, False, True, True]
    assert [s.bn_adapt for s in stages] == [False, False, True, True]
    assert all(s.init_lr == 2.5e-6 for s in stages)
    assert listing.training.num_bn_adaptation_samples == 1500
    assert listing.training.width.width_multipliers == (1.0, 0.8, 0.6)
    assert listing.training.width.min_width == 32 and listing.training.width.max_num_widths == 3
    assert listing.search == SearchSettings("NSGA2", 1000, 50, 93.65)
    assert load_listing(RAW) == listing
    assert listing.training.first_epoch(2) == 65


def test_stage_dims_decide_what_is_sampled():
    depth_only, _, both, _ = load_listing(LISTING_1).training.stages
    assert (depth_only.sampled_depth_indicator, depth_only.sampled_width_indicator) == (1, 1)
    assert depth_only.expansion_choices == (FULL_EXPANSION,)
    assert (both.sampled_depth_indicator, both.sampled_width_indicator) == (2, 2)
    assert both.expansion_choices == EXPANSION_CHOICES
    expansion = replace(both, train_dims=("expansion",))
    assert (expansion.sampled_depth_indicator, expansion.sampled_width_indicator) == (0, 1)
    assert expansion.expansion_choices == EXPANSION_CHOICES


def _broken(edit) -> dict:
    raw = copy.deepcopy(RAW)
    edit(raw["bootstrapNAS"])
    return raw


def _stage(i):
    return lambda root: root["training"]["schedule"]["list_stage_descriptions"][i]


@pytest.mark.parametrize("edit, message", [
    (lambda r: _stage(2)(r).update(epochs=0), f"{STAGES}[2].epochs: must be a positive integer"),
    (lambda r: _stage(1)(r).update(epochs=2.5), f"{STAGES}[1].epochs: must be a positive integer"),
    (lambda r: _stage(0)(r).update(epoch=3), f"{STAGES}[0].epoch: unknown key"),
    (lambda r: _stage(0)(r).pop("init_lr"), f"{STAGES}[0].init_lr: missing"),
    (lambda r: _stage(3)(r).update(init_lr=-1), f"{STAGES}[3].init_lr: must be a positive number"),
    (lambda r: _stage(1)(r).update(train_dims=["depth", "kernel"]),
     f"{STAGES}[1].train_dims[1]: unknown dim 'kernel'"),
    (lambda r: _stage(1)(r).update(train_dims=["expansion"]),  # not in available dims
     f"{STAGES}[1].train_dims[0]: unknown dim 'expansion'"),
    (lambda r: _stage(3)(r).update(width_indicator=4),
     f"{STAGES}[3].width_indicator: 4 exceeds the 3 width multipliers"),
    (lambda r: _stage(2)(r).update(reorg_weights="yes"),
     f"{STAGES}[2].reorg_weights: must be true or false"),
    (lambda r: _stage(0)(r).update(depth_indicator=-1),
     f"{STAGES}[0].depth_indicator: must be a >= 0 integer"),
    (lambda r: r["training"]["schedule"].update(list_stage_descriptions=[]),
     f"{STAGES}: expected a non-empty list"),
    (lambda r: r["training"].pop("schedule"), "bootstrapNAS.training.schedule: missing"),
    (lambda r: r["training"]["batchnorm_adaptation"].update(num_bn_adaptation_samples=0),
     "bootstrapNAS.training.batchnorm_adaptation.num_bn_adaptation_samples: must be a positive"),
    (lambda r: r["training"]["elasticity"]["width"].update(width_multipliers=[1, 0.5]),
     "bootstrapNAS.training.elasticity.width.width_multipliers: the super-network's"),
    (lambda r: r["training"].update(algorithm="lottery"),
     "bootstrapNAS.training.algorithm: only progressive_shrinking"),
    (lambda r: r["search"].update(algorithm="RNSGA2"), "bootstrapNAS.search.algorithm: only NSGA2"),
    (lambda r: r["search"].update(population=-5),
     "bootstrapNAS.search.population: must be a positive integer"),
    (lambda r: r.pop("search"), "bootstrapNAS.search: missing"),
])
def test_bad_entries_are_named_by_their_json_path(edit, message):
    with pytest.raises(ListingError) as err:
        load_listing(_broken(edit))
    assert str(err.value).startswith(message), str(err.value)
    assert isinstance(err.value, EnsuiError)  # one line in the CLI


def test_missing_root_is_named():
    with pytest.raises(ListingError, match="^bootstrapNAS: missing"):
        load_listing({"nncf": {}})
    with pytest.raises(ListingError, match="^bootstrapNAS: expected an object"):
        load_listing({"bootstrapNAS": []})


def test_expansion_dim_is_accepted_when_available():
    def edit(root):
        root["training"]["elasticity"]["available_elasticity_dims"].append("expansion")
        _stage(1)(root)["train_dims"] = ["depth", "expansion"]

    assert load_listing(_broken(edit)).training.stages[1].train_dims == ("depth", "expansion")


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "listing.json"
    bad.write_text(json.dumps(_broken(lambda r: _stage(2)(r).update(epochs=0))))
    with pytest.raises(ListingError, match=rf"^listing.json: {STAGES}\[2\]\.epochs"):
        load_listing(bad)
    bad.write_text('{"bootstrapNAS":\n  {"training": }')
    with pytest.raises(ListingError, match="listing.json: line 2: invalid JSON"):
        load_listing(bad)
    with pytest.raises(ListingError, match="cannot read"):
        load_listing(tmp_path / "absent.json")


def test_scaled_keeps_every_stage_and_everything_else():
    listing = load_listing(LISTING_1)
    tiny = scaled(listing, total_epochs=4)
    assert [s.epochs for s in tiny.training.stages] == [1, 1, 1, 1]
    assert [s.epochs_lr for s in tiny.training.stages] == [1, 1, 1, 1]
    assert [replace(s, epochs=1, epochs_lr=1) for s in listing.training.stages] == \
        list(tiny.training.stages)
    assert tiny.search == listing.search
    assert tiny.training.num_bn_adaptation_samples == 1500
    tenth = scaled(listing, epochs_scale=0.1).training.stages
    assert [s.epochs for s in tenth] == [2, 4, 5, 5]  # 2.5 rounds to even
    assert all(s.epochs == 1 for s in scaled(listing, epochs_scale=1e-4).training.stages)
    with pytest.raises(ValueError):
        scaled(listing)
    with pytest.raises(ValueError):
        scaled(listing, epochs_scale=0.5, total_epochs=10)


# -- encoding ----------------------------------------------------------------------------

SPACE = SearchSpace.from_stage(load_listing(LISTING_1).training.stages[-1])


def test_space_is_what_the_last_stage_trains():
    assert SPACE.depth_choices == ((1, 2, 3), (2, 3, 4), (4, 5, 6), (1, 2, 3))
    assert SPACE.width_choices == (0, 1, 2) and SPACE.expansion_choices == EXPANSION_CHOICES
    assert SPACE.n_var == 1 + 4 + 4 + 16
    depth_only = SearchSpace.from_stage(load_listing(LISTING_1).training.stages[0])
    assert depth_only.width_choices == (0,) and depth_only.expansion_choices == (FULL_EXPANSION,)


def test_decode_inverts_encode():
    rng = random.Random(0)
    configs = [sample_config(rng, 2, 3) for _ in range(300)] + [max_config()]
    for cfg in configs:
        genes = SPACE.encode(cfg)
        assert genes.shape == (SPACE.n_var,)
        assert (genes >= 0).all() and (genes <= SPACE.upper()).all()
        assert SPACE.decode(genes) == cfg


def test_genes_of_skipped_blocks_are_ignored():
    rng = random.Random(1)
    for _ in range(50):
        cfg = sample_config(rng, 2, 3)
        genes = SPACE.encode(cfg)
        starts = [0, 3, 7, 13]
        for start, depth, n in zip(starts, cfg.depths, (3, 4, 6, 3)):
            for b in range(depth, n):
                genes[1 + 8 + start + b] = 1 - genes[1 + 8 + start + b]
        assert SPACE.decode(genes) == cfg


def test_configs_outside_the_space_are_refused():
    with pytest.raises(SubnetConfigError, match=r"depths\[1\]: 1 is outside"):
        SPACE.encode(min_config())  # one block of four: beyond depth_indicator 2
    cfg = replace(max_config(), expansions=(0.25,) * 15 + (0.1,))
    with pytest.raises(SubnetConfigError, match=r"expansions\[15\]"):
        SPACE.encode(cfg)


# -- Pareto front ------------------------------------------------------------------------

def _dominates(a, b) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def _brute_front(pairs) -> set[int]:
    return {i for i, p in enumerate(pairs) if not any(_dominates(q, p) for q in pairs)}


@pytest.mark.parametrize("seed", range(30))
def test_non_dominated_matches_brute_force(seed):
    gen = random.Random(seed)
    n = gen.randint(1, 60)
    spread = gen.choice([3, 10, 1000])  # small spreads force ties in both objectives
    pairs = [(gen.randint(0, spread) / spread, gen.randint(0, spread)) for _ in range(n)]
    front = non_dominated(pairs)
    assert len(front) == len(set(front))
    assert set(front) == _brute_front(pairs)
    assert [pairs[i][1] for i in front] == sorted(pairs[i][1] for i in front)


def test_non_dominated_edge_cases():
    assert non_dominated([]) == []
    assert non_dominated([(0.5, 10), (0.5, 10)]) == [0, 1]  # equals do not dominate
    assert non_dominated([(0.5, 10), (0.5, 9)]) == [1]
    assert non_dominated([(0.5, 10), (0.6, 10)]) == [1]
    assert non_dominated([(0.9, 30), (0.5, 10), (0.7, 20)]) == [1, 2, 0]


# -- search ------------------------------------------------------------------------------

def _synthetic_cost(cfg):
    """Monotone in depth, width and expansion, like real MACs, but free."""
    macs = 1000 * sum(d * (3 - w) for d, w in zip(cfg.depths, cfg.widths))
    macs += round(4000 * sum(cfg.expansions)) + 500 * (2 - cfg.stem_width)
    return macs, macs // 7


class _SyntheticScore:
    """Accuracy rising with MACs plus a deterministic per-config bump; counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg):
        self.calls.append(config_key(cfg))
        bump = zlib.crc32(config_key(cfg).encode()) % 1000 / 1e5
        return 1 - 60_000 / (60_000 + _synthetic_cost(cfg)[0]) + bump


def _brute_points(points):
    pairs = [(p.accuracy, p.macs) for p in points]
    return {points[i].key for i in _brute_front(pairs)}


def test_search_front_is_the_brute_force_front_of_its_points():
    settings = SearchSettings("NSGA2", 400, 40)
    score = _SyntheticScore()
    result = run_search(score, _synthetic_cost, settings, SPACE, seed=0)
    assert settings.num_evals - settings.population <= result.evaluations
    assert result.evaluations <= settings.num_evals + settings.population
    assert 0.5 * settings.num_evals < len(result.points) <= result.evaluations
    assert sorted(score.calls) == sorted(p.key for p in result.points)  # each scored once
    assert len({p.key for p in result.points}) == len(result.points)
    assert {p.key for p in result.front} == _brute_points(result.points)
    macs = [p.macs for p in result.front]
    assert macs == sorted(macs) and len(result.front) > 5
    pairs = [(p.accuracy, p.macs) for p in result.points]
    for p in result.front:
        assert not any(_dominates(q, (p.accuracy, p.macs)) for q in pairs)


def _hypervolume(pairs, ref_macs) -> float:
    """Area dominated by (accuracy, macs) pairs above accuracy 0 and below ref_macs."""
    front = sorted((pairs[i] for i in _brute_front(pairs)), key=lambda p: p[1])
    area = 0.0
    for (acc, macs), nxt in zip(front, [p[1] for p in front[1:]] + [ref_macs]):
        area += acc * (nxt - macs)
    return area


def test_search_beats_random_sampling_of_the_same_budget():
    settings = SearchSettings("NSGA2", 400, 40)
    result = run_search(_SyntheticScore(), _synthetic_cost, settings, SPACE, seed=0)
    rng, score = random.Random(5), _SyntheticScore()
    sample = [sample_config(rng, 2, 3) for _ in range(len(result.points))]
    random_pairs = [(score(cfg), _synthetic_cost(cfg)[0]) for cfg in sample]
    ref = _synthetic_cost(max_config())[0] + 1
    searched = _hypervolume([(p.accuracy, p.macs) for p in result.points], ref)
    assert searched > 1.02 * _hypervolume(random_pairs, ref)


def test_seeded_searches_reproduce():
    settings = SearchSettings("NSGA2", 120, 20)
    a = run_search(_SyntheticScore(), _synthetic_cost, settings, SPACE, seed=7)
    b = run_search(_SyntheticScore(), _synthetic_cost, settings, SPACE, seed=7)
    c = run_search(_SyntheticScore(), _synthetic_cost, settings, SPACE, seed=8)
    assert [p.key for p in a.points] == [p.key for p in b.points]
    assert a.front == b.front
    assert [p.key for p in a.points] != [p.key for p in c.points]


def test_supernet_cost_counts_the_sub_network():
    torch.manual_seed(0)
    net = build_supernet("tiny", 10)
    cost = supernet_cost(net, 32)
    for cfg in (max_config(), sample_config(random.Random(3), 2, 3)):
        net.set_config(cfg)  # the sliced super-network, independently of extract
        assert cost(cfg) == (count_macs(net, 32), count_parameters(extract(net, cfg)))
    assert cost(max_config())[1] > cost(SPACE.decode([2] * 5 + [0] * 20))[1]


def test_front_rows_are_storable():
    settings = SearchSettings("NSGA2", 120, 20)
    result = run_search(_SyntheticScore(), _synthetic_cost, settings, SPACE, seed=1)
    rows = front_rows(result)
    assert [r["config_key"] for r in rows] == [p.key for p in result.front]
    encodings = set()
    for row, point in zip(rows, result.front):
        assert (row["accuracy"], row["macs"], row["params"]) == \
            (point.accuracy, point.macs, point.params)
        assert tuple(row["subnet"]["depths"]) == point.config.depths
        assert tuple(row["subnet"]["expansions"]) == point.config.expansions
        json.dumps(row)  # storable as is
        if row["table_ii"] is None:
            assert any(d < base for d, base in zip(point.config.depths, (2, 2, 4, 2)))
        else:
            assert config_key(parse_table_ii(row["table_ii"])) == point.key
        encodings.add(row["table_ii"] is None)
    assert encodings == {True, False}  # both kinds occur on this front


def test_pareto_front_of_points():
    cfgs = [sample_config(random.Random(i), 2, 3) for i in range(4)]
    points = [SearchPoint(c, acc, macs, 1) for c, (acc, macs) in
              zip(cfgs, [(0.5, 10), (0.6, 20), (0.55, 30), (0.4, 5)])]
    assert pareto_front(points) == (points[3], points[0], points[1])
    assert list(itertools.chain(pareto_front(points[:1]))) == points[:1]
