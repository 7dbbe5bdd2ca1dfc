"""Labelled image arrays held in memory: the common shape of small datasets."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageArray:
    """uint8 images (N, 3, H, W), int64 labels (N,), and a stable id per sample."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: tuple[str, ...]
    classes: tuple[str, ...]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError("images must be uint8 (N, C, H, W)")
        if not (len(self.images) == len(self.labels) == len(self.ids)):
            raise ValueError("images, labels and ids differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def subset(self, index: torch.Tensor) -> "ImageArray":
        return ImageArray(self.images[index], self.labels[index],
                          tuple(self.ids[i] for i in index.tolist()), self.classes)

    def take(self, index) -> "ImageArray":
        return self.subset(torch.as_tensor(index, dtype=torch.int64))

    def head(self, n: int) -> "ImageArray":
        return self.subset(torch.arange(min(n, len(self))))

    def batches(self, batch_size: int):
        """(uint8 images, labels, start) in order, for evaluation."""
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.images[start:stop], self.labels[start:stop], start
