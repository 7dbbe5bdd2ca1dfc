"""Doing one job of any kind — pretrain, team, supernet, search, train, evaluate,
activations, attribute, study — for a spec.

`JobWork` holds what jobs of one experiment share (its data, loaded once) and keeps the
last member's trained model, so a worker that runs a member's evaluations one after
another loads its weights once. Progress goes through a recorder: the catalog when the
job runs here, event files when it runs on a cluster node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ensui.engine import artifacts, probe_cache
from ensui.engine import evaluate as ev
from ensui.engine.attribute import attribution_maps, features
from ensui.engine.data.sample import take_sample
from ensui.engine.models.factory import build_model, load_weights
from ensui.engine.runtime import nas_jobs
from ensui.engine.spec import Spec
from ensui.engine.train import dino_pretrain, linear_probe, ncl, supervised
from ensui.engine.workspace import Workspace
from ensui.home import Home

log = logging.getLogger("ensui.job")


class Recorder(Protocol):
    def epoch(self, key: str, metrics: supervised.EpochMetrics, epochs: int) -> None: ...
    def result(self, key: str, train_key: str, model_id: str, val_set: str, accuracy: float,
               nll: float, n: int) -> None: ...
    def front(self, key: str, rows: list[dict]) -> None: ...


class JobWork:
    def __init__(self, spec: Spec, home: Home, recorder: Recorder, device: torch.device,
                 train_params: Callable[[str], dict], study: Callable[[], str] | None = None):
        self.spec, self.home, self.record, self.device = spec, home, recorder, device
        self.train_params = train_params  # train key -> that job's params
        self.study = study  # records the experiment's study; only where the catalog is
        self.workspace = Workspace(spec, home)
        self._trained: tuple[str, object] | None = None
        self.should_stop: Callable[[], bool] = lambda: False

    def run(self, key: str, kind: str, params: dict, member: str, model_id: str) -> str:
        """Do the job; the path of its artifact."""
        if kind == "study":
            if self.study is None:
                raise RuntimeError("a study job runs where the catalog is, not on a node")
            return self.study()
        work = {"pretrain": self._pretrain, "team": self._team, "supernet": self._supernet,
                "search": self._search, "train": self._train, "evaluate": self._evaluate,
                "activations": self._activations, "attribute": self._attribute}[kind]
        return work(key, params, member, model_id)

    # -- models -----------------------------------------------------------------

    def _model(self, params: dict):
        return build_model(params["arch"], params["scale"], params["num_classes"],
                           params["image_size"], seed=params["seed"])

    def _trained_model(self, train_key: str):
        if self._trained is None or self._trained[0] != train_key:
            self._trained = None  # free the previous model first
            model = self._model(self.train_params(train_key))
            load_weights(model, self.home.runs / train_key / supervised.WEIGHTS)
            self._trained = (train_key, model.to(self.device))
        return self._trained[1]

    # -- kinds ------------------------------------------------------------------

    def _train(self, key: str, p: dict, member: str, model_id: str) -> str:
        if p["recipe"] == "ncl_member":
            return str(_take_member(self.home.runs / p["team_key"], p["index"],
                                    self.home.runs / key / supervised.WEIGHTS))
        if p["recipe"] == "subnet":
            return str(self._subnet(key, p))
        model = self._model(p)
        if p["init_weights"]:
            spec_member = next(m for m in self.spec.members if m.label == member)
            load_weights(model, spec_member.weights)
        if p["recipe"] == "dino":  # the linear probe on the frozen teacher backbone
            load_backbone(model, self.home.runs / p["backbone_key"] / dino_pretrain.BACKBONE)
            model.net.freeze_backbone()
            if p.get("probe") == "cached":
                return str(self._cached_probe(key, p, model))
        data = self.workspace.train_data(p["augment"])
        weights = supervised.train(model, data, self.workspace.clean, p, self.home.runs / key,
                                   self.device, self._on_epoch(key, p),
                                   should_stop=self.should_stop)
        return str(weights)

    def _cached_probe(self, key: str, p: dict, model) -> Path:
        images = self._images_in_memory("probe 'cached'",
                                        "; use training.dino.probe: augmented")
        return linear_probe.train_cached_probe(
            model.to(self.device), images[0], self.workspace.clean, p, self.home.runs / key,
            self.device, self._on_epoch(key, p), self.should_stop)

    def _pretrain(self, key: str, p: dict, member: str, model_id: str) -> str:
        model = self._model(p)
        weights = dino_pretrain.pretrain(
            model, self.workspace.multicrop_data(p), self.workspace.knn_data(), p,
            self.home.runs / key, self.device, self._on_epoch(key, p), self.should_stop)
        return str(weights)

    def _team(self, key: str, p: dict, member: str, model_id: str) -> str:
        """A jointly trained team (recipe ncl): one weights file per member in its run."""
        models = [self._model({**p, **m}) for m in p["members"]]
        labels = [m["label"] for m in p["members"]]

        def on_epoch(e: ncl.TeamEpoch) -> None:
            self._on_epoch(key, p)(team_metrics(e, labels))
        ncl.train_team(models, self.workspace.train_data(p["augment"]), self.workspace.clean,
                       p, self.home.runs / key, self.device, on_epoch, self.should_stop)
        return str(self.home.runs / key)

    def _supernet(self, key: str, p: dict, member: str, model_id: str) -> str:
        """One progressive-shrinking stage, from the previous stage's weights (with NNCF:
        every stage and the search)."""
        if p["backend"] == "nncf":
            return str(self._nncf_supernet(key, p))
        net = nas_jobs.supernet_model(p)
        if p["init_key"] is None and p["init_weights"]:  # e.g. an ImageNet ResNet50
            load_weights(net, self.spec.training.supernet.init_weights)
        init = self.home.runs / p["init_key"] / nas_jobs.WEIGHTS if p["init_key"] else None
        params = {"seed": p["seed"], "batch_size": p["batch_size"], "bn_samples": p["bn_samples"],
                  "image_size": p["image_size"], "optimizer": p["optimizer"]}
        if p["lr"]:
            params["lr"] = p["lr"]
        on_epoch = self._on_epoch(key, p)
        weights = nas_jobs.train_stage(
            net, self.workspace.train_data(p["augment"]), self.workspace.clean,
            p["stage"], nas_jobs.stage_listing(p), params, self.home.runs / key, self.device,
            lambda e: on_epoch(nas_jobs.stage_metrics(e)), self.should_stop, init)
        return str(weights)

    def _images_in_memory(self, what: str, advice: str = ""):
        """(train, val) image arrays, for recipes that cannot read folders."""
        images = self.workspace.knn_data()
        if images is None:
            raise RuntimeError(f"{what} needs the training images in memory (the embedded "
                               f"dataset){advice}")
        return images

    def _nncf_supernet(self, key: str, p: dict) -> Path:
        images = self._images_in_memory("backend 'nncf'")
        init = self.spec.training.supernet.init_weights if p["init_weights"] else None
        weights, front = nas_jobs.nncf_job(p, images[0], images[1], self.home.runs / key,
                                           self.device, self._on_epoch(key, p), init)
        if p["search"]:
            artifacts.write_checked(self.home.runs / key / nas_jobs.FRONT,
                                    json.dumps(front).encode())
            self.record.front(key, front)
        return weights

    def _search(self, key: str, p: dict, member: str, model_id: str) -> str:
        """NSGA-II over the last stage's space; the front goes to the catalog and a file."""
        net = self._trained_supernet(p)
        data = self.workspace.train_data(p["augment"])
        rows = nas_jobs.search(net, data, self.workspace.clean, p, self.device)
        folder = self.home.outputs / key
        artifacts.write_checked(folder / nas_jobs.FRONT, json.dumps(rows).encode())
        self.record.front(key, rows)
        log.info("search: %d sub-networks on the front", len(rows))
        return str(folder)

    def _subnet(self, key: str, p: dict) -> Path:
        """The member's configuration cut out of the trained super-network, its batch
        norms recalibrated on `bn_samples` training images."""
        net = self._trained_supernet(p)
        model = nas_jobs.cut(net, p["arch"], self.workspace.train_data(p["augment"]), p,
                             self.device)
        weights = self.home.runs / key / supervised.WEIGHTS
        artifacts.save_state(model.state_dict(), weights)
        return weights

    def _trained_supernet(self, p: dict):
        net = nas_jobs.supernet_model(p)
        nas_jobs.load_supernet(net, self.home.runs / p["supernet_key"] / nas_jobs.WEIGHTS)
        return net.to(self.device)

    def _on_epoch(self, key: str, p: dict) -> Callable[[supervised.EpochMetrics], None]:
        def on_epoch(m: supervised.EpochMetrics) -> None:
            self.record.epoch(key, m, p["epochs"])
            log.info("epoch %d/%d: %s (%.1f s)", m.epoch, p["epochs"], epoch_text(m), m.seconds)
        return on_epoch

    def _evaluate(self, key: str, p: dict, member: str, model_id: str) -> str:
        train = self.train_params(p["train_key"])
        model = self._trained_model(p["train_key"])
        folder = self.home.outputs / key
        acc, nll, n = ev.evaluate(model, self.workspace.valset(p["val_set"]), folder, p["store"],
                                  self.device, train["image_size"], self.spec.evaluation.batch_size)
        self.record.result(key, p["train_key"], model_id, p["val_set"], acc, nll, n)
        log.info("%s on %s: accuracy %.4f of %d", member, p["val_set"], acc, n)
        return str(folder)

    def _sample(self, p: dict):
        model = self._trained_model(p["train_key"])
        dataset = self.workspace.valset(p["val_set"])
        index, sample = take_sample(dataset, p["samples"], p["sample_seed"])
        return model, self.train_params(p["train_key"])["image_size"], index, sample

    def _activations(self, key: str, p: dict, member: str, model_id: str) -> str:
        model, size, _, sample = self._sample(p)
        feats = features(model, sample.images, self.device, size, self.spec.evaluation.batch_size)
        folder = self.home.outputs / key
        probe_cache.save(folder, "activations", features=feats,
                         ids=np.asarray(sample.ids, dtype=str))
        return str(folder)

    def _attribute(self, key: str, p: dict, member: str, model_id: str) -> str:
        model, size, index, sample = self._sample(p)
        targets = sample.labels if p["target"] == "label" else self._ensemble_targets(p, index)
        maps = attribution_maps(model, sample.images, targets, p["method"],
                                self.spec.analysis.attribution, self.device, size)
        folder = self.home.outputs / key
        probe_cache.save(folder, "attribute", maps=maps, targets=targets.numpy().astype(np.int64),
                         ids=np.asarray(sample.ids, dtype=str))
        return str(folder)

    def _ensemble_targets(self, p: dict, index: np.ndarray) -> torch.Tensor:
        """The class the ensemble of every member (averaged probabilities) predicts."""
        total = None
        for key in p["target_from"]:
            outputs = ev.load_outputs(self.home.outputs / key, self.spec.evaluation.store)
            if outputs is None:
                raise RuntimeError("the ensemble target needs every member's outputs on "
                                   f"{p['val_set']}; evaluation {key} has none")
            probs = torch.from_numpy(outputs.values[index].astype(np.float32))
            probs = probs if outputs.kind == "probs" else probs.softmax(1)
            total = probs if total is None else total + probs
        return total.argmax(1)


def epoch_text(m: supervised.EpochMetrics) -> str:
    """`loss 0.4 train 0.91 val 0.88 lr 0.1 teacher_entropy 1.2` for a log line."""
    values = {"loss": m.loss, "train": m.train_acc, "val": m.val_acc, "lr": m.lr, **m.extra}
    return " ".join(f"{k} {v:.4g}" for k, v in values.items() if v is not None)


def team_metrics(e: ncl.TeamEpoch, labels: list[str]) -> supervised.EpochMetrics:
    """A team epoch as live metrics: the ensemble's validation accuracy, the diversity
    indicators and each member's accuracy (`acc:<label>`)."""
    extra = {"penalty": e.penalty, "disagreement": e.disagreement,
             **{f"acc:{label}": acc for label, acc in zip(labels, e.member_val_acc)}}
    return supervised.EpochMetrics(e.epoch, e.loss, None, e.ensemble_val_acc, e.lrs[0],
                                   e.seconds, extra)


def _take_member(team_run: Path, index: int, weights: Path) -> Path:
    """A member's weights out of its team's run, as its own checked file."""
    state = artifacts.load_state(ncl.member_weights(team_run, index))
    if state is None:
        raise RuntimeError(f"{team_run}: member {index}'s weights are missing or damaged; "
                           "retry the team job")
    artifacts.save_state(state, weights)
    return weights


def load_backbone(model, path: Path) -> None:
    """A DINO teacher backbone into a built dino_* model (its classifier keeps its seed's
    initialisation); a missing or damaged file is an error naming it."""
    state = artifacts.load_state(path)
    if state is None:
        raise RuntimeError(f"{path}: the DINO backbone is missing or damaged; retry its "
                           "pretrain job")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(k.startswith(dino_pretrain.BACKBONE_PREFIX) for k in missing):
        raise RuntimeError(f"{path}: does not fit this model's backbone")


def intact(home: Home, key: str, kind: str, params: dict) -> bool:
    """Whether a done job's artifacts are all on disk and check out."""
    if kind == "study":
        return True  # it lives in the catalog
    if kind == "train":
        return artifacts.is_intact(home.runs / key / supervised.WEIGHTS)
    if kind == "pretrain":
        return artifacts.is_intact(home.runs / key / dino_pretrain.BACKBONE)
    if kind == "supernet":
        return artifacts.is_intact(home.runs / key / nas_jobs.WEIGHTS)
    if kind == "search":
        return artifacts.is_intact(home.outputs / key / nas_jobs.FRONT)
    if kind == "team":
        return all(artifacts.is_intact(ncl.member_weights(home.runs / key, i))
                   for i in range(len(params["members"])))
    if kind == "evaluate":
        return ev.outputs_intact(home.outputs / key, params["store"])
    return probe_cache.intact(home.outputs / key, kind)


def job_log_path(home: Home, key: str) -> Path:
    return home.root / "logs" / f"{key}.log"
