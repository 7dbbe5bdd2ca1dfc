"""The ``ncl`` recipe: one job trains a whole team jointly (methods.md §10).

Every step, all members see the same augmented batch; their logits are stacked (M, B, K)
and `JointLoss` gives one `total` to back-propagate; then each member's own optimizer
steps, at its own Table i learning rate and schedule. Checkpoints, exact resumption,
`Stopped` and `TrainingDiverged` work as in the supervised recipe.

λ = 0 reproduces independent training bit for bit (on CPU): each member ends with the
weights `supervised.train` gives it alone with `seed` = the team's `seed` (and the
member's `seed` the same, or left out). Three things make it so. `total` is the Σ-form, so at λ = 0 each member's gradient is exactly
that of its own CE. Batch order and augmentation come from the team's `seed` exactly as
in `supervised`. And each member has its own stream of dropout draws: `supervised` seeds
the global RNG once per epoch with seed·100003 + epoch and its model draws masks in
forward order, but here the members' forwards interleave, so one shared stream would
hand member 2 the draws member 1 would have made next. `MemberRng` keeps one RNG state
per member (CPU, and the current CUDA device's), seeded per epoch as `supervised` seeds
it, from the member's `seed`, and swaps it in around that member's forward only.
Backward passes draw nothing (dropout reuses its saved mask).

One backward through the joint loss needs every member's graph at once, so activation
memory peaks at the sum of the members', not the largest one's.

`params`:
    members      one dict per model, in order: `optimizer`, `scheduler` (Table i's),
                 `seed` (its dropout stream; the team's `seed` when left out)
    epochs, batch_size, image_size
    seed         the data seed: order and augmentation, shared by all members
    loss         `JointLoss` fields: variant, lam, consensus (, detach_hessian)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ensui.engine import artifacts
from ensui.engine.device import autocast, memory_format
from ensui.engine.predict import predict
from ensui.engine.train.ncl_loss import JointLoss, LossParts
from ensui.engine.train.schedule import lr_at, make_optimizer
from ensui.engine.train.supervised import CheckpointWriter, Stopped, TrainingDiverged

__all__ = ["CHECKPOINT", "MemberRng", "Stopped", "TeamEpoch", "TrainingDiverged",
           "ensemble_accuracy", "mean_disagreement", "member_weights", "predict_team",
           "team_step", "train_team"]

CHECKPOINT = "checkpoint.pt"
VAL_BATCH = 256


@dataclass(frozen=True)
class TeamEpoch:
    """One epoch of joint training. `loss` is the sample-mean `total` (Σ-form: at λ = 0,
    the sum of the member CEs); `penalty` is `LossParts.penalty`'s mean (≥ 0, higher =
    more diverse); `disagreement` the mean pairwise label disagreement on val."""

    epoch: int
    loss: float
    penalty: float
    member_ce: tuple[float, ...]
    member_val_acc: tuple[float, ...]
    ensemble_val_acc: float
    disagreement: float
    lrs: tuple[float, ...]
    seconds: float


def member_weights(run_dir: Path, index: int) -> Path:
    return run_dir / f"member_{index}.pt"


def train_team(models: Sequence[nn.Module], data, val, params: dict, run_dir: Path,
               device: torch.device,
               on_epoch: Callable[[TeamEpoch], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> list[Path]:
    """Train the team to `params['epochs']`, resuming from run_dir's checkpoint; returns
    one weights file per member, in order."""
    members = params["members"]
    if len(members) != len(models):
        raise ValueError(f"{len(models)} models but {len(members)} member settings")
    run_dir.mkdir(parents=True, exist_ok=True)
    for model in models:
        model.to(device, memory_format=memory_format(device))
    optimizers = [make_optimizer(m.parameters(), p["optimizer"]) for m, p in zip(models, members)]
    loss_fn = JointLoss(**params["loss"])
    start = _resume(models, optimizers, run_dir / CHECKPOINT)
    with CheckpointWriter(run_dir / CHECKPOINT) as checkpoints:
        for epoch in range(start, params["epochs"]):
            if should_stop and should_stop():
                raise Stopped(f"stopped before epoch {epoch + 1}")
            began = time.perf_counter()
            sums = _one_epoch(models, optimizers, loss_fn, data, params, epoch, device)
            logits = predict_team(models, val, device, params["image_size"])
            checkpoints.submit({"models": [m.state_dict() for m in models],
                                "optimizers": [o.state_dict() for o in optimizers],
                                "epoch": epoch + 1})
            if on_epoch:
                on_epoch(_team_epoch(epoch, sums, logits, val.labels, began))
    paths = [member_weights(run_dir, i) for i in range(len(models))]
    for model, path in zip(models, paths):
        artifacts.save_state(model.state_dict(), path)
    return paths


class MemberRng:
    """One member's RNG state, seeded per epoch as `supervised` seeds the global RNG and
    swapped in around that member's forward, leaving the global state as it found it."""

    def __init__(self, seed: int, epoch: int, device: torch.device):
        self.cuda = device.type == "cuda"
        outside = self._capture()
        torch.manual_seed(seed * 100_003 + epoch)
        self.state = self._capture()
        self._restore(outside)

    @contextmanager
    def active(self) -> Iterator[None]:
        outside = self._capture()
        self._restore(self.state)
        try:
            yield
        finally:
            self.state = self._capture()
            self._restore(outside)

    def _capture(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None

    def _restore(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])


@dataclass
class _EpochSums:
    """Sample-weighted sums over an epoch, kept on the device until it ends."""

    loss: torch.Tensor
    penalty: torch.Tensor
    member_ce: torch.Tensor
    seen: int = 0
    lrs: tuple[float, ...] = ()

    def add(self, parts: LossParts, batch: int) -> None:
        self.loss += parts.total.detach() * batch
        self.penalty += parts.penalty * batch
        self.member_ce += parts.member_ce * batch
        self.seen += batch

    def means(self) -> tuple[float, float, tuple[float, ...]]:
        seen = max(self.seen, 1)
        ce = (self.member_ce / seen).tolist()
        return (self.loss / seen).item(), (self.penalty / seen).item(), tuple(ce)


def team_step(models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer],
              rngs: Sequence[MemberRng], loss_fn: JointLoss, x: torch.Tensor,
              y: torch.Tensor, device: torch.device) -> LossParts:
    """One joint step on a batch already on `device`; returns the `LossParts`."""
    with autocast(device):
        outputs = []
        for model, rng in zip(models, rngs):
            with rng.active():
                outputs.append(model(x).float())
        parts = loss_fn(torch.stack(outputs), y)
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    for optimizer in optimizers:
        optimizer.step()
    return parts


def _one_epoch(models, optimizers, loss_fn, data, params, epoch, device) -> _EpochSums:
    for model in models:
        model.train()
    members, fmt = params["members"], memory_format(device)
    rngs = [MemberRng(p.get("seed", params["seed"]), epoch, device) for p in members]
    iters = max(1, len(data) // params["batch_size"])
    zero = torch.zeros((), device=device)
    sums = _EpochSums(zero.clone(), zero.clone(), torch.zeros(len(models), device=device))
    for step, (x, y) in enumerate(data.epoch(epoch, params["batch_size"], params["seed"], device)):
        sums.lrs = _set_lrs(optimizers, members, epoch * iters + step, iters, params["epochs"])
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        sums.add(team_step(models, optimizers, rngs, loss_fn, x, y, device), len(y))
    loss, _, ce = sums.means()
    if not all(np.isfinite([loss, *ce])):
        raise TrainingDiverged(f"loss became {loss} in epoch {epoch + 1} (lrs {sums.lrs}); "
                               "lower the learning rates or λ, or raise the batch size")
    return sums


def _set_lrs(optimizers, members, iteration: int, iters: int, epochs: int) -> tuple[float, ...]:
    lrs = []
    for optimizer, member in zip(optimizers, members):
        lr = lr_at(iteration, iters, epochs, member["optimizer"]["lr"], member["scheduler"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        lrs.append(lr)
    return tuple(lrs)


def predict_team(models: Sequence[nn.Module], val, device: torch.device,
                 image_size: int | None = None) -> torch.Tensor:
    """float32 logits (M, N, K) on CPU of every member on `val`, in order."""
    return torch.stack([predict(m, val, VAL_BATCH, device, image_size) for m in models])


def ensemble_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of the ``average`` consensus: argmax of the mean member probability."""
    mean_probs = torch.softmax(logits.float(), -1).mean(0)
    return (mean_probs.argmax(-1) == labels).float().mean().item()


def mean_disagreement(logits: torch.Tensor) -> float:
    """Label disagreement (methods.md §3, as `prediction.label_disagreement`): the share
    of samples on which two members predict different labels, mean over pairs; 0 for one
    member."""
    members = logits.shape[0]
    if members < 2:
        return 0.0
    labels = logits.argmax(-1)
    differ = (labels[:, None] != labels[None, :]).float().mean(-1)
    first, second = torch.triu_indices(members, members, 1)
    return differ[first, second].mean().item()


def _team_epoch(epoch: int, sums: _EpochSums, logits: torch.Tensor, labels: torch.Tensor,
                began: float) -> TeamEpoch:
    loss, penalty, ce = sums.means()
    member_acc = (logits.argmax(-1) == labels).float().mean(1).tolist()
    return TeamEpoch(epoch + 1, loss, penalty, ce, tuple(member_acc),
                     ensemble_accuracy(logits, labels), mean_disagreement(logits), sums.lrs,
                     time.perf_counter() - began)


def _resume(models, optimizers, checkpoint: Path) -> int:
    """Epochs already done according to an intact checkpoint of this team (0 when none)."""
    state = artifacts.load_state(checkpoint)
    if state is None:
        return 0
    if len(state["models"]) != len(models):
        raise ValueError(f"{checkpoint} holds {len(state['models'])} members, "
                         f"this team has {len(models)}")
    for model, optimizer, weights, opt_state in zip(models, optimizers, state["models"],
                                                    state["optimizers"]):
        model.load_state_dict(weights)
        optimizer.load_state_dict(opt_state)
    return int(state["epoch"])
