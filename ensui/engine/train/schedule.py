"""Optimizers and per-iteration learning rates for Table i's recipes.

Schedules are evaluated per iteration, so a step size given in fractional epochs
(MNASNet's γ 0.97 every 2.4 epochs) steps at the right iteration.
"""

from __future__ import annotations

import math

import torch


def make_optimizer(params, opt: dict) -> torch.optim.Optimizer:
    name = opt["name"]
    decay = opt.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=opt["lr"], momentum=opt.get("momentum", 0.0),
                               weight_decay=decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=opt["lr"], alpha=opt.get("alpha", 0.99),
                                   momentum=opt.get("momentum", 0.0),
                                   eps=opt.get("eps", 1e-8), weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=opt["lr"], weight_decay=opt.get("weight_decay", 0.01))
    raise ValueError(f"unknown optimizer '{name}' (sgd, rmsprop, adamw)")


def lr_at(iteration: int, iters_per_epoch: int, epochs: int, base_lr: float, sched: dict) -> float:
    """Learning rate for a 0-based global iteration, after an optional linear warm-up."""
    warmup = round(sched.get("warmup_epochs", 0) * iters_per_epoch)
    if iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    name = sched["name"]
    if name == "step":
        step_iters = max(1, round(sched["step_epochs"] * iters_per_epoch))
        return base_lr * sched["gamma"] ** (iteration // step_iters)
    if name == "cosine":
        total = max(1, epochs * iters_per_epoch)
        return base_lr * 0.5 * (1 + math.cos(math.pi * iteration / total))
    if name == "none":
        return base_lr
    raise ValueError(f"unknown scheduler '{name}' (step, cosine, none)")


def scale_schedule(sched: dict, epochs: int, row_epochs: int | None, mode: str) -> dict:
    """With fewer epochs than the row's, keep the schedule's shape ('proportional')."""
    if sched["name"] != "step" or mode == "absolute" or not row_epochs or epochs == row_epochs:
        return dict(sched)
    return {**sched, "step_epochs": sched["step_epochs"] * epochs / row_epochs}
