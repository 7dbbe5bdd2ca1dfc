"""Run a plan in this process: train each member (resuming), then evaluate it on every
validation set, recording jobs, epochs and results in the catalog as they happen.

A job that fails is recorded with its error and the others go on; what is done and
intact on disk is skipped, so running the same spec again resumes.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ensui.catalog import Catalog
from ensui.engine import evaluate as ev
from ensui.engine import artifacts, probe_cache
from ensui.engine.attribute import attribution_maps, features
from ensui.engine.data.sample import take_sample
from ensui.engine.device import resolve_device
from ensui.engine.models.factory import build_model, load_weights
from ensui.engine.plan import Job, Plan
from ensui.engine.spec import Spec
from ensui.engine.train import supervised
from ensui.engine.workspace import Workspace
from ensui.home import Home

Event = dict
Listener = Callable[[Event], None]


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class Runner:
    def __init__(self, spec: Spec, plan: Plan, catalog: Catalog, home: Home,
                 listener: Listener | None = None):
        self.spec, self.plan, self.catalog, self.home = spec, plan, catalog, home
        self.listen = listener or (lambda event: None)
        self.workspace = Workspace(spec, home)
        self.device = resolve_device(spec.training.device)
        self.summary = RunSummary()
        self._trained: tuple[str, object] | None = None  # (train key, model) last evaluated

    def run(self) -> RunSummary:
        for job in self.plan.of_kind("train"):
            self._attempt(job, self._train)
        work = {"evaluate": self._evaluate, "activations": self._activations,
                "attribute": self._attribute}
        for kind, do in work.items():
            for job in self.plan.of_kind(kind):
                if job.depends in self.summary.failed:
                    self._fail(job, f"its training job {job.depends} failed", 0.0)
                    continue
                self._attempt(job, do)
        return self.summary

    # -- bookkeeping ----------------------------------------------------------------

    def _attempt(self, job: Job, work: Callable[[Job], str]) -> None:
        self.catalog.ensure_job(job.key, job.kind, job.member, job.model_id, job.params)
        if self._is_done(job):
            self.summary.skipped.append(job.key)
            self.listen({"type": "skipped", "job": job})
            return
        self.catalog.start_job(job.key)
        self.listen({"type": "started", "job": job})
        began = time.perf_counter()
        try:
            artifact = work(job)
        except KeyboardInterrupt:
            self.catalog.requeue_job(job.key, "interrupted")
            raise
        except Exception as exc:  # a failed member becomes an error row, not a crash
            self._fail(job, f"{type(exc).__name__}: {exc}", time.perf_counter() - began,
                       traceback.format_exc())
            return
        self.catalog.finish_job(job.key, artifact, time.perf_counter() - began)
        self.summary.done.append(job.key)
        self.listen({"type": "done", "job": job})

    def _fail(self, job: Job, message: str, seconds: float, detail: str = "") -> None:
        self.catalog.ensure_job(job.key, job.kind, job.member, job.model_id, job.params)
        self.catalog.fail_job(job.key, message, seconds)
        self.summary.failed[job.key] = message
        self.listen({"type": "failed", "job": job, "error": message, "detail": detail})

    def _is_done(self, job: Job) -> bool:
        row = self.catalog.job(job.key)
        if row is None or row["status"] != "done":
            return False
        if job.kind == "train":
            return artifacts.is_intact(self._run_dir(job.key) / supervised.WEIGHTS)
        if job.kind == "evaluate":
            return (self.catalog.result(job.key) is not None
                    and ev.outputs_intact(self._out_dir(job), job.params["store"]))
        return probe_cache.intact(self._out_dir(job), job.kind)

    def _run_dir(self, train_key: str):
        return self.home.runs / train_key

    def _out_dir(self, job: Job | str):
        return self.home.outputs / (job if isinstance(job, str) else job.key)

    # -- work -----------------------------------------------------------------------

    def _model(self, params: dict):
        return build_model(params["arch"], params["scale"], params["num_classes"],
                           params["image_size"], seed=params["seed"])

    def _trained_model(self, train_key: str, params: dict):
        """A member's trained model, loaded once for all its validation sets (its
        evaluation jobs follow one another in the plan)."""
        if self._trained is None or self._trained[0] != train_key:
            model = self._model(params)
            load_weights(model, self._run_dir(train_key) / supervised.WEIGHTS)
            self._trained = (train_key, model.to(self.device))
        return self._trained[1]

    def _train(self, job: Job) -> str:
        p = job.params
        model = self._model(p)
        if p["init_weights"]:
            load_weights(model, self._member_weights(job))
        data = self.workspace.train_data(p["augment"])

        def on_epoch(m: supervised.EpochMetrics) -> None:
            self.catalog.record_epoch(job.key, m.epoch, loss=m.loss, train_acc=m.train_acc,
                                      val_acc=m.val_acc, lr=m.lr, seconds=m.seconds)
            self.listen({"type": "epoch", "job": job, "metrics": m, "epochs": p["epochs"]})

        weights = supervised.train(model, data, self.workspace.clean, p, self._run_dir(job.key),
                                   self.device, on_epoch)
        return str(weights)

    def _member_weights(self, job: Job):
        member = next(m for m in self.spec.members if m.label == job.member)
        return member.weights

    def _evaluate(self, job: Job) -> str:
        train_params = self.catalog.job(job.depends)["params"]
        model = self._trained_model(job.depends, train_params)
        dataset = self.workspace.valset(job.params["val_set"])
        acc, nll, n = ev.evaluate(model, dataset, self._out_dir(job), job.params["store"],
                                  self.device, train_params["image_size"],
                                  self.spec.evaluation.batch_size)
        self.catalog.record_result(job.key, job.depends, job.model_id, job.params["val_set"],
                                   acc, nll, n)
        self.listen({"type": "result", "job": job, "accuracy": acc, "n": n})
        return str(self._out_dir(job))

    def _sample(self, job: Job):
        """The member's trained model, its image size and the job's seeded subset."""
        train_params = self.catalog.job(job.depends)["params"]
        model = self._trained_model(job.depends, train_params)
        dataset = self.workspace.valset(job.params["val_set"])
        index, sample = take_sample(dataset, job.params["samples"], job.params["sample_seed"])
        return model, train_params["image_size"], index, sample

    def _activations(self, job: Job) -> str:
        model, size, _, sample = self._sample(job)
        feats = features(model, sample.images, self.device, size,
                         self.spec.evaluation.batch_size)
        probe_cache.save(self._out_dir(job), "activations", features=feats,
                         ids=np.asarray(sample.ids, dtype=str))
        return str(self._out_dir(job))

    def _attribute(self, job: Job) -> str:
        model, size, index, sample = self._sample(job)
        p = job.params
        targets = sample.labels if p["target"] == "label" else self._ensemble_targets(job, index)
        cfg = self.spec.analysis.attribution
        maps = attribution_maps(model, sample.images, targets, p["method"], cfg, self.device,
                                size)
        probe_cache.save(self._out_dir(job), "attribute", maps=maps,
                         targets=targets.numpy().astype(np.int64),
                         ids=np.asarray(sample.ids, dtype=str))
        return str(self._out_dir(job))

    def _ensemble_targets(self, job: Job, index: np.ndarray) -> torch.Tensor:
        """The class the ensemble of every member (averaged probabilities) predicts."""
        total = None
        for key in job.params["target_from"]:
            row = self.catalog.job(key)
            outputs = ev.load_outputs(self._out_dir(key), row["params"]["store"]) if row else None
            if outputs is None:
                raise RuntimeError("the ensemble target needs every member's outputs on "
                                   f"{job.params['val_set']}; evaluation {key} has none")
            probs = torch.from_numpy(outputs.values[index].astype(np.float32))
            probs = probs if outputs.kind == "probs" else probs.softmax(1)
            total = probs if total is None else total + probs
        return total.argmax(1)
