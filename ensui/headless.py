"""`ensui headless --spec FILE`: validate, plan, run, print. Progress goes to stderr;
the result table (or `--json`) to stdout, so scripts can pipe it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ensui.catalog import Catalog
from ensui.engine.plan import Plan, make_plan
from ensui.engine.report import accuracy_table, resilience_summary, team_summary
from ensui.engine.run import Runner
from ensui.engine.spec import load_spec
from ensui.engine.study import run_study
from ensui.errors import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK
from ensui.home import Home
from ensui import render


def run_headless(spec_file: Path, home: Home, *, as_json: bool, dry_run: bool,
                 out: Console, err: Console) -> int:
    spec = load_spec(spec_file)
    existing = Catalog(home.catalog) if home.catalog.exists() else None
    plan = make_plan(spec, existing or Catalog.memory(), spec_file)  # nothing written yet
    if dry_run:
        return _print_plan(plan, existing, as_json, out)
    catalog = existing or Catalog(home.catalog)
    catalog.record_experiment(plan.experiment_id, spec.name, str(spec_file.resolve()),
                              spec_file.read_text(), [(j.key, j.member) for j in plan.jobs])
    try:
        with _Progress(err, len(plan.jobs)) as listener:
            summary = Runner(spec, plan, catalog, home, listener).run()
    except KeyboardInterrupt:
        err.print("interrupted: finished epochs and jobs are kept; run the same command to resume")
        return EXIT_INTERRUPTED
    rows = accuracy_table(plan, catalog, spec.validation.sets)
    study = _study(spec, plan, catalog, home, err)
    if as_json:
        _write_json({"experiment": plan.experiment_id, "name": spec.name,
                     "sets": spec.validation.sets, "members": rows,
                     "study": study, "failed": summary.failed})
    else:
        out.print(render.accuracy_table(rows, spec.validation.sets))
        if study:
            out.print(render.team_summary_table(study["teams"], study["consensus"]))
            out.print(render.resilience_table(study["resilience"], spec.analysis.reference_member))
            out.print(render.figure_b_table(study["figure_b"], study["improvement"]))
    for key, message in summary.failed.items():
        err.print(f"[red]failed[/] {key}: {message}", highlight=False)
    return EXIT_JOB_FAILED if summary.failed else EXIT_OK


def _study(spec, plan: Plan, catalog: Catalog, home: Home, err: Console) -> dict | None:
    """Run and record the ensemble study; a plain-data summary of it, or None."""
    if not spec.analysis.enabled:
        return None
    study = run_study(spec, plan, catalog, home)
    if study is None:
        err.print("study skipped: fewer than two members were evaluated on every set")
        return None
    catalog.record_study(plan.experiment_id, study.team_rows, study.correlations,
                         study.matrices, study.members, study.resilience,
                         study.corruption_errors)
    for member, why in study.skipped.items():
        err.print(f"study leaves out {member}: {why}", highlight=False)
    for note in study.notes:
        err.print(f"study has no {note}", highlight=False)
    consensus = spec.analysis.consensus[0]
    return {"consensus": consensus, "improvement": spec.analysis.improvement,
            "members": study.members, "teams": team_summary(study.team_rows, consensus),
            "resilience": resilience_summary(study.resilience, study.corruption_errors,
                                             study.members),
            "figure_b": study.figure_b,
            "choices": {"attribution": spec.analysis.attribution.model_dump(),
                        "activation": spec.analysis.activation.model_dump()}}


def _print_plan(plan: Plan, catalog: Catalog | None, as_json: bool, out: Console) -> int:
    jobs = []
    for job in plan.jobs:
        row = catalog.job(job.key) if catalog else None
        jobs.append({"key": job.key, "kind": job.kind, "member": job.member,
                     "model_id": job.model_id, "val_set": job.params.get("val_set"),
                     "state": row["status"] if row else "new"})
    if as_json:
        _write_json({"experiment": plan.experiment_id, "jobs": jobs})
    else:
        out.print(render.plan_table(jobs))
    return EXIT_OK


def _write_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


class _Progress:
    """Job progress bar plus one line per finished epoch and result, on stderr."""

    def __init__(self, console: Console, total: int):
        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
        self.task = self.bar.add_task("jobs", total=total)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def __call__(self, event: dict) -> None:
        job, kind = event["job"], event["type"]
        what = " ".join([job.kind, job.params.get("method", ""), job.member]).replace("  ", " ")
        what += f" on {job.params['val_set']}" if "val_set" in job.params else ""
        if kind == "started":
            self.bar.update(self.task, description=what)
        elif kind == "epoch":
            m = event["metrics"]
            self.console.print(f"  {job.member} epoch {m.epoch}/{event['epochs']}: loss {m.loss:.3f} "
                               f"train {100 * m.train_acc:.1f}% val {100 * m.val_acc:.1f}% "
                               f"({m.seconds:.1f}s)", highlight=False)
        elif kind in ("done", "skipped", "failed"):
            self.bar.advance(self.task)
            if kind == "skipped":
                self.console.print(f"  {what}: cached", highlight=False)
            elif kind == "done" and job.kind in ("activations", "attribute"):
                self.console.print(f"  {what}: done", highlight=False)
            elif kind == "failed":
                self.console.print(f"  [red]{what} failed:[/] {event['error']}", highlight=False)
        elif kind == "result":
            self.console.print(f"  {what}: {100 * event['accuracy']:.1f}% of {event['n']}",
                               highlight=False)
