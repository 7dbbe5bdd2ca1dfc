"""Fixed, seeded subsets of validation sets: the images that attribution maps and
activation features are computed on. Every member of an experiment gets the same
subset of a set, so their maps and features compare image by image.
"""

from __future__ import annotations

import numpy as np

from ensui.engine.data.arrays import ImageArray


def sample_indices(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted positions of `size` samples of n drawn without replacement; all when
    `size` is None or not smaller than n. Sorted keeps reads sequential on disk."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def take_sample(dataset, size: int | None, seed: int) -> tuple[np.ndarray, ImageArray]:
    """The positions and the images of the seeded subset of `dataset`."""
    index = sample_indices(len(dataset), size, seed)
    return index, dataset.take(index)
