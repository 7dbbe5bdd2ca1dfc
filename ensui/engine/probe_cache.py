"""Cached per-member arrays of the analysis, one folder per job, as checked `.npy` files:
penultimate `features` (activation jobs) and pooled attribution `maps` with their
`targets` (attribution jobs), each with the `ids` of the subset they were taken on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ensui.engine import artifacts

ARRAYS = {"activations": ("features", "ids"), "attribute": ("maps", "targets", "ids")}


def _paths(folder: Path, kind: str) -> dict[str, Path]:
    return {name: folder / f"{name}.npy" for name in ARRAYS[kind]}


def save(folder: Path, kind: str, **arrays: np.ndarray) -> None:
    """Write every array of `kind`; ids last, so a half-written folder is never intact."""
    paths = _paths(folder, kind)
    if set(arrays) != set(paths):
        raise ValueError(f"{kind} needs arrays {sorted(paths)}")
    for name in sorted(paths, key=lambda n: n == "ids"):
        artifacts.save_array(arrays[name], paths[name])


def intact(folder: Path, kind: str) -> bool:
    return all(artifacts.is_intact(p) for p in _paths(folder, kind).values())


def load(folder: Path, kind: str) -> dict[str, np.ndarray] | None:
    """The arrays of `kind`, or None when one is missing or damaged."""
    arrays = {name: artifacts.load_array(p) for name, p in _paths(folder, kind).items()}
    return None if any(a is None for a in arrays.values()) else arrays
