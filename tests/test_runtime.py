"""The job runtime on CPU: the queue's rules, workers killed mid-epoch, concurrent
writers, failing / out-of-memory / silent jobs, and cancelling."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import write
from ensui.catalog import Catalog
from ensui.catalog_queue import MAX_ATTEMPTS
from ensui.engine.plan import Job, make_plan
from ensui.engine.runtime import control
from ensui.engine.runtime.work import JobWork
from ensui.engine.runtime.worker import Worker
from ensui.engine.spec import load_spec
from ensui.home import Home

TRAIN_SPEC = """\
name: runtime
training: {epochs: 4, batch_size: 64}
validation: {sets: [clean], limit: 60}
analysis: {enabled: false}
members: [SqueezeNet]
"""


def _queue(home: Home, spec_path: Path):
    spec = load_spec(spec_path)
    catalog = Catalog(home.catalog)
    plan = make_plan(spec, catalog, spec_path)
    catalog.record_experiment(plan.experiment_id, spec.name, str(spec_path),
                              spec_path.read_text(), [(j.key, j.member) for j in plan.jobs])
    catalog.enqueue(plan.experiment_id, plan.jobs)
    return plan, catalog


def _fake(key: str, depends: str | None = None, kind: str = "evaluate") -> Job:
    return Job(key, kind, "m", "SqueezeNet", {"n": key}, depends)


def _worker_process(home: Home, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ensui", "--home", str(home.root), "worker",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


# -- the queue ----------------------------------------------------------------------------

def test_claims_follow_dependencies_priority_and_never_repeat(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.enqueue("exp", [_fake("t1", kind="train"), _fake("e1", "t1"), _fake("t2", kind="train")])
    first = catalog.claim_job("w1", "cpu")
    second = catalog.claim_job("w2", "cpu")
    assert {first["key"], second["key"]} == {"t1", "t2"}  # e1 waits for t1
    assert catalog.claim_job("w3", "cpu") is None
    assert catalog.end_job("t1", "w1", "done", artifact="x")
    assert not catalog.end_job("t2", "w1", "done")  # w1 does not own t2
    assert catalog.claim_job("w1", "cpu")["key"] == "e1"
    catalog.enqueue("exp", [_fake("a", kind="train"), _fake("b", kind="train")])
    assert catalog.run_now("b")
    assert catalog.claim_job("w1", "cpu")["key"] == "b"
    assert catalog.claim_job("w1", "cuda:0", max_running=2) is None  # cap reached


def test_cancel_retry_and_failed_dependencies(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.enqueue("exp", [_fake("t", kind="train"), _fake("e", "t")])
    assert catalog.cancel_job("t", "not needed") == "cancelled"
    catalog.reap(stale_s=60)
    assert catalog.job("e")["status"] == "failed"
    assert "failed or was cancelled" in catalog.job("e")["error"]
    assert catalog.retry_job("t") and catalog.job("t")["status"] == "queued"
    assert catalog.retry_failed("exp") == 1 and catalog.job("e")["status"] == "queued"
    assert catalog.claim_job("w", "cpu")["key"] == "t"
    assert catalog.cancel_job("t") == "cancelling"  # running: its worker stops it


def test_a_job_that_never_heartbeats_is_requeued_then_failed(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.enqueue("exp", [_fake("silent", kind="train")])
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert catalog.claim_job("ghost", "cpu")["attempts"] == attempt
        catalog.db.conn.execute("UPDATE jobs SET heartbeat = heartbeat - 100")
        reaped = catalog.reap(stale_s=30)
        assert [r["key"] for r in reaped] == ["silent"]
    row = catalog.job("silent")
    assert row["status"] == "failed"
    assert "no heartbeat for 30 s" in row["error"] and f"after {MAX_ATTEMPTS} attempts" in row["error"]


# -- workers ------------------------------------------------------------------------------

def _epochs(catalog: Catalog, key: str) -> list[tuple]:
    return catalog.db.conn.execute(
        "SELECT epoch, loss, train_acc, val_acc, lr FROM epochs WHERE job_key = ? ORDER BY epoch",
        [key]).fetchall()


@pytest.fixture
def one_thread():
    """Both runs on one thread, as the worker process is given; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_worker_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, one_thread):
    from ensui.engine import artifacts

    spec_path = write(tmp_path, TRAIN_SPEC)
    straight = Home(tmp_path / "straight")
    plan, catalog = _queue(straight, spec_path)
    Worker(straight, experiment=plan.experiment_id, exit_when_idle=True,
           poll_s=0.2).run(handle_sigterm=False)
    train = plan.of_kind("train")[0].key

    killed = Home(tmp_path / "killed")
    plan, other = _queue(killed, spec_path)
    proc = _worker_process(killed, "--experiment", plan.experiment_id, "--exit-when-idle")
    deadline = time.time() + 120
    while time.time() < deadline and len(_epochs(other, train)) < 2:
        time.sleep(0.1)
    time.sleep(0.5)  # into the next epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert other.job(train)["status"] == "running"  # nobody knows yet
    Worker(killed, experiment=plan.experiment_id, exit_when_idle=True, poll_s=0.2,
           stale_s=3).run(handle_sigterm=False)
    row = other.job(train)
    assert row["status"] == "done" and row["attempts"] == 2
    a = artifacts.load_state(straight.runs / train / "model.pt")
    b = artifacts.load_state(killed.runs / train / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _epochs(other, train) == _epochs(catalog, train)  # every epoch's metrics


def test_failing_oom_and_silent_jobs_end_clearly_and_the_others_finish(tmp_path, monkeypatch):
    spec_path = write(tmp_path, TRAIN_SPEC.replace("epochs: 4", "epochs: 1").replace(
        "members: [SqueezeNet]", textwrap.dedent("""\
        members:
          - {model: SqueezeNet, name: raises}
          - {model: SqueezeNet, name: oom, seed: 1}
          - {model: SqueezeNet, name: silent, seed: 2}
          - {model: SqueezeNet, name: fine, seed: 3}""")))
    home = Home(tmp_path / "home")
    plan, catalog = _queue(home, spec_path)
    real = JobWork.run

    def faulty(self, key, kind, params, member, model_id):
        if kind == "train" and member == "raises":
            raise RuntimeError("boom")
        if kind == "train" and member == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, key, kind, params, member, model_id)

    monkeypatch.setattr(JobWork, "run", faulty)
    trains = {j.member: j.key for j in plan.of_kind("train")}
    assert catalog.claim_job("ghost", "cpu", affinity=trains["silent"])["key"] == trains["silent"]
    catalog.db.conn.execute("UPDATE jobs SET heartbeat = heartbeat - 100 WHERE key = ?",
                            [trains["silent"]])  # its process died without a word
    Worker(home, experiment=plan.experiment_id, exit_when_idle=True, poll_s=0.2,
           stale_s=5).run(handle_sigterm=False)
    states = {j.member + "/" + j.kind: catalog.job(j.key) for j in plan.jobs}
    assert states["raises/train"]["status"] == "failed"
    assert states["raises/train"]["error"] == "RuntimeError: boom"
    assert states["raises/evaluate"]["status"] == "failed"  # never ran: its model failed
    assert states["oom/train"]["status"] == "failed"
    assert states["oom/train"]["error"].startswith("out of memory (OutOfMemoryError)")
    assert states["silent/train"]["status"] == "done" and states["silent/train"]["attempts"] == 2
    assert all(states[f"{m}/{k}"]["status"] == "done"
               for m in ("fine", "silent") for k in ("train", "evaluate"))
    assert states["fine/train"]["wall_s"] > 0 and states["fine/train"]["peak_rss_mb"] > 50
    log = Path(states["raises/train"]["log"]).read_text()
    assert "RuntimeError: boom" in log and "Traceback" in log  # the details are in the log


def test_cancel_stops_a_running_job_and_the_worker_goes_on(tmp_path):
    spec_path = write(tmp_path, TRAIN_SPEC.replace("epochs: 4", "epochs: 40").replace(
        "members: [SqueezeNet]", "members: [SqueezeNet, {model: SqueezeNet, name: next, epochs: 1}]"))
    home = Home(tmp_path / "home")
    plan, catalog = _queue(home, spec_path)
    first = plan.of_kind("train")[0].key
    proc = _worker_process(home, "--experiment", plan.experiment_id, "--exit-when-idle")
    deadline = time.time() + 120
    while time.time() < deadline and not _epochs(catalog, first):
        time.sleep(0.1)
    state = control.cancel(catalog, catalog.job(first), "wrong learning rate", grace_s=20)
    assert state == "cancelled"
    assert catalog.job(first)["error"] == "wrong learning rate"
    assert proc.wait(timeout=120) == 0  # not killed: it went on with the other member
    done = {j.member: catalog.job(j.key)["status"] for j in plan.of_kind("evaluate")}
    assert done == {"SqueezeNet": "failed", "next": "done"}


WRITER = """
import json, sys, time
from ensui.catalog import Catalog
catalog, name, until = Catalog(sys.argv[1]), sys.argv[2], float(sys.argv[3])
claimed = []
while time.time() < until:
    job = catalog.claim_job(name, "cpu")
    if job is None:
        break
    for epoch in range(1, 4):
        catalog.record_epoch(job["key"], epoch, loss=1.0 / epoch, train_acc=0.5, val_acc=0.5,
                             lr=0.1, seconds=0.01)
        catalog.beat(name, job["key"])
    assert catalog.end_job(job["key"], name, "done", artifact="x")
    claimed.append(job["key"])
print(json.dumps(claimed))
"""

READER = """
import sys, time
from ensui.catalog import Catalog
catalog, until, reads = Catalog(sys.argv[1]), float(sys.argv[2]), 0
while time.time() < until:
    catalog.job_counts(); catalog.jobs_page(limit=50); catalog.workers()
    reads += 1
print(reads)
"""


def test_four_writers_and_a_reader_for_ten_seconds(tmp_path):
    """Every claim, epoch and end recorded; no 'database is locked'; nothing lost."""
    db = tmp_path / "catalog.db"
    catalog = Catalog(db)
    catalog.enqueue("exp", [_fake(f"job{i:05d}", kind="train") for i in range(20000)])
    until = time.time() + 10
    cmd = [sys.executable, "-c"]
    writers = [subprocess.Popen([*cmd, WRITER, str(db), f"w{i}", str(until)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(4)]
    reader = subprocess.Popen([*cmd, READER, str(db), str(until)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    claimed = []
    for proc in writers:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and "locked" not in err, err
        claimed += json.loads(out)
    out, err = reader.communicate(timeout=180)
    assert reader.returncode == 0 and int(out) > 30, err
    assert len(claimed) == len(set(claimed)) > 100  # nobody ran a job twice
    counts = catalog.job_counts()
    assert counts["done"] == len(claimed) and counts["queued"] == 20000 - len(claimed)
    epochs = catalog.db.conn.execute("SELECT count(*) FROM epochs").fetchone()[0]
    assert epochs == 3 * len(claimed)
