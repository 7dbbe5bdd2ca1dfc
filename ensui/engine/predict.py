"""Running a model over a labelled set in order: logits, accuracy and NLL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ensui.engine.data.augment import resize_batch
from ensui.engine.device import autocast, memory_format


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset, batch_size: int, device: torch.device,
            size: int | None = None) -> torch.Tensor:
    """float32 logits (N, classes) on CPU for `dataset.batches()` in order."""
    model.eval()
    fmt = memory_format(device)
    chunks = []
    for images, _, _ in dataset.batches(batch_size):
        x = resize_batch(images.to(device, non_blocking=True), size or images.shape[-1])
        with autocast(device):
            chunks.append(model(x.contiguous(memory_format=fmt)).float().cpu())
    return torch.cat(chunks)


def accuracy_and_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    logits = logits.float()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    nll = F.cross_entropy(logits, labels).item()
    return accuracy, nll
