"""The jobs of BootstrapNAS sub-network members (methods.md §9): the super-network's
progressive-shrinking stages, one `supernet` job each, chained; an optional NSGA-II
`search` after the last; and per member a `train` job of recipe ``subnet`` that cuts its
configuration out of the trained super-network and recalibrates its batch norms.

Every member of a spec shares the one super-network (its key holds the listing, the
scale, the data and the seed, not the member), so three Table ii rows cost one training.

Listing 1 fine-tunes an ImageNet-pretrained ResNet50 (init_lr 2.5e-6, 165 epochs). At
tiny scale there is no pretrained network: a few warm-up epochs train the maximal network
alone (a stage with no elastic dims) before Listing 1's stages, shrunk in proportion to
`total_epochs`, at a learning rate for training from scratch. `training.supernet`
overrides every default; the resolved values are in the jobs' parameters.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ensui import paper
from ensui.engine.data.augment import augment_params
from ensui.engine.job import Job, content_key, file_identity
from ensui.engine.nas.listing import Listing, ListingError, Stage, load_listing, scaled
from ensui.engine.spec import Spec, located_error

PAPER = {"total_epochs": None, "warmup_epochs": 0, "lr": None, "bn_samples": None,
         "num_evals": None, "population": None}
TINY = {"total_epochs": 7, "warmup_epochs": 4, "lr": 0.01, "bn_samples": 256,
        "num_evals": 60, "population": 12}
OPTIMIZER = {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-5}  # not in Listing 1
SUPERNET_MEMBER = "supernet"  # the member label of the shared jobs


def resolved(spec: Spec) -> dict:
    """The scale's defaults, with the spec's `training.supernet` values where given."""
    given = spec.training.supernet
    base = PAPER if spec.scale == "paper" else TINY
    return {k: getattr(given, k) if getattr(given, k) is not None else v
            for k, v in base.items()}


def listing_json(spec: Spec, spec_path: Path | None = None) -> dict:
    """The spec's Listing 1 JSON, checked; a bad one is a SpecError naming the spec's
    field, the listing file and its entry."""
    path = spec.training.supernet.listing
    if path is None:
        return paper.listing_1()
    try:
        load_listing(path)
    except ListingError as exc:
        raise located_error(spec_path, ("training", "supernet", "listing"), str(exc)) from None
    return json.loads(Path(path).read_text())


def stage_listing(params: dict) -> Listing:
    """The listing a stage job trains with: the JSON's, shrunk to `total_epochs`, after
    `warmup_epochs` of the maximal network when there are any."""
    listing = load_listing(params["listing"])
    if params["total_epochs"]:
        listing = scaled(listing, total_epochs=params["total_epochs"])
    warmup = params["warmup_epochs"]
    if not warmup:
        return listing
    lr = params["lr"] or listing.training.stages[0].init_lr
    first = Stage(train_dims=(), epochs=warmup, init_lr=lr, epochs_lr=warmup)
    training = listing.training
    return replace(listing, training=replace(training, stages=(first, *training.stages)))


def supernet_jobs(spec: Spec, classes: int, spec_path: Path | None = None) -> list[Job]:
    """The stage jobs, in order, then the search job when the spec asks for it; with
    backend nncf, the one job that does both."""
    cfg, nas, tr = resolved(spec), spec.training.supernet, spec.training
    base = {
        "recipe": "supernet", "backend": nas.backend, "scale": spec.scale,
        "num_classes": classes, "image_size": spec.dataset.size,
        "dataset": spec.dataset.model_dump(mode="json"),
        "listing": listing_json(spec, spec_path),
        "total_epochs": cfg["total_epochs"], "warmup_epochs": cfg["warmup_epochs"],
        "lr": cfg["lr"], "optimizer": OPTIMIZER,
        "seed": nas.seed if nas.seed is not None else tr.seed,
        "batch_size": nas.batch_size or tr.batch_size or 64,
        "augment": augment_params(tr.crop_scale, tr.hflip),
        "init_weights": file_identity(nas.init_weights),
    }
    listing = stage_listing(base)
    base["bn_samples"] = cfg["bn_samples"] or listing.training.num_bn_adaptation_samples
    base["min_width"] = listing.training.width.min_width
    if nas.backend == "nncf":
        return [_nncf_job(base, cfg, listing, nas.search)]
    jobs, previous = [], None
    stages = listing.training.stages
    for index, stage in enumerate(stages):
        params = {**base, "stage": index, "stages": len(stages), "epochs": stage.epochs,
                  "init_key": previous}
        job = Job(content_key({"kind": "supernet", **params}), "supernet", SUPERNET_MEMBER,
                  "", params, depends=previous)
        jobs.append(job)
        previous = job.key
    if nas.search:
        jobs.append(_search_job(base, cfg, previous))
    return jobs


def _nncf_job(base: dict, cfg: dict, listing: Listing, search: bool) -> Job:
    """NNCF's BootstrapNAS: every stage (NNCF has no warm-up stage) and the search, one
    job (NNCF keeps the super-network's elastic state in memory only)."""
    epochs = sum(s.epochs for s in listing.training.stages) - base["warmup_epochs"]
    params = {**base, "warmup_epochs": 0, "stage": 0, "stages": 1, "epochs": epochs,
              "init_key": None,
              "search": search, "num_evals": cfg["num_evals"], "population": cfg["population"]}
    return Job(content_key({"kind": "supernet", **params}), "supernet", SUPERNET_MEMBER, "",
               params)


def _search_job(base: dict, cfg: dict, supernet_key: str) -> Job:
    params = {k: base[k] for k in ("scale", "num_classes", "image_size", "seed", "batch_size",
                                   "bn_samples", "augment", "listing", "total_epochs",
                                   "warmup_epochs", "lr", "min_width")}
    params |= {"supernet_key": supernet_key, "num_evals": cfg["num_evals"],
               "population": cfg["population"]}
    return Job(content_key({"kind": "search", **params}), "search", SUPERNET_MEMBER, "",
               params, depends=supernet_key)


def subnet_job(spec: Spec, label: str, row: dict, classes: int, supernet: Job) -> Job:
    """A member cut out of the trained super-network (`supernet`: its last stage job)."""
    p = supernet.params
    params = {"recipe": "subnet", "model_id": row["id"],
              "arch": {**row["arch"], "min_width": p["min_width"]},
              "scale": spec.scale, "num_classes": classes, "image_size": spec.dataset.size,
              "supernet_key": supernet.key, "bn_samples": p["bn_samples"],
              "batch_size": p["batch_size"], "augment": p["augment"], "seed": p["seed"],
              "min_width": p["min_width"], "epochs": 0}
    return Job(content_key({"kind": "train", **params}), "train", label, row["id"], params,
               depends=supernet.key)
