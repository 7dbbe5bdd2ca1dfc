"""Attribution and activation diversity of an experiment's members on one validation
set, from the arrays their analysis jobs cached (`probe_cache`): pairwise (M, M)
matrices, and team values as the mean over a team's pairs (methods.md §4, §5).
"""

from __future__ import annotations

from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

from ensui.engine.diversity.activation import activation_diversity
from ensui.engine.diversity.attribution import attribution_diversity


def _stacked(per_member: Mapping[str, dict], members: Sequence[str], name: str) -> list:
    """The members' arrays `name`, after checking they were taken on the same images."""
    ids = per_member[members[0]]["ids"]
    for member in members[1:]:
        if not np.array_equal(per_member[member]["ids"], ids):
            raise ValueError(f"{member}: its {name} were taken on other images than "
                             f"{members[0]}'s")
    return [per_member[m][name] for m in members]


def attribution_matrix(per_member: Mapping[str, dict], members: Sequence[str], cfg) -> np.ndarray:
    """1 − the mean per-image similarity of the members' pooled maps, (M, M)."""
    maps = np.stack(_stacked(per_member, members, "maps"))
    return attribution_diversity(maps, cfg.similarity, cfg.topk_fraction)


def activation_matrix(per_member: Mapping[str, dict], members: Sequence[str], cfg) -> np.ndarray:
    """1 − minibatch CKA of the members' penultimate features, (M, M)."""
    feats = _stacked(per_member, members, "features")
    return activation_diversity(feats, batch_size=min(cfg.batch_size, len(feats[0])),
                                estimator=cfg.estimator)


def team_means(matrix: np.ndarray, team_list: Sequence[tuple[int, ...]]) -> list[float | None]:
    """Mean of the matrix over each team's pairs; None where a pair is undefined (NaN)."""
    values = []
    for team in team_list:
        mean = float(np.mean([matrix[i, k] for i, k in combinations(team, 2)]))
        values.append(mean if np.isfinite(mean) else None)
    return values
