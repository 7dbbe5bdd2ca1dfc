"""`ensui headless --spec FILE`: validate, plan, queue, run through workers, print.
Progress goes to stderr; the result table (or `--json`) to stdout, so scripts can pipe it.

The jobs go to the catalog's queue, like the app's. By default this process starts
workers and follows them in the foreground; Ctrl-C stops them (their jobs go back to the
queue) and a re-run resumes. `--detach` leaves the workers running and returns at once;
`--workers 0` runs the jobs in this process.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from ensui.catalog import Catalog
from ensui.engine.plan import Plan, make_plan
from ensui.engine.report import (accuracy_table, resilience_summary, sweep_summary,
                                 team_summary)
from ensui.engine.runtime import pool
from ensui.engine.runtime.control import serving
from ensui.engine.runtime.submit import submit
from ensui.engine.runtime.worker import STALE_S, Worker
from ensui.engine.spec import load_spec
from ensui.engine.runtime.study_job import record_study
from ensui.errors import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK
from ensui.home import Home
from ensui import render

POLL_S = 0.5
MAX_RESPAWNS = 3


def run_headless(spec_file: Path, home: Home, *, as_json: bool, dry_run: bool,
                 out: Console, err: Console, workers: int | None = None,
                 detach: bool = False) -> int:
    spec = load_spec(spec_file)
    existing = Catalog(home.catalog) if home.catalog.exists() else None
    plan = make_plan(spec, existing or Catalog.memory(), spec_file)  # nothing written yet
    if dry_run:
        return _print_plan(plan, existing, as_json, out)
    catalog = existing or Catalog(home.catalog)
    submission = submit(spec, spec_file, spec_file.read_text(), catalog, home)
    plan = submission.plan
    for job in submission.cached:
        err.print(f"  {_what(job.kind, job.params, job.member)}: cached", highlight=False)
    if detach:
        return _detach(plan, home, workers, err)
    try:
        _run(spec, plan, catalog, home, workers, err)
    except KeyboardInterrupt:
        err.print("interrupted: finished epochs and jobs are kept; run the same command to resume")
        return EXIT_INTERRUPTED
    return _report(spec, spec_file, plan, catalog, home, as_json, out, err)


def _detach(plan: Plan, home: Home, workers: int | None, err: Console) -> int:
    chosen = pool.lanes(cpu=workers) if workers else pool.lanes()
    procs = pool.start(home, chosen, exit_when_idle=True)
    err.print(f"queued experiment {plan.experiment_id[:8]}; {len(procs)} worker(s) started "
              f"(pids {', '.join(str(p.pid) for p in procs)}). Follow with `ensui status` or "
              "`ensui jobs`; run the same command again to print the results.", highlight=False)
    return EXIT_OK


def _run(spec, plan: Plan, catalog: Catalog, home: Home, workers: int | None,
         err: Console) -> None:
    follower = _Follower(catalog, plan.experiment_id, err)
    if spec.executor.kind == "slurm":
        from ensui.engine.runtime.slurm import run_on_slurm

        run_on_slurm(spec, plan, catalog, home, follower.poll)
    elif workers == 0:
        _run_here(plan, home, follower)
    else:
        _run_workers(plan, catalog, home, workers, follower)
    follower.poll()


def _run_here(plan: Plan, home: Home, follower: "_Follower") -> None:
    """Jobs in this process; a thread prints progress from the catalog meanwhile."""
    stop = threading.Event()

    def follow() -> None:
        catalog = Catalog(home.catalog)
        local = _Follower(catalog, follower.exp_id, follower.console, follower.seen)
        while not stop.wait(POLL_S):
            local.poll()
        follower.rowid, follower.seen = local.rowid, local.seen

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        Worker(home, experiment=plan.experiment_id, exit_when_idle=True,
               poll_s=POLL_S).run(handle_sigterm=False)
    finally:
        stop.set()
        thread.join()


def _run_workers(plan: Plan, catalog: Catalog, home: Home, workers: int | None,
                 follower: "_Follower") -> None:
    """Start workers unless live ones already serve this experiment (then this process
    only follows them: reattaching), and follow until every job has ended."""
    chosen = pool.lanes(cpu=workers) if workers else pool.lanes()
    exp = plan.experiment_id
    procs = [] if serving(catalog, exp) else pool.start(home, chosen, experiment=exp,
                                                          exit_when_idle=True)
    respawns = 0
    try:
        while True:
            time.sleep(POLL_S)
            follower.poll()
            progress = catalog.experiment_progress(exp)
            if not progress.get("queued") and not progress.get("running"):
                break
            if all(p.poll() is not None for p in procs) and not serving(catalog, exp):
                catalog.reap(STALE_S)  # a crashed worker's job goes back to the queue
                if respawns >= MAX_RESPAWNS:
                    raise RuntimeError("the workers keep exiting; see the logs in "
                                       f"{home.root / 'logs'}")
                respawns += 1
                procs = pool.start(home, chosen, experiment=exp, exit_when_idle=True)
    except KeyboardInterrupt:
        pool.stop([p.pid for p in procs])
        raise
    for p in procs:
        p.wait(timeout=60)


def _report(spec, spec_file: Path, plan: Plan, catalog: Catalog, home: Home, as_json: bool,
            out: Console, err: Console) -> int:
    rows = accuracy_table(plan, catalog, spec.validation.sets)
    study = _study(spec, spec_file, catalog, home, err)
    states = catalog.job_states(plan.experiment_id)
    failed = {k: e or s for k, (s, e) in states.items() if s in ("failed", "cancelled")}
    front = catalog.front(plan.experiment_id)
    if as_json:
        _write_json({"experiment": plan.experiment_id, "name": spec.name,
                     "sets": spec.validation.sets, "members": rows,
                     "study": study, "front": front, "failed": failed})
    else:
        out.print(render.accuracy_table(rows, spec.validation.sets))
        if study:
            if study["teams"]:  # none when only jointly trained teams were evaluated
                out.print(render.team_summary_table(study["teams"], study["consensus"]))
                out.print(render.resilience_table(study["resilience"],
                                                  spec.analysis.reference_member))
            if study["figure_b"]:
                out.print(render.figure_b_table(study["figure_b"], study["improvement"]))
            if study["sweep"]:
                out.print(render.sweep_table(study["sweep"], study["improvement"]))
        if front:
            out.print(render.front_table(front))
    for key, message in failed.items():
        err.print(f"[red]failed[/] {key}: {message}", highlight=False)
    return EXIT_JOB_FAILED if failed else EXIT_OK


def _study(spec, spec_file: Path, catalog: Catalog, home: Home, err: Console) -> dict | None:
    """Run and record the ensemble study; a plain-data summary of it, or None."""
    if not spec.analysis.enabled:
        return None
    study = record_study(spec, spec_file, catalog, home)  # fresh, whoever ran the jobs
    if study is None:
        err.print("study skipped: fewer than two members were evaluated on every set")
        return None
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
            "sweep": sweep_summary(study.sweep, consensus, spec.analysis.improvement),
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


def _what(kind: str, params: dict, member: str) -> str:
    if kind == "supernet":
        return f"supernet stage {params['stage'] + 1}/{params['stages']}"
    if kind == "search":
        return "sub-network search"
    what = " ".join(w for w in (kind, params.get("method"), member) if w)
    return what + (f" on {params['val_set']}" if params.get("val_set") else "")


SHOWN_EXTRA = ("teacher_entropy", "kl_to_uniform", "disagreement", "min_subnet_acc")


def epoch_line(e: dict) -> str:
    """`  A epoch 3/6: loss 0.412 train 88.1% val 90.2% (4.1s)`; a DINO backbone epoch
    shows its k-NN accuracy and collapse indicators instead."""
    extra = json.loads(e.get("extra") or "{}")
    parts = [f"loss {e['loss']:.3f}"]
    if e.get("train_acc") is not None:
        parts.append(f"train {100 * e['train_acc']:.1f}%")
    if e.get("val_acc") is not None:
        parts.append(f"{render.VAL_NAMES.get(e.get('kind'), 'val')} "
                     f"{100 * e['val_acc']:.1f}%")
    parts += [f"{k} {v:.3g}" for k, v in extra.items() if k in SHOWN_EXTRA]
    what = {"pretrain": "backbone", "supernet": f"stage {(e.get('stage') or 0) + 1}/"
            f"{e.get('stages')} epoch"}.get(e.get("kind"), "epoch")
    return (f"  {e['member']} {what} {e['epoch']}/{e['epochs']}: {' '.join(parts)} "
            f"({e['seconds']:.1f}s)")

class _Follower:
    """Prints an experiment's progress by polling the catalog: one line per finished
    epoch, result, analysis job and failure."""

    def __init__(self, catalog: Catalog, exp_id: str, console: Console,
                 seen: dict | None = None):
        self.catalog, self.exp_id, self.console = catalog, exp_id, console
        self.rowid = catalog.last_epoch_rowid()  # only epochs from now on
        self.seen = dict(seen) if seen is not None else catalog.job_states(exp_id)

    def poll(self) -> None:
        for e in self.catalog.epochs_after(self.exp_id, self.rowid):
            self.rowid = e["rowid"]
            self.console.print(epoch_line(e), highlight=False)
        for key, (status, error) in self.catalog.job_states(self.exp_id).items():
            if self.seen.get(key, (None,))[0] != status:
                self.seen[key] = (status, error)
                self._changed(key, status, error)

    def _changed(self, key: str, status: str, error: str | None) -> None:
        if status not in ("done", "failed", "cancelled"):
            return
        job = self.catalog.job(key)
        what = _what(job["kind"], job["params"], job["member"])
        if status != "done":
            self.console.print(f"  [red]{what} {status}:[/] {error}", highlight=False)
        elif job["kind"] == "evaluate":
            result = self.catalog.result(key)
            self.console.print(f"  {what}: {100 * result['accuracy']:.1f}% of {result['n']}",
                               highlight=False)
        elif job["kind"] != "train":
            self.console.print(f"  {what}: done", highlight=False)
