"""`ensui jobs`, `ensui workers`, `ensui status` and `headless --detach` from the command
line, on a catalog whose queue is filled directly (no training) and on one real run."""

import json
import subprocess
import sys
import time

import pytest

from conftest import write
from ensui.catalog import Catalog
from ensui.engine.plan import Job


@pytest.fixture
def queue(home):
    catalog = Catalog(home / "catalog.db")
    jobs = [Job(f"{name}0000000000000000", "train", name, "SqueezeNet", {"epochs": 3}, None)
            for name in ("alpha", "bravo", "charlie", "delta")]
    catalog.record_experiment("exp1", "study", "study.yaml", "name: study\n",
                              [(j.key, j.member) for j in jobs])
    catalog.enqueue("exp1", jobs)
    running = catalog.claim_job("w1", "cpu")  # alpha
    catalog.record_epoch(running["key"], 1, loss=2.0, train_acc=0.1, val_acc=0.1, lr=0.1,
                         seconds=1.0)
    failed = catalog.claim_job("w1", "cpu")  # bravo
    catalog.end_job(failed["key"], "w1", "failed", "RuntimeError: boom",
                    cost={"wall_s": 3.0, "cpu_s": 2.5, "peak_rss_mb": 512.0})
    log = home / "logs" / f"{running['key']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    catalog.set_job_log(running["key"], str(log))
    return catalog


def test_jobs_lists_state_progress_and_cost(cli, queue):
    code, out, _ = cli("jobs", "--json")
    rows = {r["member"]: r for r in json.loads(out)}
    assert code == 0 and rows["alpha"]["status"] == "running" and rows["alpha"]["epoch"] == 1
    assert rows["bravo"]["error"] == "RuntimeError: boom" and rows["bravo"]["cpu_s"] == 2.5
    code, out, _ = cli("jobs", "--state", "failed")
    assert code == 0 and "bravo" in out and "alpha" not in out
    code, out, _ = cli("jobs", "--experiment", "study")
    assert code == 0 and "1/3" in out  # epoch progress of the running training


def test_logs_cancel_retry_and_run_now(cli, queue):
    code, out, _ = cli("jobs", "logs", "alpha", "-n", "3")
    assert code == 0 and out.split() == ["line", "97", "line", "98", "line", "99"]
    code, _, err = cli("jobs", "cancel", "charlie", "--reason", "not needed")
    assert code == 0 and "cancelled" in err
    assert queue.job("charlie0000000000000000")["error"] == "not needed"
    code, _, err = cli("jobs", "retry", "--failed", "study")
    assert code == 0 and "1 failed job(s) re-queued" in err
    assert queue.job("bravo0000000000000000")["status"] == "queued"
    code, _, _ = cli("jobs", "run-now", "delta")
    assert code == 0 and queue.claim_job("w2", "cpu")["member"] == "delta"
    code, _, err = cli("jobs", "retry", "alpha")
    assert code == 2 and "only failed or cancelled jobs retry" in err
    code, _, err = cli("jobs", "logs", "zulu")
    assert code == 2 and "no job matches 'zulu'" in err and "Traceback" not in err


def test_status_once_and_workers(cli, queue):
    queue.register_worker("w1", 4242, "host", "cpu", "/tmp/w1.log", None)
    code, out, _ = cli("status", "--once", "--json")
    data = json.loads(out)
    assert code == 0 and data["jobs"] == {"queued": 2, "running": 1, "failed": 1}
    assert [w["id"] for w in data["workers"]] == ["w1"]
    code, out, _ = cli("status", "--once")
    assert code == 0 and "queued 2" in out and "running 1" in out
    code, out, _ = cli("workers", "status")
    assert code == 0 and "4242" in out


def test_no_catalog_is_a_clear_error(cli):
    code, _, err = cli("jobs")
    assert code == 2 and "no catalog" in err


def test_detach_returns_at_once_and_a_rerun_reattaches(tmp_path, home):
    spec = write(tmp_path, "name: detached\ntraining: {epochs: 1, batch_size: 64}\n"
                           "validation: {sets: [clean], limit: 40}\nanalysis: {enabled: false}\n"
                           "members: [SqueezeNet]\n")
    args = [sys.executable, "-m", "ensui", "--home", str(home), "headless", "--spec", str(spec)]
    began = time.time()
    detached = subprocess.run([*args, "--detach"], capture_output=True, text=True, timeout=120)
    assert detached.returncode == 0 and "worker(s) started" in detached.stderr
    assert time.time() - began < 30  # did not wait for the training
    again = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    member, = json.loads(again.stdout)["members"]
    assert member["status"] == "done" and member["accuracy"]["clean"] is not None
    catalog = Catalog(home / "catalog.db")
    assert all(j["attempts"] == 1 for j in catalog.jobs_page())  # nothing ran twice
    deadline = time.time() + 30
    while catalog.workers(alive_only=True) and time.time() < deadline:
        time.sleep(0.5)  # the detached worker exits once the queue is empty
    assert not catalog.workers(alive_only=True)
