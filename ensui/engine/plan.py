"""From a spec to jobs. Each job's key is the hash of everything that decides its output,
so the same work asked twice (in one spec or across experiments) is one job, and a
re-run skips what is already done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ensui.catalog import Catalog
from ensui.engine.data.augment import augment_params
from ensui.engine.data.validation import parts_of, resolve_constants
from ensui.engine.job import Job, content_key, file_identity
from ensui.engine.plan_dino import dino_pretrain_job, dino_probe_job
from ensui.engine.plan_joint import joint_jobs
from ensui.engine.plan_supernet import subnet_job, supernet_jobs
from ensui.engine.spec import MemberSpec, Spec, located_error
from ensui.engine.train.schedule import scale_schedule
from ensui.errors import EnsuiError, SpecError, UnknownIdError


@dataclass
class Plan:
    experiment_id: str
    jobs: list[Job]

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]


def make_plan(spec: Spec, catalog: Catalog, spec_path: Path | None = None,
              num_classes: int | None = None) -> Plan:
    """Jobs for every member: train, evaluate on each validation set, then (for the
    analysis) penultimate features and attribution maps on each set's subset."""
    classes = num_classes or count_classes(spec)
    jobs: list[Job] = []
    supernet: list[Job] = []  # built once, for the first sub-network member
    for index, member in enumerate(spec.members):
        row = _model_row(catalog, member, index, spec_path)
        if row["recipe"] == "dino" and member.train:
            pretrain = dino_pretrain_job(spec, member, row, classes)
            jobs += [pretrain] if pretrain.key not in {j.key for j in jobs} else []
            train = dino_probe_job(spec, member, row, classes, pretrain)
        elif row["recipe"] == "supernet" and member.train:
            if spec.training.supernet.backend == "nncf":
                raise _member_error(spec_path, index, "model", NNCF_MEMBERS)
            if not supernet:
                supernet = supernet_jobs(spec, classes, spec_path)
                jobs += supernet
            last_stage = [j for j in supernet if j.kind == "supernet"][-1]
            train = subnet_job(spec, member.label, row, classes, last_stage)
        else:
            train = _train_job(spec, member, row, classes, index, spec_path)
        jobs.append(train)
        jobs += [_eval_job(spec, train, name) for name in spec.validation.sets]
    for job in joint_jobs(spec, catalog, classes, spec_path):
        jobs.append(job)
        if job.kind == "train":
            jobs += [_eval_job(spec, job, name) for name in spec.validation.sets]
    if spec.training.supernet.backend == "nncf":  # its search, whatever the members
        jobs += supernet_jobs(spec, classes, spec_path)
    jobs += _analysis_jobs(spec, [j for j in jobs if j.kind == "evaluate"])
    if spec.analysis.enabled:
        jobs.append(_study_job(spec, jobs))
    exp_id = content_key({"name": spec.name, "jobs": [j.key for j in jobs],
                          "members": spec.all_labels()})
    return Plan(exp_id, jobs)


NNCF_MEMBERS = ("sub-network members are cut from ensui's super-network (NNCF exports "
                "sub-networks only as ONNX): search with backend 'nncf', keep front points "
                "with `ensui catalog save-subnet`, and train members with backend 'ensui'")


def count_classes(spec: Spec) -> int:
    if spec.dataset.kind == "embedded":
        return 10
    train = spec.dataset.path / "train"
    if not train.is_dir():
        raise EnsuiError(f"{spec.dataset.path}: no train/ folder (ImageNet layout expected)")
    return sum(1 for p in train.iterdir() if p.is_dir())


def _member_error(spec_path, index: int, field_name: str, message: str) -> SpecError:
    return located_error(spec_path, ("members", index, field_name), message)


def _model_row(catalog: Catalog, member: MemberSpec, index: int, spec_path) -> dict:
    try:
        row = catalog.member_row(member.model)
    except UnknownIdError as exc:
        raise _member_error(spec_path, index, "model", str(exc)) from None
    if not member.train and member.weights is None:
        raise _member_error(spec_path, index, "weights", "'train: false' needs a weights file")
    return row


def _train_job(spec: Spec, member: MemberSpec, row: dict, classes: int, index, spec_path) -> Job:
    tr = spec.training
    epochs = member.epochs or tr.epochs or row["epochs"]
    batch = member.batch_size or tr.batch_size or row["batch_size"]
    optimizer = dict(row["optimizer"])
    if member.lr is not None:
        optimizer["lr"] = member.lr
    params = {
        "recipe": row["recipe"], "model_id": row["id"], "arch": row["arch"],
        "scale": spec.scale, "num_classes": classes, "image_size": spec.dataset.size,
        "dataset": spec.dataset.model_dump(mode="json"),
        "optimizer": optimizer,
        "scheduler": {**scale_schedule(row["scheduler"], epochs, row["epochs"], tr.schedule_scaling),
                      "warmup_epochs": tr.warmup_epochs},
        "schedule_scaling": tr.schedule_scaling,
        "epochs": epochs if member.train else 0, "batch_size": batch,
        "seed": member.seed if member.seed is not None else tr.seed,
        "augment": augment_params(tr.crop_scale, tr.hflip),
        "init_weights": file_identity(member.weights),
    }
    return Job(content_key({"kind": "train", **params}), "train", member.label, row["id"], params)


def _eval_job(spec: Spec, train: Job, name: str) -> Job:
    val = spec.validation
    params = {
        "train_key": train.key, "val_set": name,
        "parts": parts_of(name, val.severities),
        "source": "clean" if name == "clean" else val.source,
        "path": str(val.path) if val.path and name != "clean" else None,
        "limit": val.limit, "store": spec.evaluation.store,
    }
    if name != "clean" and val.source == "generate":  # only generated sets depend on these
        params |= {"constants": resolve_constants(val.constants, spec.dataset.size),
                   "seed": val.seed}
    return Job(content_key({"kind": "evaluate", **params}), "evaluate", train.member,
               train.model_id, params, depends=train.key)


def _analysis_jobs(spec: Spec, evals: list[Job]) -> list[Job]:
    """Activation and attribution jobs per evaluation (member × set). Their keys hold what
    decides their arrays; the CKA batch and the similarity are applied later, in the study."""
    analysis = spec.analysis
    if not analysis.enabled:
        return []
    jobs = []
    for ev in evals:
        data = {k: v for k, v in ev.params.items() if k != "store"}  # train key + set identity
        if analysis.activation.enabled:
            act = analysis.activation
            params = {**data, "samples": act.samples, "sample_seed": act.seed}
            jobs.append(_derived(ev, "activations", params))
        if analysis.attribution.enabled:
            jobs += [_derived(ev, "attribute", _attribution_params(spec, ev, data, method, evals))
                     for method in analysis.attribution.methods]
    return jobs


def _attribution_params(spec: Spec, ev: Job, data: dict, method: str, evals: list[Job]) -> dict:
    cfg = spec.analysis.attribution
    params = {**data, "method": method, "samples": cfg.samples, "sample_seed": cfg.seed,
              "target": cfg.target, "grid": cfg.grid, "reduction": cfg.reduction}
    if method == "integrated_gradients":
        params["n_steps"] = cfg.n_steps
    if method == "gradient_shap":
        params["shap_samples"] = cfg.shap_samples
    if cfg.target == "ensemble":  # the prediction of its ensemble's averaged probabilities
        group = _ensembles(spec)
        params["target_from"] = [j.key for j in evals
                                 if j.params["val_set"] == ev.params["val_set"]
                                 and group.get(j.member) == group.get(ev.member)]
    return params


def _ensembles(spec: Spec) -> dict[str, str]:
    """A jointly trained member's team label; independent members form one ensemble."""
    return {label: team.team_label(lam)
            for team, lam, labels in spec.joint_members() for label in labels}


def _derived(ev: Job, kind: str, params: dict) -> Job:
    return Job(content_key({"kind": kind, **params}), kind, ev.member, ev.model_id, params,
               depends=ev.params["train_key"])


def _study_job(spec: Spec, jobs: list[Job]) -> Job:
    """The experiment's study, computed and recorded in the catalog once every other job
    has ended (done or not: the study leaves out members without outputs), so the app
    shows it whoever ran the jobs."""
    params = {"after": [j.key for j in jobs], "name": spec.name,
              "analysis": spec.analysis.model_dump(mode="json"),
              "sets": spec.validation.sets}
    return Job(content_key({"kind": "study", **params}), "study", "", "", params)
