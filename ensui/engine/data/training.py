"""Training data for the embedded default: an in-memory array, shuffled and augmented
per batch with generators derived from (seed, epoch, batch), so an epoch is the same
whether the run was interrupted before it or not.
"""

from __future__ import annotations

import torch

from ensui.engine.data.arrays import ImageArray
from ensui.engine.data.augment import Augment


class ArrayTrain:
    def __init__(self, data: ImageArray, augment: Augment):
        self.data, self.augment = data, augment
        self.classes = data.classes

    def __len__(self) -> int:
        return len(self.data)

    def epoch(self, epoch: int, batch_size: int, seed: int, device: torch.device | None = None):
        """Batches of (float [0, 1] images, labels); the last short batch is dropped.

        On CUDA the uint8 batch goes over from pinned memory and is augmented on the GPU.
        """
        cuda = device is not None and device.type == "cuda"
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(
            seed * 100_003 + epoch))
        n_batches = max(1, len(order) // batch_size)
        for b in range(n_batches):
            index = order[b * batch_size:(b + 1) * batch_size]
            gen = torch.Generator().manual_seed((seed * 100_003 + epoch) * 10_007 + b)
            images, labels = self.data.images[index], self.data.labels[index]
            if cuda:
                images = images.pin_memory().to(device, non_blocking=True)
                labels = labels.pin_memory().to(device, non_blocking=True)
            yield self.augment(images, gen), labels
