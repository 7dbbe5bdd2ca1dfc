"""`ensui worker`, `ensui workers …`, `ensui jobs …`, `ensui status`: the job runtime from
the command line. Registered on the main app by `ensui.cli`."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensui.cli import HomeOption, JsonOption, _home, _print_json, err, out
from ensui.errors import EnsuiError

jobs_app = typer.Typer(help="The job queue: list, cancel, retry, run now, logs.",
                       invoke_without_command=True)
workers_app = typer.Typer(no_args_is_help=True, help="Worker processes: start, stop, status.")

StatesOption = Annotated[Optional[list[str]], typer.Option(
    "--state", help="only jobs in this state (queued, running, done, failed, cancelled)")]


def _catalog(ctx, home):
    from ensui.catalog import Catalog

    where = _home(ctx, home)
    if not where.catalog.exists():
        raise EnsuiError(f"no catalog at {where.catalog}; run an experiment first")
    return Catalog(where.catalog), where


def _job(catalog, ref: str) -> dict:
    job = catalog.find_job(ref)
    if job is None:
        raise EnsuiError(f"no job matches '{ref}' (give more characters of its key)")
    return job


def _experiment_id(catalog, ref: str | None) -> str | None:
    return catalog.find_experiment(ref)["id"] if ref else None


@jobs_app.callback()
def jobs(ctx: typer.Context,
         experiment: Annotated[Optional[str], typer.Option("--experiment", "-e")] = None,
         state: StatesOption = None,
         limit: Annotated[int, typer.Option(help="newest jobs shown")] = 50,
         home: HomeOption = None, as_json: JsonOption = False):
    """List jobs (newest first) with state, device, progress, elapsed time and cost."""
    if ctx.invoked_subcommand is not None:
        return
    from ensui.render import jobs_table

    catalog, _ = _catalog(ctx, home)
    rows = catalog.jobs_page(_experiment_id(catalog, experiment), state or (), limit)
    _print_json(rows) if as_json else out.print(jobs_table(rows, time.time()))


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, key: str,
                reason: Annotated[str, typer.Option(help="recorded with the job")] = "cancelled by the user",
                home: HomeOption = None):
    """Cancel a job: a queued one at once; a running one is stopped by its worker (its
    process group gets SIGTERM, then SIGKILL after a grace period if it does not stop)."""
    from ensui.engine.runtime.control import cancel

    catalog, _ = _catalog(ctx, home)
    job = _job(catalog, key)
    err.print(f"{job['key']}: {cancel(catalog, job, reason)}", highlight=False)


@jobs_app.command("retry")
def jobs_retry(ctx: typer.Context, key: Annotated[Optional[str], typer.Argument()] = None,
               failed_of: Annotated[Optional[str], typer.Option(
                   "--failed", help="re-queue every failed job of this experiment")] = None,
               home: HomeOption = None):
    """Re-queue a failed or cancelled job (or all failed jobs of an experiment)."""
    catalog, _ = _catalog(ctx, home)
    if failed_of:
        count = catalog.retry_failed(_experiment_id(catalog, failed_of))
        err.print(f"{count} failed job(s) re-queued")
        return
    if key is None:
        raise EnsuiError("give a job key, or --failed EXPERIMENT")
    job = _job(catalog, key)
    if not catalog.retry_job(job["key"]):
        raise EnsuiError(f"{job['key']} is {job['status']}; only failed or cancelled jobs retry")
    err.print(f"{job['key']}: queued", highlight=False)


@jobs_app.command("run-now")
def jobs_run_now(ctx: typer.Context, key: str, home: HomeOption = None):
    """Move a job to the front of the queue."""
    catalog, _ = _catalog(ctx, home)
    job = _job(catalog, key)
    if not catalog.run_now(job["key"]):
        raise EnsuiError(f"{job['key']} is already done")
    err.print(f"{job['key']}: first in the queue", highlight=False)


@jobs_app.command("logs")
def jobs_logs(ctx: typer.Context, key: str,
              lines: Annotated[int, typer.Option("--lines", "-n")] = 40,
              home: HomeOption = None):
    """Print the end of a job's log."""
    catalog, _ = _catalog(ctx, home)
    job = _job(catalog, key)
    if not job.get("log") or not Path(job["log"]).is_file():
        raise EnsuiError(f"{job['key']} has no log yet (state {job['status']})")
    text = Path(job["log"]).read_text(errors="replace").splitlines()
    out.print("\n".join(text[-lines:]), highlight=False, markup=False)


@workers_app.command("start")
def workers_start(ctx: typer.Context,
                  cpu: Annotated[Optional[int], typer.Option(
                      help="CPU workers (default: 1 when there is no GPU, else 0)")] = None,
                  gpus: Annotated[Optional[str], typer.Option(
                      help="GPU indices, e.g. 0,1 (default: every visible GPU)")] = None,
                  max_running: Annotated[Optional[int], typer.Option(
                      help="cap on jobs running at once, over all workers")] = None,
                  min_free_gb: Annotated[float, typer.Option(
                      help="a GPU worker claims a job only with this much free memory")] = 0.0,
                  home: HomeOption = None):
    """Start workers in their own sessions: they keep running after this terminal, the
    app or the SSH connection closes, and serve the queue until stopped."""
    from ensui.engine.runtime import pool

    where = _home(ctx, home)
    chosen = pool.lanes(cpu, [int(g) for g in gpus.split(",")] if gpus else None)
    procs = pool.start(where, chosen, max_running=max_running, min_free_gb=min_free_gb)
    for lane, proc in zip(chosen, procs):
        err.print(f"worker pid {proc.pid} on {lane.name}", highlight=False)


@workers_app.command("stop")
def workers_stop(ctx: typer.Context,
                 grace: Annotated[float, typer.Option(help="seconds before SIGKILL")] = 30.0,
                 home: HomeOption = None):
    """Stop every live worker: its job goes back to the queue and resumes later."""
    from ensui.engine.runtime import pool

    catalog, _ = _catalog(ctx, home)
    pids = [w["pid"] for w in catalog.workers(alive_only=True)]
    killed = pool.stop(pids, grace)
    err.print(f"{len(pids)} worker(s) stopped" + (f", {len(killed)} killed" if killed else ""))


@workers_app.command("status")
def workers_status(ctx: typer.Context, home: HomeOption = None, as_json: JsonOption = False):
    """Workers with lane, state, current job and last heartbeat."""
    from ensui.render import workers_table

    catalog, _ = _catalog(ctx, home)
    rows = catalog.workers()
    _print_json(rows) if as_json else out.print(workers_table(rows, time.time()))


def worker(ctx: typer.Context,
           lane: Annotated[str, typer.Option(help="cpu or cuda:<index>")] = "cpu",
           experiment: Annotated[Optional[str], typer.Option(help="only this experiment's jobs")] = None,
           exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle")] = False,
           max_running: Annotated[Optional[int], typer.Option()] = None,
           min_free_gb: Annotated[float, typer.Option()] = 0.0,
           stale_s: Annotated[Optional[float], typer.Option(
               help="seconds without heartbeat after which a job is taken as dead")] = None,
           home: HomeOption = None):
    """Run one worker in this process (workers start this themselves)."""
    from ensui.engine.runtime.worker import STALE_S, Worker

    signal.signal(signal.SIGINT, signal.default_int_handler)
    Worker(_home(ctx, home), lane, experiment, exit_when_idle, max_running,
           min_free_gb, stale_s=stale_s or STALE_S).run()


def status(ctx: typer.Context,
           once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
           every: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
           home: HomeOption = None, as_json: JsonOption = False):
    """The queue at a glance: jobs per state, live workers, running jobs."""
    from ensui.engine.runtime.control import snapshot
    from ensui.render import status_view

    catalog, _ = _catalog(ctx, home)
    while True:
        data = snapshot(catalog)
        if as_json:
            _print_json(data)
        else:
            out.print(status_view(data, time.time()))
        if once or as_json:
            return
        time.sleep(every)
