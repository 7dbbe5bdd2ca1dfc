"""Controlling jobs from outside their worker: cancel (with escalation) and a snapshot
of the queue for `ensui status` and the app."""

from __future__ import annotations

import signal
import time

from ensui.catalog import Catalog
from ensui.engine.runtime import pool

CANCEL_GRACE_S = 10.0


def cancel(catalog: Catalog, job: dict, reason: str, grace_s: float = CANCEL_GRACE_S) -> str:
    """Cancel a job and return what happened. A running job is flagged; its worker's
    heartbeat sees the flag within seconds and stops the job. If the job is still running
    after half the grace period, its worker's process group gets SIGTERM, and SIGKILL
    when the whole grace period has passed."""
    state = catalog.cancel_job(job["key"], reason)
    if state != "cancelling":
        return state
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _wait_not_running(catalog, job["key"], grace_s / 2):
            return catalog.job(job["key"])["status"]
        worker = next((w for w in catalog.workers() if w["id"] == job.get("worker")), None)
        if worker:
            pool.signal_worker(worker["pid"], sig)
    if not _wait_not_running(catalog, job["key"], 2.0):
        catalog.end_job(job["key"], job["worker"], "cancelled",
                        f"{reason}; its worker did not stop and was killed")
    return catalog.job(job["key"])["status"]


def _wait_not_running(catalog: Catalog, key: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if catalog.job(key)["status"] != "running":
            return True
        time.sleep(0.25)
    return catalog.job(key)["status"] != "running"


def serving(catalog: Catalog, exp_id: str) -> bool:
    """Whether a live worker (fresh heartbeat) takes this experiment's jobs."""
    from ensui.engine.runtime.worker import STALE_S

    fresh = time.time() - STALE_S
    return any((w["heartbeat"] or 0) > fresh and w["experiment"] in (None, exp_id)
               for w in catalog.workers(alive_only=True))


def snapshot(catalog: Catalog) -> dict:
    """Jobs per state, live workers and the running jobs, as plain data."""
    return {"jobs": catalog.job_counts(), "workers": catalog.workers(alive_only=True),
            "running": catalog.jobs_page(states=("running",), limit=100)}
