"""The Slurm executor: each job of an experiment runs as its own Slurm job, through
submitit (its LocalExecutor stands in for Slurm in tests, `executor.cluster: local`).

The headless process is the catalog's single writer. It claims runnable jobs, submits up
to `array_parallelism` of them, and each loop folds their event files into the catalog
(`events.Ingester`), beats their heartbeats (a job waiting in Slurm's queue is alive, and
no local worker may reap it) and watches submitit's states: a Slurm job that ended
without a done or failed event (killed, out of memory, time limit, node lost) is
re-queued, or failed once it used its attempts. Ctrl-C cancels the Slurm jobs in flight
and re-queues theirs; a re-run resumes from the last checkpoints.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ensui.catalog import Catalog
from ensui.catalog_queue import MAX_ATTEMPTS
from ensui.engine.plan import Plan
from ensui.engine.runtime.events import Ingester, run_remote
from ensui.engine.runtime.worker import STALE_S
from ensui.engine.spec import ExecutorSpec, Spec
from ensui.errors import EnsuiError
from ensui.home import Home

POLL_S = 0.5
GRACE_S = 10.0  # a Slurm job seen ended may still have events on their way to us
INTERRUPTED = "interrupted; re-queued, it resumes from its last checkpoint"
log = logging.getLogger("ensui.slurm")


@dataclass
class _Flight:
    job: object  # submitit.Job
    worker: str  # slurm-<submitit job id>, the job's holder in the catalog
    ended_at: float | None = None  # when submitit first said it ended


def run_on_slurm(spec: Spec, plan: Plan, catalog: Catalog, home: Home,
                 poll: Callable[[], None]) -> None:
    """Run the experiment's jobs as Slurm jobs until every one is done, failed or
    cancelled; `poll` prints progress from the catalog."""
    submitit = _submitit()
    ex = spec.executor
    if spec.training.device == "cuda" and not ex.gpus_per_job:
        raise EnsuiError("training.device is cuda, but executor.gpus_per_job is 0")
    experiment = catalog.find_experiment(plan.experiment_id)  # the spec as recorded
    executor = _executor(submitit, ex, home, Path(experiment["spec_path"]))
    _Run(spec, plan, catalog, home, executor, experiment).run(poll)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise EnsuiError("executor: slurm needs submitit (pip install 'ensui[slurm]')") from None
    return submitit


def _executor(submitit, ex: ExecutorSpec, home: Home, spec_path: Path):
    # relative to the spec file, like the spec's other paths
    folder = spec_path.parent / ex.folder.expanduser() if ex.folder else home.root / "slurm"
    executor = submitit.AutoExecutor(folder=folder, cluster=ex.cluster)
    if ex.cluster == "local":  # GPUs 0..n-1 of this machine, made visible to the job
        executor.update_parameters(timeout_min=ex.time_min, gpus_per_node=ex.gpus_per_job)
    else:
        executor.update_parameters(
            slurm_partition=ex.partition, gpus_per_node=ex.gpus_per_job,
            cpus_per_task=ex.cpus_per_job, mem_gb=ex.mem_gb, timeout_min=ex.time_min,
            slurm_array_parallelism=ex.array_parallelism)
    return executor


class _Run:
    def __init__(self, spec: Spec, plan: Plan, catalog: Catalog, home: Home, executor,
                 experiment: dict):
        self.spec, self.catalog, self.home, self.executor = spec, catalog, home, executor
        self.exp_id = plan.experiment_id
        self.spec_text, self.spec_path = experiment["spec"], experiment["spec_path"]
        ex = spec.executor
        # the lane matches the jobs' needs (training.device); auto runs on what Slurm gives
        self.lane = "cuda" if ex.gpus_per_job and spec.training.device != "cpu" else "cpu"
        self.grace = 0.0 if ex.cluster == "local" else GRACE_S  # same disk, no delay
        self.ingester = Ingester(catalog, home)
        self.flights: dict[str, _Flight] = {}
        self._stuck = False

    def run(self, poll: Callable[[], None]) -> None:
        try:
            while True:
                self._fill()
                if self._finished():
                    return
                time.sleep(POLL_S)
                self._watch()
                poll()
        except BaseException:  # Ctrl-C or an error: leave no Slurm job behind
            self._stop_all(INTERRUPTED)
            raise

    # -- submitting -------------------------------------------------------------------

    def _fill(self) -> None:
        self.catalog.reap(STALE_S)  # fails jobs whose dependency failed; dead earlier claims
        while len(self.flights) < self.spec.executor.array_parallelism:
            pending = f"slurm-pending-{uuid.uuid4().hex[:8]}"
            job = self.catalog.claim_job(pending, self.lane, self.exp_id)
            if job is None:
                return
            if job["kind"] == "study":  # it needs the catalog: here, not on a node
                self._study_here(job, pending)
                continue
            self._submit(job, pending)

    def _study_here(self, job: dict, worker: str) -> None:
        from ensui.engine.runtime.study_job import record_study

        try:
            record_study(self.spec, Path(self.spec_path), self.catalog, self.home)
        except Exception as exc:  # recorded; the study can be retried
            self.catalog.end_job(job["key"], worker, "failed", f"{type(exc).__name__}: {exc}")
            return
        self.catalog.end_job(job["key"], worker, "done", artifact="catalog")

    def _submit(self, job: dict, pending: str) -> None:
        key, p = job["key"], job["params"]
        # what the node needs of the member's training (it cannot ask the catalog)
        train_params = ({p["train_key"]: self.catalog.job(p["train_key"])["params"]}
                        if "train_key" in p else {})
        try:
            self.executor.update_parameters(name=f"ensui-{job['kind']}-{job['member']}")
            sjob = self.executor.submit(run_remote, str(self.home.root), self.spec_text,
                                        self.spec_path, key, job["kind"], p, job["member"],
                                        job["model_id"], train_params)
        except Exception as exc:  # the cluster or its settings, not the job
            self.catalog.requeue_job(key, f"not submitted: {exc}")
            raise EnsuiError(f"submitting job {key} to Slurm failed: "
                             f"{type(exc).__name__}: {exc}") from None
        worker = f"slurm-{sjob.job_id}"
        self.flights[key] = _Flight(sjob, worker)
        self.catalog.hand_over(key, pending, worker)
        self.catalog.set_job_log(key, str(sjob.paths.stderr))
        log.info("job %s is Slurm job %s", key, sjob.job_id)

    def _finished(self) -> bool:
        progress = self.catalog.experiment_progress(self.exp_id)
        if not progress.get("queued") and not progress.get("running"):
            return True
        stuck = not self.flights and not progress.get("running")
        self._stuck, was_stuck = stuck, self._stuck
        if stuck and was_stuck:  # twice: a reap in between failed what it could
            raise EnsuiError(
                f"{progress['queued']} job(s) are queued, but none can start on lane "
                f"'{self.lane}' (executor.gpus_per_job: {self.spec.executor.gpus_per_job}, "
                f"training.device: {self.spec.training.device}); were they queued with other "
                "needs by another experiment?")
        return False

    # -- watching ---------------------------------------------------------------------

    def _watch(self) -> None:
        # ended before folding: whatever such a job wrote is then in its file
        ended = [key for key, f in self.flights.items() if _ended(f.job)]
        for key, status in self.ingester.fold(list(self.flights)).items():
            if status:
                del self.flights[key]
        for key in ended:
            if key in self.flights:
                self._lost(key, self.flights[key])
        for key, flight in list(self.flights.items()):
            if self.catalog.beat(flight.worker, key):
                self._cancelled(key, flight)

    def _lost(self, key: str, flight: _Flight) -> None:
        """The Slurm job ended without a done or failed event: it died."""
        now = time.time()
        flight.ended_at = flight.ended_at or now
        if now - flight.ended_at < self.grace:
            return
        del self.flights[key]
        stderr = flight.job.paths.stderr
        why = (f"Slurm job {flight.job.job_id} ended ({_state(flight.job)}) without reporting "
               f"its end: killed, out of memory, time limit or node lost; its log: {stderr}")
        last = _last_line(stderr)
        why += f" (last line: {last})" if last else ""
        status = self.catalog.lose_job(key, flight.worker, why, MAX_ATTEMPTS)
        log.warning("%s: %s (%s)", key, why, status)

    def _cancelled(self, key: str, flight: _Flight) -> None:
        """Cancelled by the user (`ensui cancel`), or taken away: stop its Slurm job."""
        del self.flights[key]
        _cancel(flight.job)
        row = self.catalog.job(key) or {}
        if row.get("status") == "running" and row.get("cancel_requested"):
            self.catalog.end_job(key, flight.worker, "cancelled", row.get("error") or "cancelled")

    def _stop_all(self, reason: str) -> None:
        for key, flight in self.flights.items():
            _cancel(flight.job)
            self.catalog.requeue_job(key, reason)
        self.flights.clear()


def _ended(job) -> bool:
    try:
        return job.done()
    except Exception as exc:  # sacct unreachable for a moment: ask again next loop
        log.warning("state of Slurm job %s unknown: %s", job.job_id, exc)
        return False


def _state(job) -> str:
    try:
        return job.state
    except Exception:
        return "UNKNOWN"


def _cancel(job) -> None:
    try:
        job.cancel(check=False)
    except Exception as exc:  # already gone
        log.warning("cancelling Slurm job %s: %s", job.job_id, exc)


def _last_line(path: Path) -> str | None:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][-300:] if lines else None
