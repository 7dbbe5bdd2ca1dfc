"""The job queue and the workers, in the catalog (schema 4). SQL for them lives here and
in `catalog.py` only; `Catalog` inherits these methods.

A job is queued → running → done / failed / cancelled. Workers claim the first queued job
whose dependencies are done in one `BEGIN IMMEDIATE` transaction, so two workers never
claim the same job. A running job's worker beats its heartbeat every few seconds; a job
whose heartbeat is older than the stale limit lost its process (killed, out of memory,
node lost) and is re-queued, or failed once it has used its attempts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import sqlite_utils

TERMINAL = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 3
JOB_COLUMNS = {
    "priority": int, "deps": str, "experiment_id": str, "needs": str, "worker": str,
    "device": str, "heartbeat": float, "cancel_requested": int, "log": str,
    "wall_s": float, "cpu_s": float, "peak_rss_mb": float, "peak_gpu_mb": float,
    "gpu_hours": float, "ended": float, "began": float,
}


def migration_4(db: sqlite_utils.Database) -> None:
    """The queue: priority, dependencies, worker, heartbeat, cost per job; workers."""
    for name, kind in JOB_COLUMNS.items():
        db["jobs"].add_column(name, kind)
    db.execute("UPDATE jobs SET priority = 0, deps = '[]', cancel_requested = 0")
    db["workers"].create(
        {"id": str, "pid": int, "host": str, "lane": str, "started": float,
         "heartbeat": float, "state": str, "job": str, "log": str, "experiment": str},
        pk="id")
    db["jobs"].create_index(["status", "priority"])
    db["experiments"].create_index(["created"])  # history pages newest first


class QueueMixin:
    """Queue methods of `Catalog` (which provides `self.db`)."""

    db: sqlite_utils.Database

    def _write(self, sql: str, params: Iterable = ()) -> int:
        return self.db.conn.execute(sql, list(params)).rowcount

    # -- submitting -----------------------------------------------------------

    def enqueue(self, exp_id: str, jobs, redo: set[str] = frozenset(),
                needs: str = "any") -> None:
        """Queue the plan's jobs: new ones, and those in `redo` (failed, cancelled, or done
        with a damaged artifact), in one transaction. Done jobs stay done."""
        now = time.time()
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                deps = json.dumps(_deps(job))
                conn.execute(
                    "INSERT OR IGNORE INTO jobs (key, kind, member, model_id, params, status, "
                    "attempts, created, priority, deps, experiment_id, needs, cancel_requested)"
                    " VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, 0, ?, ?, ?, 0)",
                    [job.key, job.kind, job.member, job.model_id,
                     json.dumps(job.params, sort_keys=True), _iso(now), deps, exp_id, needs])
                if job.key in redo:
                    conn.execute(
                        "UPDATE jobs SET status = 'queued', attempts = 0, cancel_requested = 0, "
                        "error = NULL, deps = ?, experiment_id = ?, needs = ? WHERE key = ? "
                        "AND status != 'running'", [deps, exp_id, needs, job.key])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- claiming and running -------------------------------------------------

    def claim_job(self, worker: str, lane: str, experiment: str | None = None,
                  affinity: str | None = None, max_running: int | None = None) -> dict | None:
        """Mark the best runnable job as running for `worker` and return it, or None.
        Best: highest priority, then the same member's model (`affinity`, a train key,
        so a worker keeps a loaded model), then oldest."""
        needs = ("any", "cuda") if lane.startswith("cuda") else ("any", "cpu")
        # a job waits for its dependencies to be done; a study only for them to end
        where = ["j.status = 'queued'", "j.needs IN (?, ?)",
                 "NOT EXISTS (SELECT 1 FROM json_each(j.deps) d JOIN jobs p ON p.key = d.value"
                 " WHERE CASE WHEN j.kind = 'study' THEN p.status IN ('queued', 'running') "
                 "ELSE p.status != 'done' END)"]
        params: list = list(needs)
        if experiment:
            where.append("j.key IN (SELECT job_key FROM experiment_jobs WHERE experiment_id = ?)")
            params.append(experiment)
        order = "j.priority DESC, (json_extract(j.deps, '$[0]') = ? OR j.key = ?) DESC, j.rowid"
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if max_running is not None and conn.execute(
                    "SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()[0] >= max_running:
                conn.execute("COMMIT")
                return None
            row = conn.execute(f"SELECT j.key FROM jobs j WHERE {' AND '.join(where)} "
                               f"ORDER BY {order} LIMIT 1", [*params, affinity, affinity]).fetchone()
            if row:
                now = time.time()
                conn.execute(
                    "UPDATE jobs SET status = 'running', worker = ?, device = ?, "
                    "attempts = attempts + 1, started = ?, began = ?, heartbeat = ?, "
                    "error = NULL, ended = NULL WHERE key = ?",
                    [worker, lane, _iso(now), now, now, row[0]])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self.job(row[0]) if row else None

    def beat(self, worker: str, key: str | None) -> bool:
        """Heartbeat of a worker and its job; True when the job was asked to stop."""
        now = time.time()
        self._write("UPDATE workers SET heartbeat = ?, job = ? WHERE id = ?", [now, key, worker])
        if key is None:
            return False
        self._write("UPDATE jobs SET heartbeat = ? WHERE key = ? AND worker = ? AND "
                    "status = 'running'", [now, key, worker])
        row = self.db.conn.execute("SELECT status, cancel_requested FROM jobs WHERE key = ?",
                                   [key]).fetchone()
        return row is None or row[0] != "running" or bool(row[1])

    def end_job(self, key: str, worker: str, status: str, error: str | None = None,
                artifact: str | None = None, cost: dict | None = None) -> bool:
        """Record how the worker's run of `key` ended; False when it no longer owned it
        (re-queued as stale meanwhile, say), in which case nothing changes."""
        now = time.time()
        cost = cost or {}
        changed = self._write(
            "UPDATE jobs SET status = ?, error = ?, artifact = coalesce(?, artifact), "
            "finished = ?, ended = ?, seconds = ?, wall_s = ?, cpu_s = ?, peak_rss_mb = ?, "
            "peak_gpu_mb = ?, gpu_hours = ?, cancel_requested = 0 "
            "WHERE key = ? AND worker = ? AND status = 'running'",
            [status, error[:4000] if error else None, artifact, _iso(now), now,
             cost.get("wall_s"), cost.get("wall_s"), cost.get("cpu_s"), cost.get("peak_rss_mb"),
             cost.get("peak_gpu_mb"), cost.get("gpu_hours"), key, worker])
        return changed == 1

    def hand_over(self, key: str, worker: str, to_worker: str) -> bool:
        """Give `worker`'s running job to `to_worker` (a Slurm job, known only once
        submitted); False when `worker` no longer held it."""
        return self._write("UPDATE jobs SET worker = ? WHERE key = ? AND worker = ? AND "
                           "status = 'running'", [to_worker, key, worker]) == 1

    def lose_job(self, key: str, worker: str, reason: str,
                 max_attempts: int = MAX_ATTEMPTS) -> str | None:
        """`worker`'s process died without ending its job (as `reap` finds by heartbeat,
        the Slurm executor by the Slurm job's state): re-queued, the attempt used up, or
        failed after `max_attempts`. The new status; None when `worker` no longer held it."""
        row = self.db.conn.execute("SELECT attempts FROM jobs WHERE key = ? AND worker = ? "
                                   "AND status = 'running'", [key, worker]).fetchone()
        if row is None:
            return None
        status = "queued" if row[0] < max_attempts else "failed"
        error = reason + ("; re-queued" if status == "queued" else
                          f"; failed after {row[0]} attempts")
        self._write("UPDATE jobs SET status = ?, error = ?, ended = ?, worker = CASE WHEN ? = "
                    "'queued' THEN NULL ELSE worker END WHERE key = ? AND worker = ? AND "
                    "status = 'running'", [status, error, time.time(), status, key, worker])
        return status

    def requeue_job(self, key: str, reason: str) -> None:
        """Back to queued (interrupted, not failed): the next run resumes it. A stop
        the user asked for does not use up one of the job's attempts."""
        self._write("UPDATE jobs SET status = 'queued', error = ?, worker = NULL, "
                    "attempts = max(attempts - 1, 0) WHERE key = ? AND status != 'done'",
                    [reason, key])

    def reap(self, stale_s: float, max_attempts: int = MAX_ATTEMPTS) -> list[dict]:
        """Re-queue (or fail, after `max_attempts`) running jobs with no heartbeat for
        `stale_s` seconds; fail queued jobs whose dependency failed or was cancelled.
        Returns the stale jobs as {key, worker, status}. Safe to call from anywhere."""
        limit = time.time() - stale_s
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            stale = conn.execute("SELECT key, worker, attempts FROM jobs WHERE status = 'running' "
                                 "AND heartbeat < ?", [limit]).fetchall()
            why = f"no heartbeat for {stale_s:.0f} s: its process died (killed, out of memory, node lost)"
            reaped = []
            for key, worker, attempts in stale:
                status = "queued" if attempts < max_attempts else "failed"
                error = why + ("; re-queued" if status == "queued" else
                               f"; failed after {attempts} attempts")
                conn.execute("UPDATE jobs SET status = ?, error = ?, ended = ? WHERE key = ?",
                             [status, error, time.time(), key])
                reaped.append({"key": key, "worker": worker, "status": status})
            conn.execute(
                "UPDATE jobs AS q SET status = 'failed', error = 'a job it needs failed or was "
                "cancelled' WHERE q.status = 'queued' AND q.kind != 'study' AND EXISTS "
                "(SELECT 1 FROM json_each(q.deps) d JOIN jobs p ON p.key = d.value "
                "WHERE p.status IN ('failed', 'cancelled'))")
            conn.execute("UPDATE workers SET state = 'gone' WHERE state != 'gone' AND "
                         "heartbeat < ?", [limit])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return reaped

    # -- control --------------------------------------------------------------

    def cancel_job(self, key: str, reason: str = "cancelled by the user") -> str:
        """Queued: cancelled now. Running: flagged; its worker stops it. The new state."""
        if self._write("UPDATE jobs SET status = 'cancelled', error = ? WHERE key = ? AND "
                       "status = 'queued'", [reason, key]):
            return "cancelled"
        if self._write("UPDATE jobs SET cancel_requested = 1, error = ? WHERE key = ? AND "
                       "status = 'running'", [reason, key]):
            return "cancelling"
        return self.job(key)["status"]

    def retry_job(self, key: str) -> bool:
        return self._write("UPDATE jobs SET status = 'queued', attempts = 0, cancel_requested "
                           "= 0, error = NULL WHERE key = ? AND status IN ('failed', "
                           "'cancelled')", [key]) == 1

    def retry_failed(self, exp_id: str) -> int:
        """Re-queue the experiment's failed jobs (and those that failed for them)."""
        return self._write(
            "UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, cancel_requested = 0 "
            "WHERE status = 'failed' AND (experiment_id = ? OR key IN (SELECT job_key FROM "
            "experiment_jobs WHERE experiment_id = ?))", [exp_id, exp_id])

    def run_now(self, key: str) -> bool:
        """Put the job first in the queue (re-queued if it failed or was cancelled)."""
        top = self.db.conn.execute("SELECT coalesce(max(priority), 0) FROM jobs").fetchone()[0]
        return self._write(
            "UPDATE jobs SET priority = ?, status = CASE WHEN status IN ('failed', 'cancelled') "
            "THEN 'queued' ELSE status END, attempts = CASE WHEN status IN ('failed', "
            "'cancelled') THEN 0 ELSE attempts END WHERE key = ? AND status != 'done'",
            [top + 1, key]) == 1

    def find_job(self, ref: str) -> dict | None:
        """A job by key or unique key prefix."""
        rows = self.db.conn.execute("SELECT key FROM jobs WHERE key LIKE ? LIMIT 2",
                                    [f"{ref}%"]).fetchall()
        return self.job(rows[0][0]) if len(rows) == 1 else None

    def jobs_page(self, experiment: str | None = None, states: Iterable[str] = (),
                  limit: int = 200, offset: int = 0) -> list[dict]:
        """Jobs newest-first page, with the latest epoch (progress) of each."""
        where, params = [], []
        if experiment:
            where.append("j.key IN (SELECT job_key FROM experiment_jobs WHERE experiment_id = ?)")
            params.append(experiment)
        states = list(states)
        if states:
            where.append(f"j.status IN ({', '.join('?' * len(states))})")
            params += states
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [dict(r) for r in self.db.query(
            "SELECT j.key, j.kind, j.member, j.model_id, j.status, j.attempts, j.worker, "
            "j.device, j.began, j.ended, j.heartbeat, j.error, j.priority, j.wall_s, j.cpu_s, "
            "j.peak_rss_mb, j.peak_gpu_mb, j.gpu_hours, j.log, "
            "json_extract(j.params, '$.val_set') AS val_set, "
            "json_extract(j.params, '$.method') AS method, "
            "json_extract(j.params, '$.epochs') AS epochs, "
            "(SELECT max(epoch) FROM epochs e WHERE e.job_key = j.key) AS epoch "
            f"FROM jobs j {clause} ORDER BY j.rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset])]

    def set_job_log(self, key: str, path: str) -> None:
        self._write("UPDATE jobs SET log = ? WHERE key = ?", [path, key])

    # -- workers --------------------------------------------------------------

    def register_worker(self, worker: str, pid: int, host: str, lane: str, log: str,
                        experiment: str | None) -> None:
        now = time.time()
        self.db["workers"].upsert(
            {"id": worker, "pid": pid, "host": host, "lane": lane, "started": now,
             "heartbeat": now, "state": "running", "job": None, "log": log,
             "experiment": experiment}, pk="id")

    def worker_state(self, worker: str, state: str) -> None:
        self._write("UPDATE workers SET state = ?, job = NULL, heartbeat = ? WHERE id = ?",
                    [state, time.time(), worker])

    def workers(self, alive_only: bool = False) -> list[dict]:
        clause = "WHERE state != 'gone' AND state != 'stopped'" if alive_only else ""
        return [dict(r) for r in self.db.query(f"SELECT * FROM workers {clause} ORDER BY started")]

    def job_counts(self) -> dict[str, int]:
        return dict(self.db.conn.execute(
            "SELECT status, count(*) FROM jobs GROUP BY status").fetchall())

    def experiment_progress(self, exp_id: str) -> dict[str, int]:
        """{status: count} of an experiment's jobs."""
        rows = self.db.conn.execute(
            "SELECT j.status, count(*) FROM jobs j JOIN experiment_jobs e ON e.job_key = j.key "
            "WHERE e.experiment_id = ? GROUP BY j.status", [exp_id]).fetchall()
        return dict(rows)


def _deps(job) -> list[str]:
    deps = [job.depends] if job.depends else []
    return deps + list(job.params.get("target_from", [])) + list(job.params.get("after", []))


def _iso(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


class FollowMixin:
    """Reads for following an experiment's progress by polling."""

    db: sqlite_utils.Database

    def epochs_after(self, exp_id: str, after_rowid: int) -> list[dict]:
        return [dict(r) for r in self.db.query(
            "SELECT e.rowid AS rowid, e.*, j.member, j.kind, json_extract(j.params, '$.epochs') AS "
            "epochs, json_extract(j.params, '$.stage') AS stage, "
            "json_extract(j.params, '$.stages') AS stages FROM epochs e JOIN experiment_jobs x ON x.job_key = e.job_key "
            "JOIN jobs j ON j.key = e.job_key WHERE x.experiment_id = ? AND e.rowid > ? "
            "ORDER BY e.rowid", [exp_id, after_rowid])]

    def last_epoch_rowid(self) -> int:
        return self.db.conn.execute("SELECT coalesce(max(rowid), 0) FROM epochs").fetchone()[0]

    def job_states(self, exp_id: str) -> dict[str, tuple[str, str | None]]:
        return {r[0]: (r[1], r[2]) for r in self.db.conn.execute(
            "SELECT j.key, j.status, j.error FROM jobs j JOIN experiment_jobs x ON "
            "x.job_key = j.key WHERE x.experiment_id = ?", [exp_id]).fetchall()}
