"""Images/s of ensui's training loop vs a bare PyTorch loop, same model, data and process.

Both loops do the same work per epoch: Table iii augmentation of the embedded digits in
batches, forward, cross-entropy, backward, SGD step, then one pass over the validation
set. ensui's loop adds what makes it dependable: per-iteration learning rates, metrics,
a checked checkpoint per epoch and the final weights file. The ratio
(ensui images/s ÷ bare images/s) is the cost of that; the target is ≥ 0.95.

    python bench/train_overhead.py [--family resnext] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.training import ArrayTrain
from ensui.engine.models.factory import build_model
from ensui.engine.predict import predict
from ensui.engine.train import supervised

ARCHS = {
    "resnext": {"family": "resnext", "cardinality": 32, "base_width": 4, "layers": [2, 2, 3, 2],
                "dropout": 0.2},
    "squeezenet": {"family": "squeezenet", "version": "1.1", "dropout": 0.5},
    "deit": {"family": "deit", "embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16},
}
OPT = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}


def bare_loop(model, data, val, epochs: int, batch: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=OPT["lr"], momentum=OPT["momentum"],
                                weight_decay=OPT["weight_decay"])
    for epoch in range(epochs):
        model.train()
        for x, y in data.epoch(epoch, batch, seed=0):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        predict(model, val, 256, torch.device("cpu"), 32)


def ensui_loop(model, data, val, epochs: int, batch: int) -> None:
    params = {"epochs": epochs, "batch_size": batch, "seed": 0, "image_size": 32,
              "optimizer": OPT, "scheduler": {"name": "cosine"}}
    with tempfile.TemporaryDirectory() as run_dir:
        supervised.train(model, data, val, params, Path(run_dir), torch.device("cpu"),
                         on_epoch=lambda metrics: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(ARCHS), default="resnext")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    train, val = embedded_split(32, 0.2, 0)
    data = ArrayTrain(train, Augment(32, (0.5, 1.0), hflip=0.0))
    images = args.epochs * (len(data) // args.batch) * args.batch
    best = {"bare": float("inf"), "ensui": float("inf")}
    for repeat in range(args.repeats):
        # alternate the order so drift in machine speed does not favour one side
        order = ("bare", "ensui") if repeat % 2 == 0 else ("ensui", "bare")
        for name in order:
            model = build_model(ARCHS[args.family], "tiny", 10, 32, seed=0)
            loop = bare_loop if name == "bare" else ensui_loop
            began = time.perf_counter()
            loop(model, data, val, args.epochs, args.batch)
            best[name] = min(best[name], time.perf_counter() - began)
    rates = {k: images / v for k, v in best.items()}
    print(f"model: tiny {args.family}, {args.epochs} epochs of {len(data)} images, batch "
          f"{args.batch}, best of {args.repeats}, {torch.get_num_threads()} threads")
    print(f"bare PyTorch loop : {rates['bare']:8.1f} images/s")
    print(f"ensui train loop  : {rates['ensui']:8.1f} images/s")
    print(f"ratio ensui/bare  : {rates['ensui'] / rates['bare']:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
