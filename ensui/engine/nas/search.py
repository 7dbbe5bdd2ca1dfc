"""NSGA-II over the elastic ResNet50's sub-networks: BootstrapNAS's search (pymoo 0.6).

Objectives, both minimized: (-accuracy, MACs). Accuracy comes from a `score(cfg)` callable
(the real one evaluates the extracted, BN-recalibrated sub-network on a validation subset:
`lambda cfg: evaluate_subnet(net, cfg, bn_images, val, device, size)[0]`), MACs and
parameters from a `cost(cfg)` callable (`supernet_cost`). Both are called once per
distinct network (config_key), however often the search revisits it.

Encoding: one integer gene per choice, each an index into that choice's options:

    [stem width, width of stage 1..S, depth of stage 1..S, expansion of every block]

The expansion genes cover all blocks of the network, block by block; a stage uses the
genes of its first `depth` blocks and ignores the rest, so decode(encode(cfg)) == cfg
while encode(decode(x)) may differ from x in those ignored genes.

The search space is what the last progressive-shrinking stage trained (`from_stage`).
Its depths can fall below OFA's base depths, which Table ii cannot write; `front_rows`
then gives the configuration in the native encoding only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize
from torch import nn

from .elastic_resnet import extract
from .listing import SearchSettings, Stage
from .macs import count_macs, count_parameters
from .subnet_config import (
    RESNET50_LAYERS,
    SubnetConfig,
    SubnetConfigError,
    config_key,
    to_table_ii,
)

Score = Callable[[SubnetConfig], float]
Cost = Callable[[SubnetConfig], tuple[int, int]]


@dataclass(frozen=True)
class SearchSpace:
    """The options of every choice; indices into them are the genes."""

    depth_choices: tuple[tuple[int, ...], ...]  # per stage, ascending
    width_choices: tuple[int, ...]  # width-multiplier indices, for the stem and every stage
    expansion_choices: tuple[float, ...]
    layers: tuple[int, ...] = RESNET50_LAYERS

    @classmethod
    def from_stage(cls, stage: Stage, layers: Sequence[int] = RESNET50_LAYERS) -> SearchSpace:
        """The sub-networks `stage` samples (train_stage's stage_config)."""
        k = stage.sampled_depth_indicator
        depths = tuple(tuple(range(n - min(k, n - 1), n + 1)) for n in layers)
        return cls(depths, tuple(range(stage.sampled_width_indicator)),
                   tuple(stage.expansion_choices), tuple(layers))

    @property
    def stages(self) -> int:
        return len(self.layers)

    @property
    def n_var(self) -> int:
        return 1 + 2 * self.stages + sum(self.layers)

    def upper(self) -> np.ndarray:
        """The largest index of every gene."""
        widths = [len(self.width_choices) - 1] * (1 + self.stages)
        depths = [len(choices) - 1 for choices in self.depth_choices]
        return np.array(widths + depths + [len(self.expansion_choices) - 1] * sum(self.layers))

    def _block_starts(self) -> list[int]:
        return [sum(self.layers[:s]) for s in range(self.stages)]

    def decode(self, x: Sequence[int]) -> SubnetConfig:
        x = [int(v) for v in x]
        s = self.stages
        widths = tuple(self.width_choices[i] for i in x[1:1 + s])
        depths = tuple(choices[i] for choices, i in zip(self.depth_choices, x[1 + s:1 + 2 * s]))
        genes = x[1 + 2 * s:]
        expansions = tuple(self.expansion_choices[genes[start + b]]
                           for start, depth in zip(self._block_starts(), depths)
                           for b in range(depth))
        return SubnetConfig(self.width_choices[x[0]], depths, expansions, widths)

    def encode(self, cfg: SubnetConfig) -> np.ndarray:
        """Genes of `cfg`; SubnetConfigError if it is outside the space."""
        widths = [_index(self.width_choices, cfg.stem_width, "stem_width")]
        widths += [_index(self.width_choices, w, f"widths[{s}]") for s, w in enumerate(cfg.widths)]
        depths = [_index(choices, d, f"depths[{s}]")
                  for s, (choices, d) in enumerate(zip(self.depth_choices, cfg.depths))]
        genes = [0] * sum(self.layers)
        values = iter(enumerate(cfg.expansions))
        for start, depth in zip(self._block_starts(), cfg.depths):
            for b in range(depth):
                i, value = next(values)
                genes[start + b] = _index(self.expansion_choices, value, f"expansions[{i}]")
        return np.array(widths + depths + genes)


def _index(options: Sequence, value, name: str) -> int:
    if value not in options:
        raise SubnetConfigError(f"{name}: {value!r} is outside the search space {list(options)}")
    return list(options).index(value)


@dataclass(frozen=True)
class SearchPoint:
    config: SubnetConfig
    accuracy: float
    macs: int
    params: int

    @property
    def key(self) -> str:
        return config_key(self.config)


@dataclass(frozen=True)
class SearchResult:
    points: tuple[SearchPoint, ...]  # every distinct network evaluated, in order
    front: tuple[SearchPoint, ...]  # the non-dominated ones, by MACs ascending
    evaluations: int  # configurations the search asked for, repeats included


def non_dominated(objectives: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (accuracy, macs) pairs no other pair dominates, by MACs ascending.

    A pair dominates another when it is no worse in both (accuracy higher or equal, MACs
    lower or equal) and better in one; identical pairs do not dominate each other, so
    all of them stay. One sort and one sweep: a group of equal MACs contributes its most
    accurate members if they beat every cheaper pair.
    """
    order = sorted(range(len(objectives)), key=lambda i: (objectives[i][1], -objectives[i][0]))
    front, best = [], -math.inf
    for _, group in groupby(order, key=lambda i: objectives[i][1]):
        group = list(group)
        top = objectives[group[0]][0]
        if top > best:
            front.extend(i for i in group if objectives[i][0] == top)
            best = top
    return front


def pareto_front(points: Sequence[SearchPoint]) -> tuple[SearchPoint, ...]:
    return tuple(points[i] for i in non_dominated([(p.accuracy, p.macs) for p in points]))


class _Evaluations:
    """score and cost once per distinct network; remembers every point in order."""

    def __init__(self, score: Score, cost: Cost):
        self.score, self.cost = score, cost
        self.points: dict[str, SearchPoint] = {}
        self.calls = 0

    def __call__(self, cfg: SubnetConfig) -> SearchPoint:
        self.calls += 1
        key = config_key(cfg)
        if key not in self.points:
            macs, params = self.cost(cfg)
            self.points[key] = SearchPoint(cfg, float(self.score(cfg)), int(macs), int(params))
        return self.points[key]


class _SubnetProblem(Problem):
    def __init__(self, space: SearchSpace, evaluations: _Evaluations):
        super().__init__(n_var=space.n_var, n_obj=2, xl=0, xu=space.upper(), vtype=int)
        self.space, self.evaluations = space, evaluations

    def _evaluate(self, x, out, *args, **kwargs):
        points = [self.evaluations(self.space.decode(row)) for row in np.round(x).astype(int)]
        out["F"] = np.array([[-p.accuracy, p.macs] for p in points], dtype=float)


def _nsga2(population: int) -> NSGA2:
    """pymoo's recipe for integer genes: SBX and polynomial mutation, rounded."""
    return NSGA2(pop_size=population, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 eliminate_duplicates=True)


def run_search(score: Score, cost: Cost, settings: SearchSettings, space: SearchSpace,
               seed: int) -> SearchResult:
    """NSGA-II for ceil(num_evals / population) generations of `population` configurations."""
    evaluations = _Evaluations(score, cost)
    generations = math.ceil(settings.num_evals / settings.population)
    minimize(_SubnetProblem(space, evaluations), _nsga2(settings.population),
             ("n_gen", generations), seed=seed, verbose=False)
    points = tuple(evaluations.points.values())
    return SearchResult(points, pareto_front(points), evaluations.calls)


def supernet_cost(net: nn.Module, image_size: int) -> Cost:
    """(MACs, parameters) of a sub-network of `net` (optionally Normalized) at image_size."""
    elastic = getattr(net, "net", net)

    def cost(cfg: SubnetConfig) -> tuple[int, int]:
        sub = extract(elastic, cfg)
        return count_macs(sub, image_size), count_parameters(sub)

    return cost


def _table_ii(cfg: SubnetConfig) -> dict | None:
    try:
        return to_table_ii(cfg)
    except SubnetConfigError:
        return None


def front_rows(result: SearchResult) -> list[dict]:
    """The front as plain rows: Table ii encoding where it can write the config (else
    None), the native one always, accuracy, MACs, parameters and config_key."""
    return [{"config_key": p.key, "accuracy": p.accuracy, "macs": p.macs, "params": p.params,
             "table_ii": _table_ii(p.config),
             "subnet": {"stem_width": p.config.stem_width, "depths": list(p.config.depths),
                        "widths": list(p.config.widths),
                        "expansions": list(p.config.expansions)}}
            for p in result.front]
