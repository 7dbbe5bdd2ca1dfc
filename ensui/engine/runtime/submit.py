"""Submitting an experiment: record it, and queue its jobs — new ones, and those to do
again (failed, cancelled, or done with a damaged artifact). Shared by `ensui headless`
and the app, so both queue the same work the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ensui.catalog import Catalog
from ensui.engine.plan import Job, Plan, make_plan
from ensui.engine.runtime.work import intact
from ensui.engine.spec import Spec
from ensui.home import Home


@dataclass
class Submission:
    plan: Plan
    cached: list[Job]   # done, artifacts intact: nothing to do
    redo: set[str]      # queued again


def submit(spec: Spec, spec_path: Path, spec_text: str, catalog: Catalog,
           home: Home) -> Submission:
    plan = make_plan(spec, catalog, spec_path)
    catalog.record_experiment(plan.experiment_id, spec.name, str(spec_path.resolve()),
                              spec_text, [(j.key, j.member) for j in plan.jobs])
    redo, cached = triage(plan, catalog, home)
    needs = "any" if spec.training.device == "auto" else spec.training.device
    catalog.enqueue(plan.experiment_id, plan.jobs, redo, needs)
    return Submission(plan, cached, redo)


def triage(plan: Plan, catalog: Catalog, home: Home) -> tuple[set[str], list[Job]]:
    """(keys to queue again, jobs done and intact). Queued and running jobs are left
    alone: a worker may hold them."""
    redo, cached = set(), []
    for job in plan.jobs:
        row = catalog.job(job.key)
        if row is None or row["status"] in ("queued", "running"):
            continue
        if row["status"] == "done" and intact(home, job.key, job.kind, job.params):
            cached.append(job)
        else:
            redo.add(job.key)
    if redo:  # a job to do again makes the study stale
        redo |= {j.key for j in cached if j.kind == "study"}
        cached = [j for j in cached if j.kind != "study"]
    return redo, cached
