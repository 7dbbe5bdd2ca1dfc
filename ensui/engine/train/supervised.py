"""The supervised recipe: Table i's optimizer and schedule, Table iii's transforms,
a checked checkpoint after every epoch and exact resumption from it.

Randomness is derived from (seed, epoch, batch), not from a stream that runs through
the whole job, so an interrupted run resumed from its checkpoint ends with the same
weights as one that never stopped (on CPU, where kernels are deterministic).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ensui.engine import artifacts
from ensui.engine.device import autocast, memory_format
from ensui.engine.predict import accuracy_and_nll, predict
from ensui.engine.train.schedule import lr_at, make_optimizer

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the recipe does not train at these settings."""


class Stopped(RuntimeError):
    """Training was asked to stop; the last finished epoch is checkpointed."""


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's live metrics; a recipe without one of the accuracies gives None, and
    its own indicators (e.g. DINO's collapse measures) go in `extra`."""

    epoch: int
    loss: float
    train_acc: float | None
    val_acc: float | None
    lr: float
    seconds: float
    extra: dict = field(default_factory=dict)


def train(model: torch.nn.Module, data, val, params: dict, run_dir: Path,
          device: torch.device,
          on_epoch: Callable[[EpochMetrics], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Path:
    """Train to `params['epochs']`, resuming from run_dir's checkpoint; returns the weights file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device, memory_format=memory_format(device))
    optimizer = make_optimizer(model.parameters(), params["optimizer"])
    start = _resume(model, optimizer, run_dir / CHECKPOINT)
    iters = max(1, len(data) // params["batch_size"])
    with CheckpointWriter(run_dir / CHECKPOINT) as checkpoints:
        for epoch in range(start, params["epochs"]):
            if should_stop and should_stop():
                raise Stopped(f"stopped before epoch {epoch + 1}")
            began = time.perf_counter()
            torch.manual_seed(params["seed"] * 100_003 + epoch)  # dropout draws of this epoch
            loss, acc, lr = _one_epoch(model, optimizer, data, params, epoch, iters, device)
            val_acc, _ = accuracy_and_nll(predict(model, val, 256, device, params["image_size"]),
                                          val.labels)
            checkpoints.submit({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "epoch": epoch + 1})
            if on_epoch:
                on_epoch(EpochMetrics(epoch + 1, loss, acc, val_acc, lr, time.perf_counter() - began))
    weights = run_dir / WEIGHTS
    artifacts.save_state(model.state_dict(), weights)
    return weights


class CheckpointWriter:
    """Writes each epoch's checkpoint in a background thread while the next epoch trains.

    The state is copied to CPU first, so training can change the live tensors. One write
    is in flight at most; leaving the block (normally or on an error) waits for it, so a
    returned or stopped `train` has its last checkpoint on disk. A crash mid-write leaves
    the previous checkpoint, which the atomic rename never touches.
    """

    def __init__(self, path: Path):
        self.path = path
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, state: dict) -> None:
        self._wait()
        snapshot = _to_cpu(state)
        self._thread = threading.Thread(target=self._write, args=(snapshot,), daemon=True)
        self._thread.start()

    def _write(self, state: dict) -> None:
        try:
            artifacts.save_state(state, self.path)
        except BaseException as exc:  # surfaced in the training thread by _wait
            self._error = exc

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._wait()


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copy = type(value)((k, _to_cpu(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # module versions, e.g. torchvision MNASNet's,
            copy._metadata = value._metadata  # which refuses a state_dict without them
        return copy
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _one_epoch(model, optimizer, data, params, epoch, iters, device):
    model.train()
    fmt = memory_format(device)
    base_lr = params["optimizer"]["lr"]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    lr = base_lr
    for step, (x, y) in enumerate(data.epoch(epoch, params["batch_size"], params["seed"], device)):
        lr = lr_at(epoch * iters + step, iters, params["epochs"], base_lr, params["scheduler"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        with autocast(device):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    mean_loss = (loss_sum / max(seen, 1)).item()
    if not torch.isfinite(torch.tensor(mean_loss)):
        raise TrainingDiverged(f"loss became {mean_loss} in epoch {epoch + 1} (lr {lr:.3g}); "
                               "lower the learning rate or raise the batch size")
    return mean_loss, correct.item() / max(seen, 1), lr


def _resume(model, optimizer, checkpoint: Path) -> int:
    """Epochs already done according to an intact checkpoint (0 when none)."""
    state = artifacts.load_state(checkpoint)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])
