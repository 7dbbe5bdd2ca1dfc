"""Time of one joint (NCL) training step of M members vs M separate supervised steps.

Both sides run the same members (tiny Table i rows, each with its row's optimizer) on the
same pre-augmented batches in the same process: the joint side is `ncl.team_step` (every
forward with its member's RNG swapped in, one `JointLoss`, one backward, M optimizer
steps), the separate side is the supervised recipe's step once per member. The forward
and backward work is the same, so the ratio (joint ÷ separate) should be close to 1; what
it adds is the stacking, the loss and the RNG swaps.

    python bench/ncl_step.py [--members SqueezeNet MNASNET_1 ResNext50_32.4l]
                             [--batch 64] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from itertools import count, islice

import torch
import torch.nn.functional as F

from ensui import paper
from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.training import ArrayTrain
from ensui.engine.device import autocast, memory_format, resolve_device
from ensui.engine.models.factory import build_model
from ensui.engine.train import ncl
from ensui.engine.train.ncl_loss import JointLoss
from ensui.engine.train.schedule import make_optimizer

ROWS = {r["id"]: r for r in paper.table_i() if r["recipe"] == "supervised"}
DEFAULT = ("SqueezeNet", "MNASNET_1", "ResNext50_32.4l")


def team(ids, device):
    models = [build_model(ROWS[i]["arch"], "tiny", 10, 32, seed=n).to(
        device, memory_format=memory_format(device)) for n, i in enumerate(ids)]
    optimizers = [make_optimizer(m.parameters(), ROWS[i]["optimizer"]) for m, i in zip(models, ids)]
    return models, optimizers


def separate_step(models, optimizers, x, y, device) -> None:
    """The supervised recipe's step, once per member."""
    for model, optimizer in zip(models, optimizers):
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(side: str, ids, batches, loss_fn, device) -> float:
    models, optimizers = team(ids, device)
    for model in models:
        model.train()
    rngs = [ncl.MemberRng(n, 0, device) for n in range(len(models))]

    def step(x, y):
        if side == "joint":
            ncl.team_step(models, optimizers, rngs, loss_fn, x, y, device)
        else:
            separate_step(models, optimizers, x, y, device)

    step(*batches[0])  # warm-up: first-call kernel selection is not what we measure
    _sync(device)
    began = time.perf_counter()
    for x, y in batches[1:]:
        step(x, y)
    _sync(device)
    return time.perf_counter() - began


def _stream(data, batch: int, device):
    """Augmented batches on `device`, epoch after epoch."""
    for epoch in count():
        for x, y in data.epoch(epoch, batch, seed=0):
            yield x.to(device).contiguous(memory_format=memory_format(device)), y.to(device)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", choices=sorted(ROWS), default=list(DEFAULT))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="ncl")
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()

    device = resolve_device(args.device)
    train, _ = embedded_split(32, 0.2, 0)
    data = ArrayTrain(train, Augment(32, (0.5, 1.0), hflip=0.0))
    batches = list(islice(_stream(data, args.batch, device), args.steps + 1))
    loss_fn = JointLoss(args.variant, args.lam)
    best = {"joint": float("inf"), "separate": float("inf")}
    for repeat in range(args.repeats):
        # alternate the order so drift in machine speed does not favour one side
        order = ("joint", "separate") if repeat % 2 == 0 else ("separate", "joint")
        for side in order:
            best[side] = min(best[side], timed(side, args.members, batches, loss_fn, device))
    print(f"members: {', '.join(args.members)} (tiny), batch {args.batch}, {args.steps} steps, "
          f"best of {args.repeats}, {device}, {torch.get_num_threads()} threads, "
          f"loss {args.variant} λ={args.lam}")
    for side in ("separate", "joint"):
        print(f"{side:9s}: {best[side] / args.steps * 1000:8.1f} ms/step")
    print(f"joint / separate: {best['joint'] / best['separate']:.2f}x")


if __name__ == "__main__":
    main()
