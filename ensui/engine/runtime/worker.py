"""A worker: claims jobs from the catalog's queue and runs them, one at a time, until told
to stop (or, with `exit_when_idle`, until nothing it may run is left).

A heartbeat thread beats every HEARTBEAT_S for the worker and its job, and reaps jobs of
dead workers (no heartbeat for STALE_S). When the beat finds the job cancelled, it
interrupts the main thread, which records the cancel and goes on with the next job.
SIGTERM stops the worker: its job is interrupted and re-queued (it resumes from its last
checkpoint), and the worker exits.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from ensui.catalog import Catalog
from ensui.engine.runtime import cost
from ensui.engine.runtime.study_job import record_study
from ensui.engine.runtime.work import JobWork, job_log_path
from ensui.engine.spec import parse_spec
from ensui.home import Home

HEARTBEAT_S = 2.0
STALE_S = 20.0  # a job with no heartbeat for this long lost its process
log = logging.getLogger("ensui.job")


class CatalogRecorder:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def epoch(self, key, m, epochs) -> None:
        self.catalog.record_epoch(key, m.epoch, extra=m.extra, loss=m.loss,
                                  train_acc=m.train_acc, val_acc=m.val_acc, lr=m.lr,
                                  seconds=m.seconds)

    def result(self, key, train_key, model_id, val_set, accuracy, nll, n) -> None:
        self.catalog.record_result(key, train_key, model_id, val_set, accuracy, nll, n)

    def front(self, key, rows) -> None:
        self.catalog.record_front(key, rows)


class Worker:
    def __init__(self, home: Home, lane: str = "cpu", experiment: str | None = None,
                 exit_when_idle: bool = False, max_running: int | None = None,
                 min_free_gb: float = 0.0, poll_s: float = 1.0, stale_s: float = STALE_S,
                 listener: Callable[[dict], None] | None = None):
        self.home, self.lane, self.experiment = home, lane, experiment
        self.exit_when_idle, self.max_running = exit_when_idle, max_running
        self.min_free_gb, self.poll_s, self.stale_s = min_free_gb, poll_s, stale_s
        self.listen = listener or (lambda event: None)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.catalog = Catalog(home.catalog)
        self.device = torch.device("cuda" if lane.startswith("cuda") else "cpu")
        self._work: tuple[str, JobWork] | None = None  # (experiment id, its JobWork)
        self._job: str | None = None
        self._cancelled = threading.Event()
        self._stopping = threading.Event()
        self._done = threading.Event()

    # -- lifecycle ----------------------------------------------------------------

    def run(self, handle_sigterm: bool = True) -> None:
        log_file = os.environ.get("ENSUI_WORKER_LOG", "")
        self.catalog.register_worker(self.id, os.getpid(), socket.gethostname(), self.lane,
                                     log_file, self.experiment)
        if handle_sigterm:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        beat = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        beat.start()
        try:
            self._loop()
        finally:
            self._done.set()
            beat.join(timeout=HEARTBEAT_S * 2)
            self.catalog.worker_state(self.id, "stopped")

    def stop(self) -> None:
        self._stopping.set()

    def _on_sigterm(self, signum, frame) -> None:
        self._stopping.set()
        if self._job is not None:
            raise KeyboardInterrupt  # out of the job; it is re-queued below

    def _loop(self) -> None:
        affinity = None
        while not self._stopping.is_set():
            self.catalog.reap(self.stale_s)
            job = self._claim(affinity)
            if job is None:
                if self.exit_when_idle and self._nothing_left():
                    return
                time.sleep(self.poll_s)
                continue
            affinity = job["params"].get("train_key", job["key"])
            try:
                self._run(job)
            except KeyboardInterrupt:
                if self._stopping.is_set():
                    return
                if not self._cancelled.is_set():
                    raise  # Ctrl-C of an in-process worker
                # else: a cancel that arrived just after its job ended

    def _claim(self, affinity: str | None) -> dict | None:
        if self.device.type == "cuda" and self.min_free_gb > 0:
            free, _ = torch.cuda.mem_get_info()
            if free / 2 ** 30 < self.min_free_gb:
                return None  # admission: wait until the GPU has room
        return self.catalog.claim_job(self.id, self.lane, self.experiment, affinity,
                                      self.max_running)

    def _nothing_left(self) -> bool:
        """No job of the experiment (or of the queue) is queued or running."""
        if self.experiment:
            progress = self.catalog.experiment_progress(self.experiment)
            return not progress.get("queued") and not progress.get("running")
        return not self.catalog.jobs_page(states=("queued", "running"), limit=1)

    # -- one job ------------------------------------------------------------------

    def _run(self, job: dict) -> None:
        key = job["key"]
        handler = self._job_log(key)
        self._cancelled.clear()
        self._job = key
        self.listen({"type": "started", "job": job})
        meter = cost.Meter(self.device)
        status, error, artifact = "done", None, None
        try:
            work = self._work_for(job)
            work.should_stop = self._stopping.is_set
            artifact = work.run(key, job["kind"], job["params"], job["member"], job["model_id"])
        except KeyboardInterrupt:
            status, error = self._interrupted(key)
        except Exception as exc:  # the job failed; the worker goes on
            status, error = "failed", _summary(exc)
            log.error("failed: %s\n%s", error, traceback.format_exc())
        finally:
            self._job = None
        usage = meter.stop()
        if status == "queued":
            self.catalog.requeue_job(key, error)
        elif not self.catalog.end_job(key, self.id, status, error, artifact, usage):
            log.warning("job %s was taken from this worker (stale heartbeat?)", key)
        log.info("%s (%.1f s wall, %.1f s CPU)", status, usage["wall_s"], usage["cpu_s"])
        logging.getLogger("ensui.job").removeHandler(handler)
        handler.close()
        self.listen({"type": status, "job": job, "error": error})
        if status == "queued" and not self._stopping.is_set():
            raise KeyboardInterrupt  # Ctrl-C of an in-process worker: stop here too

    def _interrupted(self, key: str) -> tuple[str, str]:
        row = self.catalog.job(key) or {}
        if self._cancelled.is_set() or row.get("cancel_requested"):
            return "cancelled", row.get("error") or "cancelled"
        return "queued", "interrupted; re-queued, it resumes from its last checkpoint"

    def _work_for(self, job: dict) -> JobWork:
        """The job's experiment's JobWork, kept while jobs of that experiment follow."""
        exp_id = job["experiment_id"]
        if self._work is None or self._work[0] != exp_id:
            exp = self.catalog.find_experiment(exp_id)
            spec_path = Path(exp["spec_path"])
            spec = parse_spec(exp["spec"], spec_path)

            def study() -> str:
                record_study(spec, spec_path, self.catalog, self.home)
                return "catalog"

            self._work = (exp_id, JobWork(spec, self.home, CatalogRecorder(self.catalog),
                                          self.device, self._train_params, study))
        return self._work[1]

    def _train_params(self, train_key: str) -> dict:
        return self.catalog.job(train_key)["params"]

    def _job_log(self, key: str) -> logging.Handler:
        path = job_log_path(self.home, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("ensui.job")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        self.catalog.set_job_log(key, str(path))
        log.info("started by worker %s on %s", self.id, self.lane)
        return handler

    # -- heartbeat ------------------------------------------------------------------

    def _beat_loop(self) -> None:
        catalog = Catalog(self.home.catalog)  # a connection of this thread's own
        while not self._done.wait(HEARTBEAT_S):
            key = self._job
            try:
                stop = catalog.beat(self.id, key)
            except Exception as exc:  # a locked or vanished file must not kill the beat
                log.warning("heartbeat failed: %s", exc)
                continue
            if stop and key is not None and key == self._job and not self._cancelled.is_set():
                self._cancelled.set()
                _thread.interrupt_main()
        catalog.close()


def _summary(exc: BaseException) -> str:
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return f"out of memory ({type(exc).__name__}): {exc}"
    return f"{type(exc).__name__}: {exc}"
