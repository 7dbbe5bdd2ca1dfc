"""The DINO backbone stage (methods.md §8): a student and its EMA teacher trained without
labels on multi-crop views; one resumable job whose artifact is the teacher's backbone.

Per iteration, as DINO's `main_dino.py` (single process): the schedules' values for the
learning rate, weight decay and teacher momentum are applied; the teacher sees the two
global views, the student every view (grouped by resolution, one pass per size); the
DINO loss; per-parameter gradient clipping; the head's last layer frozen during the first
epoch(s); the optimizer step; the EMA update of the teacher.

Live metrics per epoch: the DINO loss, the teacher's entropy and its KL to the uniform
distribution (collapse indicators: entropy near 0 with KL near log K is one prototype for
everything, entropy near log K is uniform outputs), and, where the training images are
in memory, a k-NN accuracy of the teacher's features on the validation set (DINO's
monitor: a learning signal without training a classifier).

Randomness is derived from (seed, epoch, batch) as in the supervised recipe, so a resumed
run ends with the same weights as one that never stopped (on CPU).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ensui.engine import artifacts
from ensui.engine.device import autocast
from ensui.engine.train import dino
from ensui.engine.train.supervised import (
    CheckpointWriter,
    EpochMetrics,
    Stopped,
    TrainingDiverged,
)

CHECKPOINT = "checkpoint.pt"
BACKBONE = "backbone.pt"
BACKBONE_PREFIX = "net.backbone."  # keys of the backbone in a built dino_* model


class DinoNet(nn.Module):
    """A built dino_* model's backbone (normalization included) under a projection head.

    Views of one size go through the backbone together, as DINO's MultiCropWrapper does.
    """

    def __init__(self, model: nn.Module, head: dino.DINOHead):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, views: list[Tensor]) -> Tensor:
        feats, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-1] == views[start].shape[-1]:
                end += 1
            feats.append(self.model.features(torch.cat(views[start:end])))
            start = end
        return self.head(torch.cat(feats))


@dataclass(frozen=True)
class Schedules:
    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray


def schedules(p: dict, iters: int) -> Schedules:
    """DINO's per-iteration schedules; the learning rate is scaled linearly by batch / 256."""
    lr = p["optimizer"]["lr"] * p["batch_size"] / 256
    final_lr = lr if p["scheduler"]["name"] == "none" else p["min_lr"]
    return Schedules(
        dino.cosine_schedule(lr, final_lr, p["epochs"], iters, p["warmup_epochs"]),
        dino.cosine_schedule(p["weight_decay"], p["weight_decay_end"], p["epochs"], iters),
        dino.cosine_schedule(p["teacher_momentum"], 1.0, p["epochs"], iters))


def build_student(model: nn.Module, p: dict) -> DinoNet:
    """The model's backbone (its classifier dropped) under a head of the configured size."""
    in_dim = model.net.classifier.in_features
    model.net.classifier = nn.Identity()  # unused by the features; the probe builds its own
    model.net.feature_norm = nn.Identity()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p["seed"])
        head = dino.DINOHead(in_dim, p["out_dim"], p["head_hidden"], p["head_bottleneck"])
    return DinoNet(model, head)


def pretrain(model: nn.Module, data, knn_data, params: dict, run_dir: Path,
             device: torch.device, on_epoch: Callable[[EpochMetrics], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Path:
    """Train to `params['epochs']`, resuming from run_dir's checkpoint; returns the
    teacher backbone's weights file. `data.epoch(...)` yields (views, labels); `knn_data`
    is (train ImageArray, val ImageArray) for the k-NN monitor, or None."""
    run_dir.mkdir(parents=True, exist_ok=True)
    student = build_student(model, params).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    loss_fn = dino.DINOLoss(params["out_dim"], 2 + params["n_local"], params["epochs"],
                            warmup_teacher_temp=params["warmup_teacher_temp"],
                            teacher_temp=params["teacher_temp"],
                            warmup_epochs=params["warmup_teacher_temp_epochs"]).to(device)
    optimizer = _optimizer(student, params)
    start = _resume(student, teacher, loss_fn, optimizer, run_dir / CHECKPOINT)
    iters = max(1, len(data) // params["batch_size"])
    sched = schedules(params, iters)
    with CheckpointWriter(run_dir / CHECKPOINT) as checkpoints:
        for epoch in range(start, params["epochs"]):
            if should_stop and should_stop():
                raise Stopped(f"stopped before epoch {epoch + 1}")
            began = time.perf_counter()
            stats = _one_epoch(student, teacher, loss_fn, optimizer, data, params, epoch,
                               iters, sched, device)
            knn = None if knn_data is None else knn_accuracy(teacher.model, *knn_data, device)
            checkpoints.submit({"student": student.state_dict(), "teacher": teacher.state_dict(),
                                "center": loss_fn.center, "optimizer": optimizer.state_dict(),
                                "epoch": epoch + 1})
            if on_epoch:
                on_epoch(EpochMetrics(epoch + 1, stats.pop("loss"), None, knn, stats.pop("lr"),
                                      time.perf_counter() - began, extra=stats))
    return save_backbone(teacher.model, run_dir / BACKBONE)


def _optimizer(student: DinoNet, p: dict) -> torch.optim.Optimizer:
    groups = dino.param_groups(student)
    if p["optimizer"]["name"] == "sgd":  # DINO: SGD with lr 0 set per step, momentum 0.9
        return torch.optim.SGD(groups, lr=0.0, momentum=p["optimizer"].get("momentum", 0.9))
    return torch.optim.AdamW(groups, lr=0.0)


def _one_epoch(student, teacher, loss_fn, optimizer, data, p, epoch, iters, sched,
               device) -> dict:
    student.train()
    teacher.train()  # as DINO: batch statistics in both (buffers follow the student)
    sums = torch.zeros(3, device=device)  # loss, teacher entropy, KL to uniform
    steps = 0
    for step, (views, _) in enumerate(data.epoch(epoch, p["batch_size"], p["seed"], device)):
        it = min(epoch * iters + step, len(sched.lr) - 1)
        dino.set_lr_and_wd(optimizer, float(sched.lr[it]), float(sched.weight_decay[it]))
        views = [v.to(device, non_blocking=True) for v in views]
        with autocast(device):
            with torch.no_grad():
                teacher_out = teacher(views[:2])
            student_out = student(views)
        temp = loss_fn.teacher_temp_at(epoch)
        center = loss_fn.center.clone()
        loss = loss_fn(student_out, teacher_out, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if p["clip_grad"]:
            dino.clip_gradients(student, p["clip_grad"])
        dino.cancel_last_layer_grads(student.head, epoch, p["freeze_last_layer"])
        optimizer.step()
        dino.ema_update(student, teacher, float(sched.momentum[it]))
        sums += torch.stack([loss.detach().float(),
                             dino.teacher_entropy(teacher_out, temp, center),
                             dino.kl_to_uniform(teacher_out, temp, center).to(device)])
        steps += 1
    loss, entropy, kl = (sums / max(steps, 1)).tolist()
    if not np.isfinite(loss):
        raise TrainingDiverged(f"DINO loss became {loss} in epoch {epoch + 1}; lower the "
                               "learning rate or raise the batch size")
    last = min(epoch * iters + max(steps - 1, 0), len(sched.lr) - 1)
    return {"loss": loss, "lr": float(sched.lr[last]), "teacher_entropy": entropy,
            "kl_to_uniform": kl, "weight_decay": float(sched.weight_decay[last]),
            "teacher_momentum": float(sched.momentum[last])}


def _resume(student, teacher, loss_fn, optimizer, checkpoint: Path) -> int:
    state = artifacts.load_state(checkpoint)
    if state is None:
        return 0
    student.load_state_dict(state["student"])
    teacher.load_state_dict(state["teacher"])
    loss_fn.center.copy_(state["center"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def save_backbone(model: nn.Module, path: Path) -> Path:
    """The backbone's weights under the keys a built dino_* model uses."""
    state = {k: v for k, v in model.state_dict().items() if k.startswith(BACKBONE_PREFIX)}
    artifacts.save_state(state, path)
    return path


@torch.no_grad()
def knn_accuracy(model: nn.Module, train, val, device: torch.device, k: int = 20,
                 temperature: float = 0.07, batch: int = 256) -> float:
    """DINO's weighted k-NN classifier on L2-normalized features: each of the k nearest
    training images votes for its class with weight exp(cosine / T)."""
    was_training = model.training
    model.eval()
    ref, ref_labels = _features(model, train, device, batch), train.labels.to(device)
    query = _features(model, val, device, batch)
    model.train(was_training)
    sims, index = (query @ ref.T).topk(min(k, len(ref)), dim=1)
    votes = torch.zeros(len(query), int(ref_labels.max()) + 1, device=device)
    votes.scatter_add_(1, ref_labels[index], (sims / temperature).exp())
    return (votes.argmax(1).cpu() == val.labels).float().mean().item()


def _features(model, images, device, batch: int) -> Tensor:
    out = []
    for start in range(0, len(images), batch):
        x = images.images[start:start + batch].to(device).float() / 255
        out.append(F.normalize(model.features(x).float(), dim=1))
    return torch.cat(out)
