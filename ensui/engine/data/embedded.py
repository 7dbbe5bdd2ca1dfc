"""The embedded default dataset: scikit-learn's handwritten digits, shipped with the package.

1,797 real 8×8 grey images of 10 classes, needing no download. They are upsampled to
`image_size` (32 by default) and repeated to 3 channels so every architecture takes them
as it would take RGB photos. The train/validation split is stratified and seeded, so it
is the same on every machine.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ensui.engine.data.arrays import ImageArray


def load_digits_images(image_size: int = 32) -> ImageArray:
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    big = F.interpolate(grey, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    ids = tuple(f"digits/{i:04d}" for i in range(len(labels)))
    return ImageArray(images, labels, ids, tuple(str(c) for c in range(10)))


def split(data: ImageArray, val_fraction: float, seed: int) -> tuple[ImageArray, ImageArray]:
    """Stratified split: the same share of every class goes to validation."""
    gen = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for cls in range(len(data.classes)):
        members = (data.labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_val = max(1, round(len(members) * val_fraction))
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return (data.subset(torch.cat(train_idx).sort().values),
            data.subset(torch.cat(val_idx).sort().values))


def embedded_split(image_size: int, val_fraction: float, seed: int) -> tuple[ImageArray, ImageArray]:
    return split(load_digits_images(image_size), val_fraction, seed)
