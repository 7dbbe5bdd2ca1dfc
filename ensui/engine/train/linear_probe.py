"""DINO's linear probe on cached features (`training.dino.probe: cached`, tiny default).

The frozen teacher backbone runs once over the un-augmented training images; then the
probe — batch norm without affine parameters, then the linear classifier, as
`models.dino.BackboneClassifier` holds them — trains on those features for many epochs
(SGD, momentum 0.9, no weight decay, cosine schedule, shuffled per epoch by the seed).
The batch norm standardises with the whole training set's feature statistics, fixed
(its running statistics, eval mode throughout): batch statistics of 64 images amplify
the noise of nearly constant feature dimensions, and the probe then barely learns
(measured on a short DINO ResNet run: 19 % with batch statistics, 43 % fixed, 46 % for
scikit-learn's logistic regression on the same features).
An epoch costs a pass over a (N, D) matrix, not a backbone pass, so the probe converges
where the augmented probe (`probe: augmented`, DINO's own recipe, each epoch a backbone
pass over fresh crops) would need far more epochs than a small study can pay for.

Without augmentation the probe sees each image as it is; with thousands of images and a
linear classifier that matters little, and it is recorded in the job's parameters. The
whole training set's features must fit in memory, which is why paper scale (1.28 M
ImageNet images) keeps the augmented probe by default. A stopped probe starts over:
it takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ensui.engine import artifacts
from ensui.engine.attribute import features
from ensui.engine.train.schedule import lr_at
from ensui.engine.train.supervised import WEIGHTS, EpochMetrics, Stopped

REPORTS = 10  # epochs reported: about this many, evenly spaced, and always the last


def train_cached_probe(model: nn.Module, train_images, val, params: dict, run_dir: Path,
                       device: torch.device,
                       on_epoch: Callable[[EpochMetrics], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> Path:
    """Train the classifier of a frozen-backbone DINO `model` (Normalized wrapper) on its
    cached features; save the whole model's state_dict and return its path."""
    size = params["image_size"]
    x = torch.from_numpy(features(model, train_images.images, device, size)).to(device)
    y = train_images.labels.to(device)
    val_x = torch.from_numpy(features(model, val.images, device, size)).to(device)
    norm = model.net.feature_norm
    with torch.no_grad():
        norm.running_mean.copy_(x.mean(0))
        norm.running_var.copy_(x.var(0, unbiased=False))
    head = nn.Sequential(norm, model.net.classifier).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=params["optimizer"]["lr"], momentum=0.9,
                                weight_decay=params["optimizer"].get("weight_decay", 0.0))
    batch, epochs = params["batch_size"], params["epochs"]
    iters = max(1, len(y) // batch)
    every = max(1, epochs // REPORTS)
    generator = torch.Generator().manual_seed(params["seed"])
    for epoch in range(epochs):
        if should_stop and should_stop():
            raise Stopped(f"stopped before probe epoch {epoch + 1}")
        began = time.perf_counter()
        order = torch.randperm(len(y), generator=generator).to(device)
        head.train()
        norm.eval()  # fixed standardisation, as at evaluation
        total, right, lr = 0.0, 0, 0.0
        for step in range(iters):
            lr = lr_at(epoch * iters + step, iters, epochs, params["optimizer"]["lr"],
                       params["scheduler"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[step * batch:(step + 1) * batch]
            logits = head(x[index])
            loss = F.cross_entropy(logits, y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            right += (logits.argmax(1) == y[index]).sum().item()
        seen = iters * batch if len(y) >= batch else len(y)
        if on_epoch and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
            on_epoch(EpochMetrics(epoch + 1, total / seen, right / seen,
                                  _accuracy(head, val_x, val.labels), lr,
                                  time.perf_counter() - began))
    weights = run_dir / WEIGHTS
    artifacts.save_state(model.state_dict(), weights)
    return weights


def _accuracy(head: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    head.eval()
    with torch.no_grad():
        return (head(x).argmax(1).cpu() == labels).float().mean().item()
