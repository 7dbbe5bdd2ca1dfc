"""What the BootstrapNAS jobs do (plan_supernet.py makes them): build the super-network,
turn a stage's epochs into live metrics, search, and cut a member out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ensui.engine import artifacts
from ensui.engine.models.normalize import Normalized
from ensui.engine.models.resnet import resnet50_net, subnet_config
from ensui.engine.nas.elastic_resnet import (
    build_supernet,
    extract,
    pre_logits,
    recalibrate_bn,
)
from ensui.engine.nas.search import (SearchPoint, SearchResult, SearchSpace, front_rows,
                                     pareto_front, run_search, supernet_cost)
from ensui.engine.plan_supernet import stage_listing
from ensui.engine.train import supernet as shrinking
from ensui.engine.train.supervised import EpochMetrics

__all__ = ["FRONT", "WEIGHTS", "cut", "load_supernet", "search",
           "stage_listing", "stage_metrics", "supernet_model", "train_stage"]

WEIGHTS = shrinking.WEIGHTS
FRONT = "front.json"
train_stage = shrinking.train_stage


def supernet_model(p: dict) -> Normalized:
    """The elastic ResNet50 at the job's scale, initialised from its seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p["seed"])
        net = build_supernet(p["scale"], p["num_classes"], p["min_width"])
    return Normalized(net, pre_logits)


def load_supernet(net: nn.Module, path: Path) -> None:
    state = artifacts.load_state(path)
    if state is None:
        raise RuntimeError(f"{path}: the trained super-network is missing or damaged; retry "
                           "its last stage job")
    net.load_state_dict(state)


def stage_metrics(e: shrinking.SupernetEpoch) -> EpochMetrics:
    """A stage epoch as live metrics: val is the maximal network's accuracy, and the
    stage's minimal sub-network's is `min_subnet_acc`."""
    return EpochMetrics(e.epoch, e.loss, None, e.max_acc, e.lr, e.seconds,
                        {"min_subnet_acc": e.min_acc})


def _bn_images(data, p: dict, device: torch.device) -> list[torch.Tensor]:
    """The fixed training images every sub-network's batch norms are recalibrated on."""
    return list(shrinking.bn_images(data, p["bn_samples"], p["batch_size"], p["seed"],
                                     device))


def search(net: Normalized, data, val, p: dict, device: torch.device) -> list[dict]:
    """NSGA-II over what the last stage trained: accuracy on `val` of each extracted,
    recalibrated sub-network against its MACs; the front's rows."""
    listing = stage_listing(p)
    settings = replace(listing.search, **{k: p[k] for k in ("num_evals", "population")
                                          if p[k] is not None})
    space = SearchSpace.from_stage(listing.training.stages[-1], net.net.widths.layers)
    bn = _bn_images(data, p, device)

    def score(cfg) -> float:
        return shrinking.evaluate_subnet(net, cfg, bn, val, device, p["image_size"])[0]

    result = run_search(score, supernet_cost(net, p["image_size"]), settings, space, p["seed"])
    return front_rows(result)


def cut(net: Normalized, arch: dict, data, p: dict, device: torch.device) -> Normalized:
    """The member's sub-network of the trained `net`, standalone, BN recalibrated."""
    sub = Normalized(extract(net.net, subnet_config(arch)), pre_logits).to(device)
    recalibrate_bn(sub, _bn_images(data, p, device))
    return sub.eval()


# -- the NNCF backend: every stage and the search in one job ---------------------------------

def nncf_job(p: dict, images, val, run_dir: Path, device: torch.device, on_epoch,
             init_weights: Path | None = None) -> tuple[Path, list[dict]]:
    """Progressive shrinking and (when asked) the search through NNCF's BootstrapNAS, in
    one job: NNCF keeps its super-network's elastic state in memory only, so the stages
    and the search cannot be separate jobs. Returns the weights file and the front, in
    the front rows' format (configurations mapped by `nncf_backend.to_subnet_config`).
    A stopped job starts over."""
    from ensui.engine.models.factory import load_weights
    from ensui.engine.models.pre_logits import torchvision_resnet_pre_logits
    from ensui.engine.models.registry import Scale
    from ensui.engine.nas import nncf_backend

    train_loader = _loader(images, p["batch_size"], p["seed"])
    val_loader = _loader(val, p["batch_size"], None)
    settings = {"seed": p["seed"], "total_epochs": p["total_epochs"],
                "weight_decay": p["optimizer"]["weight_decay"]}
    if p["lr"]:
        settings["lr"] = p["lr"]
    listing, done = _nncf_listing(p), []

    def record(e) -> None:  # epochs count on across stages: one job holds them all
        done.append(e)
        on_epoch(EpochMetrics(len(done), e.loss, None, e.supernet_acc / 100, e.lr, e.seconds,
                              {"min_subnet_acc": e.min_subnet_acc / 100,
                               "stage": e.stage_index + 1}))

    net = Normalized(resnet50_net(Scale(p["scale"]), p["num_classes"]),
                     torchvision_resnet_pre_logits)
    if init_weights is not None:  # e.g. an ImageNet ResNet50, as Listing 1 fine-tunes
        load_weights(net, init_weights)
    supernet = nncf_backend.train_supernet(net.net, listing, train_loader, val_loader,
                                           settings, run_dir / "nncf", device, record)
    weights = run_dir / WEIGHTS
    artifacts.save_state(supernet.model.state_dict(), weights)
    if not p["search"]:
        return weights, []
    rows = nncf_backend.search(supernet, val_loader, listing, num_evals=p["num_evals"],
                               population=p["population"], seed=p["seed"],
                               log_dir=run_dir / "nncf-search", device=device)
    points = [SearchPoint(r["config"], r["accuracy"] / 100, r["macs"], r["params"])
              for r in rows]
    return weights, front_rows(SearchResult(tuple(points), pareto_front(points), len(rows)))


def _nncf_listing(p: dict) -> dict:
    """The job's Listing 1 JSON with its BN sample count."""
    listing = json.loads(json.dumps(p["listing"]))
    training = listing["bootstrapNAS"]["training"]
    training.setdefault("batchnorm_adaptation", {})["num_bn_adaptation_samples"] = p["bn_samples"]
    return listing


def _loader(images, batch_size: int, seed: int | None):
    """Normalised float batches of in-memory images (NNCF's trainer takes a DataLoader);
    shuffled by `seed` when given."""
    from torch.utils.data import DataLoader, TensorDataset

    from ensui.engine.models.normalize import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (images.images.float() / 255 - mean) / std
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(TensorDataset(x, images.labels), batch_size=batch_size,
                      shuffle=seed is not None, generator=generator)

