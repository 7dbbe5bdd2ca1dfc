"""Progressive shrinking of the elastic ResNet50 (BootstrapNAS, Listing 1), one stage per call.

Each stage is its own resumable job: `train_stage` starts from the previous stage's final
weights (`init_weights`, the path the previous call returned), reorganizes channels if the
stage says so, builds a fresh optimizer and trains with Listing 1's per-stage cosine
schedule, checkpointing after every epoch. Choices, with their reasons:

- One randomly sampled sub-network per step, as BootstrapNAS does (no extra max-network
  pass): a step costs at most one super-network forward and backward. The sample is drawn
  from the stage's dims only (listing.Stage), with a generator seeded by (seed, stage,
  epoch, step), so a resumed run draws what an uninterrupted one draws.
- After every epoch the super-network's BN statistics are re-estimated for the maximal
  network. Training reads batch statistics only, so this changes no gradient, and it makes
  the stored weights a correct full ResNet50 rather than a blend of sampled sub-networks'
  statistics. Sub-networks are evaluated on an extracted copy, recalibrated when the stage
  has `bn_adapt`, so the super-network's statistics stay the maximal network's.
- The epoch's minimal sub-network is the stage's own (the smallest it samples), the one
  whose accuracy the stage is meant to raise.
- Learning rate: Listing 1's `init_lr` (params["lr"] overrides it, e.g. when training from
  scratch rather than fine-tuning) on a cosine over `epochs_lr` epochs, held at 0 after.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ensui.engine import artifacts
from ensui.engine.device import autocast, memory_format
from ensui.engine.models.normalize import Normalized
from ensui.engine.nas.elastic_resnet import (
    ElasticResNet,
    extract,
    pre_logits,
    recalibrate_bn,
)
from ensui.engine.nas.listing import Listing, Stage
from ensui.engine.nas.macs import count_macs, count_parameters
from ensui.engine.nas.subnet_config import SubnetConfig, max_config, sample_config
from ensui.engine.predict import accuracy_and_nll, predict
from ensui.engine.train.schedule import lr_at, make_optimizer
from ensui.engine.train.supervised import CheckpointWriter, Stopped, TrainingDiverged
from ensui.errors import EnsuiError

__all__ = ["CHECKPOINT", "WEIGHTS", "Stopped", "SupernetEpoch", "TrainingDiverged",
           "evaluate_subnet", "stage_config", "stage_min_config", "train_stage"]

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "supernet.pt"
DEFAULT_OPTIMIZER = {"name": "sgd", "momentum": 0.9, "weight_decay": 0.0}
EVAL_BATCH = 256
BN_EPOCH = 1_000_000  # the data epoch BN images are drawn from: apart from training's


@dataclass(frozen=True)
class SupernetEpoch:
    stage_index: int  # 0-based, into the listing's stages
    epoch: int  # 1-based, within the stage
    loss: float
    max_acc: float
    min_acc: float
    lr: float
    seconds: float


def _elastic(model: nn.Module) -> ElasticResNet:
    net = model.net if isinstance(model, Normalized) else model
    if not isinstance(net, ElasticResNet):
        raise TypeError("expected an ElasticResNet (optionally Normalized), "
                        f"got {type(net).__name__}")
    return net


def stage_config(rng: random.Random, stage: Stage, layers: Sequence[int]) -> SubnetConfig:
    """A sub-network the stage trains: its dims sampled, the others at their maximum."""
    return sample_config(rng, stage.sampled_depth_indicator, stage.sampled_width_indicator,
                         layers, stage.expansion_choices)


def stage_min_config(stage: Stage, layers: Sequence[int]) -> SubnetConfig:
    """The smallest sub-network the stage samples."""
    depths = tuple(n - min(stage.sampled_depth_indicator, n - 1) for n in layers)
    width = stage.sampled_width_indicator - 1
    return SubnetConfig(width, depths, (min(stage.expansion_choices),) * sum(depths),
                        (width,) * len(layers))


def _step_rng(seed: int, stage_index: int, epoch: int, step: int) -> random.Random:
    return random.Random(((seed * 1_000_003 + stage_index) * 100_003 + epoch) * 10_007 + step)


def _batches(images: Tensor | Iterable[Tensor] | None, device: torch.device
             ) -> Iterator[Tensor] | None:
    """Batches on `device` of an image tensor, or of an iterable of batches."""
    if images is None:
        return None
    if isinstance(images, Tensor):
        images = images.split(EVAL_BATCH)
    return (x.to(device) for x in images)


def _subnet(model: nn.Module, cfg: SubnetConfig, bn_batches: Iterable[Tensor] | None
            ) -> nn.Module:
    """`cfg` as a standalone copy taking what `model` takes, BN recalibrated if batches given."""
    sub = extract(_elastic(model), cfg)
    if isinstance(model, Normalized):
        sub = Normalized(sub, pre_logits).to(model.mean.device)
    if bn_batches is not None:
        recalibrate_bn(sub, bn_batches)
    return sub.eval()


def _accuracy(model: nn.Module, val, device: torch.device, image_size: int | None) -> float:
    logits = predict(model, val, EVAL_BATCH, device, image_size)
    return accuracy_and_nll(logits, val.labels)[0]


def evaluate_subnet(net: nn.Module, cfg: SubnetConfig,
                    train_images_for_bn: Tensor | Iterable[Tensor] | None, val,
                    device: torch.device, image_size: int) -> tuple[float, int, int]:
    """(accuracy, MACs, parameters) of sub-network `cfg` of `net`, on `val`.

    The sub-network is extracted and its BN statistics re-estimated on
    `train_images_for_bn` (a tensor of [0, 1] images, or an iterable of batches; None
    keeps the super-network's sliced statistics), so `net` is left untouched.
    """
    sub = _subnet(net, cfg, _batches(train_images_for_bn, device))
    return (_accuracy(sub, val, device, image_size), count_macs(sub, image_size),
            count_parameters(sub))


def bn_images(data, n: int, batch_size: int, seed: int, device: torch.device
                ) -> Iterator[Tensor]:
    """The first `n` training images of a fixed augmented draw (all of them if fewer)."""
    left = n
    for x, _ in data.epoch(BN_EPOCH, batch_size, seed, device):
        yield x[:left].to(device, non_blocking=True)
        left -= len(x)
        if left <= 0:
            return


def _load_weights(model: nn.Module, path: Path) -> None:
    state = artifacts.load_state(path)
    if state is None:
        raise EnsuiError(f"{path}: the previous stage's weights are missing or damaged")
    model.load_state_dict(state)


def _start(model: nn.Module, optimizer, stage: Stage, index: int, run_dir: Path,
           init_weights: Path | None) -> int:
    """Epochs of this stage already done; at a fresh start, load and reorganize weights."""
    state = artifacts.load_state(run_dir / CHECKPOINT)
    if state is not None:
        if int(state["stage"]) != index:
            raise EnsuiError(f"{run_dir / CHECKPOINT}: a checkpoint of stage {state['stage']}, "
                             f"not {index}; give each stage its own run directory")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return int(state["epoch"])
    if init_weights is not None:
        _load_weights(model, Path(init_weights))
    if stage.reorg_weights:
        _elastic(model).reorganize_channels()
    return 0


def _resolve(listing: Listing, stage: Stage | int) -> tuple[int, Stage]:
    stages = listing.training.stages
    if isinstance(stage, int):
        return stage, stages[stage]
    if stage not in stages:
        raise ValueError("stage is not one of the listing's stages")
    return stages.index(stage), stage


@dataclass
class _StageRun:
    """What every epoch of one stage needs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: object
    val: object
    stage: Stage
    index: int
    listing: Listing
    params: dict
    device: torch.device
    base_lr: float

    @property
    def elastic(self) -> ElasticResNet:
        return _elastic(self.model)

    @property
    def layers(self) -> tuple[int, ...]:
        return self.elastic.widths.layers


def train_stage(net: nn.Module, data, val, stage: Stage | int, listing: Listing, params: dict,
                run_dir: Path, device: torch.device,
                on_epoch: Callable[[SupernetEpoch], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                init_weights: Path | None = None) -> Path:
    """Train one progressive-shrinking stage, resuming from run_dir's checkpoint.

    `stage` is the Stage or its index in `listing` (the index is checked against the
    checkpoint). params: seed, batch_size, optionally image_size (evaluation), optimizer
    (make_optimizer's dict; its lr is ignored), lr (overrides init_lr) and bn_samples
    (overrides num_bn_adaptation_samples). Returns the weights file, max configuration set.
    """
    index, stage = _resolve(listing, stage)
    run_dir.mkdir(parents=True, exist_ok=True)
    _elastic(net)  # fail early on a model that is not a super-network
    net.to(device, memory_format=memory_format(device))
    lr = params.get("lr", stage.init_lr)
    optimizer = make_optimizer(net.parameters(),
                               {**DEFAULT_OPTIMIZER, **params.get("optimizer", {}), "lr": lr})
    run = _StageRun(net, optimizer, data, val, stage, index, listing, params, device, lr)
    start = _start(net, optimizer, stage, index, run_dir, init_weights)
    with CheckpointWriter(run_dir / CHECKPOINT) as checkpoints:
        for epoch in range(start, stage.epochs):
            if should_stop and should_stop():
                raise Stopped(f"stopped before epoch {epoch + 1} of stage {index + 1}")
            began = time.perf_counter()
            loss, last_lr = _one_epoch(run, epoch)
            max_acc, min_acc = _epoch_accuracies(run)
            checkpoints.submit({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                "epoch": epoch + 1, "stage": index})
            if on_epoch:
                on_epoch(SupernetEpoch(index, epoch + 1, loss, max_acc, min_acc, last_lr,
                                       time.perf_counter() - began))
    run.elastic.set_config(max_config(run.layers))
    weights = run_dir / WEIGHTS
    artifacts.save_state(net.state_dict(), weights)
    return weights


def _stage_lr(stage: Stage, base_lr: float, epoch: int, step: int, iters: int) -> float:
    iteration = min(epoch * iters + step, stage.epochs_lr * iters)
    return lr_at(iteration, iters, stage.epochs_lr, base_lr, {"name": "cosine"})


def _one_epoch(run: _StageRun, epoch: int) -> tuple[float, float]:
    """(mean loss, last lr) of one epoch, each step on a freshly sampled sub-network."""
    seed, batch_size, device = run.params["seed"], run.params["batch_size"], run.device
    iters = max(1, len(run.data) // batch_size)
    data_epoch = run.listing.training.first_epoch(run.index) + epoch  # stages reshuffle apart
    fmt = memory_format(device)
    run.model.train()
    loss_sum, seen, lr = torch.zeros((), device=device), 0, run.base_lr
    for step, (x, y) in enumerate(run.data.epoch(data_epoch, batch_size, seed, device)):
        lr = _stage_lr(run.stage, run.base_lr, epoch, step, iters)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        rng = _step_rng(seed, run.index, epoch, step)
        run.elastic.set_config(stage_config(rng, run.stage, run.layers))
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        with autocast(device):
            loss = F.cross_entropy(run.model(x).float(), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
    run.elastic.set_config(max_config(run.layers))
    mean_loss = (loss_sum / max(seen, 1)).item()
    if not torch.isfinite(torch.tensor(mean_loss)):
        raise TrainingDiverged(f"loss became {mean_loss} in epoch {epoch + 1} of stage "
                               f"{run.index + 1} (lr {lr:.3g}); lower the learning rate")
    return mean_loss, lr


def _epoch_accuracies(run: _StageRun) -> tuple[float, float]:
    """Validation accuracy of the maximal network and of the stage's minimal sub-network."""
    params = run.params
    n = params.get("bn_samples", run.listing.training.num_bn_adaptation_samples)

    def bn_batches() -> Iterator[Tensor]:
        return bn_images(run.data, n, params["batch_size"], params["seed"], run.device)

    size = params.get("image_size")
    run.elastic.set_config(max_config(run.layers))
    recalibrate_bn(run.model, bn_batches())
    max_acc = _accuracy(run.model, run.val, run.device, size)
    smallest = _subnet(run.model, stage_min_config(run.stage, run.layers),
                       bn_batches() if run.stage.bn_adapt else None)
    return max_acc, _accuracy(smallest, run.val, run.device, size)
