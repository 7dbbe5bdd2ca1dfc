"""Progress of jobs that run on cluster nodes, as append-only event files, and the folding
of those files into the catalog.

A Slurm job must not write to the SQLite catalog: SQLite's locking is not safe over the
network filesystems cluster nodes share. So the job appends one JSON line per event to
`<home>/runs/<job key>/events.jsonl` (`EventRecorder`, driven by `run_remote`), and the
one process that submitted it reads the new lines and writes the catalog (`Ingester`).

Events: started, epoch, result, heartbeat, done, failed. Each names the `worker` that
ran it, `slurm-<submitit job id>`, the pseudo-worker that holds the catalog job; a job
ends only through an event of the worker holding it, so the file's lines from earlier
attempts are harmless to read again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ensui.engine.runtime import cost
from ensui.engine.runtime.work import JobWork
from ensui.engine.spec import parse_spec
from ensui.home import Home

EVENTS = "events.jsonl"
HEARTBEAT_S = 30.0
log = logging.getLogger("ensui.job")

if TYPE_CHECKING:  # only the submitting side holds a catalog
    from ensui.catalog import Catalog


def events_path(home: Home, key: str) -> Path:
    return home.runs / key / EVENTS


class EventRecorder:
    """The Recorder of a job on a cluster node: appends events to its run folder's file."""

    def __init__(self, run_dir: Path, worker: str | None = None):
        self.path = Path(run_dir) / EVENTS
        self.worker = worker
        self._lock = threading.Lock()  # the heartbeat thread writes too
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._end_partial_line()

    def _end_partial_line(self) -> None:
        """An earlier attempt killed mid-write left a line without its newline; end it,
        so our first event is not glued to it (the reader skips the broken line)."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._append(b"\n")

    def _append(self, data: bytes) -> None:
        with self._lock, open(self.path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the job can end

    def write(self, type_: str, **fields) -> None:
        event = {"type": type_, "worker": self.worker, "time": time.time(), **fields}
        self._append((json.dumps(event) + "\n").encode())

    # -- the Recorder protocol ---------------------------------------------------

    def epoch(self, key, m, epochs) -> None:
        self.write("epoch", epoch=m.epoch, epochs=epochs, loss=m.loss, train_acc=m.train_acc,
                   val_acc=m.val_acc, lr=m.lr, seconds=m.seconds, extra=m.extra)

    def result(self, key, train_key, model_id, val_set, accuracy, nll, n) -> None:
        self.write("result", train_key=train_key, model_id=model_id, val_set=val_set,
                   accuracy=accuracy, nll=nll, n=n)

    def front(self, key, rows) -> None:
        self.write("front", rows=rows)


def read_events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The complete events after byte `offset`, and the offset after the last of them.
    A trailing line without its newline is still being written: left for the next read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    complete = data[:data.rfind(b"\n") + 1]
    events = []
    for line in complete.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:  # a line cut short by a killed writer
            log.warning("%s: skipped a broken event line", path)
    return events, offset + len(complete)


# -- in the Slurm job ----------------------------------------------------------------


def run_remote(home_root: str, spec_text: str, spec_path: str, key: str, kind: str,
               params: dict, member: str, model_id: str,
               train_params: dict[str, dict]) -> str:
    """Run one job on a cluster node; progress goes to its events file only (this never
    opens the catalog). The artifact's path; an error is recorded, then raised again."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    home = Home(Path(home_root))
    spec = parse_spec(spec_text, Path(spec_path))
    threads = job_threads(spec.executor.cluster, spec.executor.array_parallelism, os.environ)
    if threads:
        torch.set_num_threads(threads)
    device = _device(spec.training.device)
    recorder = EventRecorder(home.runs / key, _worker_id())
    recorder.write("started", host=socket.gethostname(), pid=os.getpid())
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(recorder, stop), name="heartbeat", daemon=True)
    beat.start()
    meter = cost.Meter(device)
    try:
        work = JobWork(spec, home, recorder, device, train_params.__getitem__)
        artifact = work.run(key, kind, params, member, model_id)
    except Exception as exc:  # recorded; an interrupt (cancel, time limit) is not a failure
        log.error("failed:\n%s", traceback.format_exc())
        recorder.write("failed", error=f"{type(exc).__name__}: {exc}", cost=meter.stop())
        raise
    finally:
        stop.set()
    recorder.write("done", artifact=artifact, cost=meter.stop())
    return artifact


def job_threads(cluster: str, parallel: int, env) -> int | None:
    """Threads for one job's torch ops: the CPUs Slurm gave it, or this machine's share
    when local jobs run side by side (each would take every core: with two jobs on two
    cores, a 1 s epoch took 20 s). None: torch's own choice."""
    if env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(env["SLURM_CPUS_PER_TASK"])
    if cluster == "local":
        return max(1, (os.cpu_count() or 1) // parallel)
    return None


def _device(wanted: str) -> torch.device:
    if wanted == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if wanted == "cuda":
        raise RuntimeError("training.device is cuda, but this job sees no GPU "
                           "(executor.gpus_per_job: 0?)")
    return torch.device("cpu")


def _worker_id() -> str | None:
    """`slurm-<submitit job id>`: the pseudo-worker the submitting process gave the job."""
    try:
        import submitit

        return f"slurm-{submitit.JobEnvironment().job_id}"
    except Exception:  # not inside a submitit job (a direct call)
        return None


def _beat(recorder: EventRecorder, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            recorder.write("heartbeat")
        except OSError as exc:  # a filesystem hiccup must not kill the job
            log.warning("heartbeat failed: %s", exc)


# -- in the submitting process ---------------------------------------------------------


class Ingester:
    """Folds jobs' new events into the catalog. Keeps how far it read each file; a fresh
    one reads from the start, which is harmless: epochs and results are upserts, and only
    the worker holding a job can end it."""

    def __init__(self, catalog: Catalog, home: Home):
        self.catalog, self.home = catalog, home
        self._offsets: dict[str, int] = {}

    def fold(self, keys: Iterable[str]) -> dict[str, str | None]:
        """{key: the status a done/failed event just ended it with, else None}."""
        return {key: self._fold_one(key) for key in keys}

    def _fold_one(self, key: str) -> str | None:
        events, self._offsets[key] = read_events(events_path(self.home, key),
                                                 self._offsets.get(key, 0))
        ended = None
        for event in events:
            ended = self._apply(key, event) or ended
        return ended

    def _apply(self, key: str, e: dict) -> str | None:
        kind, worker = e.get("type"), e.get("worker")
        if kind == "epoch":
            self.catalog.record_epoch(key, e["epoch"], extra=e.get("extra"), loss=e["loss"],
                                      train_acc=e["train_acc"], val_acc=e["val_acc"],
                                      lr=e["lr"], seconds=e["seconds"])
        elif kind == "result":
            self.catalog.record_result(key, e["train_key"], e["model_id"], e["val_set"],
                                       e["accuracy"], e["nll"], e["n"])
        elif kind == "front":
            self.catalog.record_front(key, e["rows"])
        elif kind in ("started", "heartbeat") and worker:
            self.catalog.beat(worker, key)
        elif kind in ("done", "failed") and worker and self.catalog.end_job(
                key, worker, kind, e.get("error"), e.get("artifact"), e.get("cost")):
            return kind
        return None
