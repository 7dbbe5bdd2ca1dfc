"""The jobs of the jointly trained teams of a spec (recipe ``ncl``, methods.md §10).

Each (team, λ) is one `team` job: its members share every batch, so they train in one
process. Each member then has a `train` job of recipe ``ncl_member`` that only takes its
weights out of the team's run, so evaluation, attribution and activations read it like
any trained member.

Every member keeps its Table i optimizer and schedule (scaled to the team's epochs like
a supervised member's); the team shares one batch size and one data seed. A member's
seed decides its initialisation and dropout; with equal seeds and λ = 0 each member ends
with exactly the weights of its independent training.
"""

from __future__ import annotations

from ensui.catalog import Catalog
from ensui.engine.data.augment import augment_params
from ensui.engine.job import Job, content_key
from ensui.engine.spec import JointSpec, Spec, located_error
from ensui.engine.train.schedule import scale_schedule
from ensui.errors import UnknownIdError

JOINT_RECIPES = ("supervised",)  # DINO probes and subnetworks are not trained end to end


def joint_jobs(spec: Spec, catalog: Catalog, classes: int, spec_path=None) -> list[Job]:
    """Team and member-extraction jobs of every team × λ, in spec order."""
    jobs = []
    for index, team in enumerate(spec.joint):
        rows = [_row(catalog, ("joint", index, "models", k, "model"), m.model, spec_path)
                for k, m in enumerate(team.models)]
        for lam in team.lambdas:
            team_job = _team_job(spec, team, rows, lam, classes)
            jobs.append(team_job)
            jobs += [_member_job(team, lam, k, row, team_job)
                     for k, row in enumerate(rows)]
    return jobs


def _row(catalog: Catalog, loc: tuple, model_id: str, spec_path) -> dict:
    try:
        row = catalog.model(model_id)
    except UnknownIdError as exc:
        raise located_error(spec_path, loc, str(exc)) from None
    if row["recipe"] not in JOINT_RECIPES:
        raise located_error(spec_path, loc, f"{row['id']} uses the '{row['recipe']}' recipe; "
                            "joint training takes supervised models only")
    return row


def _team_job(spec: Spec, team: JointSpec, rows: list[dict], lam: float, classes: int) -> Job:
    tr = spec.training
    epochs = team.epochs or tr.epochs or max(row["epochs"] for row in rows)
    seed = team.seed if team.seed is not None else tr.seed
    params = {
        "recipe": "ncl", "scale": spec.scale, "num_classes": classes,
        "image_size": spec.dataset.size, "dataset": spec.dataset.model_dump(mode="json"),
        "members": [_member_settings(spec, model, row, epochs, seed)
                    for model, row in zip(team.models, rows)],
        "epochs": epochs,
        "batch_size": team.batch_size or tr.batch_size or min(row["batch_size"] for row in rows),
        "seed": seed, "augment": augment_params(tr.crop_scale, tr.hflip),
        "loss": {"variant": team.loss, "lam": lam, "consensus": team.consensus},
        "schedule_scaling": tr.schedule_scaling,
    }
    return Job(content_key({"kind": "team", **params}), "team", team.team_label(lam),
               "+".join(row["id"] for row in rows), params)


def _member_settings(spec: Spec, model, row: dict, epochs: int, seed: int) -> dict:
    tr = spec.training
    optimizer = dict(row["optimizer"])
    if model.lr is not None:
        optimizer["lr"] = model.lr
    return {"label": model.label, "model_id": row["id"], "arch": row["arch"],
            "optimizer": optimizer,
            "scheduler": {**scale_schedule(row["scheduler"], epochs, row["epochs"],
                                           tr.schedule_scaling),
                          "warmup_epochs": tr.warmup_epochs},
            "seed": model.seed if model.seed is not None else seed}


def _member_job(team: JointSpec, lam: float, index: int, row: dict, team_job: Job) -> Job:
    settings = team_job.params["members"][index]
    params = {"recipe": "ncl_member", "team_key": team_job.key, "index": index,
              "model_id": row["id"], "arch": row["arch"],
              **{k: team_job.params[k] for k in ("scale", "num_classes", "image_size")},
              "seed": settings["seed"], "epochs": 0}
    return Job(content_key({"kind": "train", **params}), "train",
               team.member_label(lam, team.models[index]), row["id"], params,
               depends=team_job.key)
