"""The Slurm executor, with submitit's LocalExecutor standing in for Slurm: jobs run as
submitit jobs, report through event files, and the headless process folds those into the
catalog. Unit tests of the event files and their folding; jobs that die or are
interrupted; a job on a node never opening the catalog."""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import write
from ensui.catalog import Catalog
from ensui.catalog_queue import MAX_ATTEMPTS
from ensui.engine.plan import Job, make_plan
from ensui.engine.runtime import slurm
from ensui.engine.runtime.events import (EventRecorder, Ingester, job_threads, read_events,
                                         run_remote)
from ensui.engine.spec import load_spec
from ensui.engine.train.supervised import EpochMetrics
from ensui.errors import EnsuiError
from ensui.home import Home

SPEC = """\
name: slurm-smoke
training: {epochs: 1, batch_size: 64}
validation: {sets: [clean], limit: 60}
analysis: {enabled: false}
executor: {kind: slurm, cluster: local, gpus_per_job: 0}
members:
  - SqueezeNet
  - deit_tiny_p16_224
"""


def _headless(home: Path, spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ensui", "--home", str(home), "headless",
                           "--spec", str(spec), "--json"], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real run through the local submitit executor, shared by the tests below."""
    root = tmp_path_factory.mktemp("slurm")
    spec = write(root, SPEC)
    home = root / "home"
    return spec, home, _headless(home, spec)


def _rows(home: Path, sql: str, params=()) -> list:
    conn = sqlite3.connect(home / "catalog.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- end to end -----------------------------------------------------------------------


def test_every_job_runs_as_a_submitit_job(finished):
    _, home, proc = finished
    assert proc.returncode == 0, proc.stderr
    members = {m["member"]: m for m in json.loads(proc.stdout)["members"]}
    assert set(members) == {"SqueezeNet", "deit_tiny_p16_224"}
    assert all(m["status"] == "done" and "clean" in m["accuracy"] for m in members.values())
    assert "epoch 1/1" in proc.stderr  # progress folded in while the jobs ran
    jobs = _rows(home, "SELECT kind, status, worker, log FROM jobs")
    assert sorted((k, s) for k, s, _, _ in jobs) == [("evaluate", "done")] * 2 + [
        ("train", "done")] * 2
    for _, _, worker, log in jobs:
        job_id = re.fullmatch(r"slurm-(\d+)", worker).group(1)
        assert log == str(home / "slurm" / f"{job_id}_0_log.err") and Path(log).is_file()
    assert _rows(home, "SELECT count(*) FROM epochs") == [(2,)]
    assert _rows(home, "SELECT count(*), sum(n) FROM results") == [(2, 120)]


def test_catalog_rows_are_what_the_events_say(finished):
    _, home, _ = finished
    jobs = _rows(home, "SELECT key, worker, artifact, wall_s FROM jobs")
    for key, worker, artifact, wall_s in jobs:
        events, _ = read_events(home / "runs" / key / "events.jsonl")
        assert events[0]["type"] == "started" and events[-1]["type"] == "done"
        assert {e["worker"] for e in events} == {worker}
        assert (events[-1]["artifact"], events[-1]["cost"]["wall_s"]) == (artifact, wall_s)
        epochs = [(e["epoch"], e["loss"], e["train_acc"], e["val_acc"], e["lr"], e["seconds"])
                  for e in events if e["type"] == "epoch"]
        assert epochs == _rows(home, "SELECT epoch, loss, train_acc, val_acc, lr, seconds FROM "
                                     "epochs WHERE job_key = ? ORDER BY epoch", [key])
        results = [(e["train_key"], e["model_id"], e["val_set"], e["accuracy"], e["nll"], e["n"])
                   for e in events if e["type"] == "result"]
        assert results == _rows(home, "SELECT train_key, model_id, val_set, accuracy, nll, n "
                                      "FROM results WHERE job_key = ?", [key])


def test_second_run_is_all_cached(finished, cli):
    spec, home, _ = finished
    submitted = len(list((home / "slurm").glob("*_submitted.pkl")))
    code, _, err = cli("--home", home, "headless", "--spec", spec, "--json")
    assert code == 0, err
    assert err.count(": cached") == 4 and "epoch" not in err
    assert len(list((home / "slurm").glob("*_submitted.pkl"))) == submitted  # none submitted


def test_run_remote_never_opens_the_catalog(finished, tmp_path, monkeypatch):
    """A job on a node, in this process, with SQLite out of reach: it still runs."""
    spec, home, _ = finished
    (key, params, member, model_id), = _rows(
        home, "SELECT key, params, member, model_id FROM jobs WHERE kind = 'evaluate' "
              "AND member = 'SqueezeNet'")
    params = json.loads(params)
    (train_params,) = _rows(home, "SELECT params FROM jobs WHERE key = ?", [params["train_key"]])[0]
    node = tmp_path / "node-home"
    shutil.copytree(home / "runs" / params["train_key"], node / "runs" / params["train_key"])

    def no_sqlite(*args, **kwargs):
        raise AssertionError("a job on a node opened SQLite")

    monkeypatch.setattr(sqlite3, "connect", no_sqlite)
    threads = []  # what the job would take of this machine; this process keeps its own
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    artifact = run_remote(str(node), spec.read_text(), str(spec), key, "evaluate", params,
                          member, model_id, {params["train_key"]: json.loads(train_params)})
    assert artifact == str(node / "outputs" / key)
    events, _ = read_events(node / "runs" / key / "events.jsonl")
    assert [e["type"] for e in events] == ["started", "result", "done"]
    assert events[1]["n"] == 60 and events[2]["cost"]["wall_s"] > 0
    with pytest.raises(KeyError):
        run_remote(str(node), spec.read_text(), str(spec), "broken", "nonsense", {}, member,
                   model_id, {})
    events, _ = read_events(node / "runs" / "broken" / "events.jsonl")
    assert events[-1]["type"] == "failed" and events[-1]["error"] == "KeyError: 'nonsense'"
    assert not (node / "catalog.db").exists()
    assert threads == [max(1, os.cpu_count() // 16)] * 2  # 16: array_parallelism's default


def test_a_job_takes_its_slurm_cpus_or_its_share_of_this_machine():
    cores = os.cpu_count()
    assert job_threads("slurm", 16, {"SLURM_CPUS_PER_TASK": "8"}) == 8
    assert job_threads("local", 4, {"SLURM_CPUS_PER_TASK": "3"}) == 3
    assert job_threads("local", 2, {}) == max(1, cores // 2)
    assert job_threads("local", 1, {"SLURM_CPUS_PER_TASK": ""}) == cores
    assert job_threads("slurm", 16, {}) is None  # no Slurm variable: torch chooses


# -- event files and their folding ------------------------------------------------------


@pytest.fixture
def claimed(tmp_path):
    """A catalog whose one job is running, held by the pseudo-worker slurm-7."""
    home = Home(tmp_path / "h")
    catalog = Catalog(home.catalog)
    job = Job("k" * 20, "evaluate", "m", "SqueezeNet", {"val_set": "clean"})
    catalog.enqueue("exp", [job])
    assert catalog.claim_job("slurm-7", "cpu")["key"] == job.key
    return catalog, home, job.key


def _epoch(n: int) -> EpochMetrics:
    return EpochMetrics(n, loss=1.0 / n, train_acc=0.1 * n, val_acc=0.05 * n, lr=0.1, seconds=2.0)


def _count(catalog: Catalog, table: str) -> int:
    return catalog.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_partial_last_line_waits_for_its_newline(claimed):
    catalog, home, key = claimed
    recorder = EventRecorder(home.runs / key, "slurm-7")
    recorder.epoch(key, _epoch(1), 2)
    line = json.dumps({"type": "epoch", "worker": "slurm-7", "epoch": 2, "loss": 0.5,
                       "train_acc": 0.2, "val_acc": 0.1, "lr": 0.1, "seconds": 2.0}) + "\n"
    with open(recorder.path, "a") as fh:
        fh.write(line[:25])  # the writer is mid-line
    ingester = Ingester(catalog, home)
    assert ingester.fold([key]) == {key: None}
    assert [e["epoch"] for e in catalog.epochs(key)] == [1]
    with open(recorder.path, "a") as fh:
        fh.write(line[25:])
    ingester.fold([key])
    assert [e["epoch"] for e in catalog.epochs(key)] == [1, 2]


def test_a_line_cut_by_a_killed_writer_is_skipped(claimed):
    catalog, home, key = claimed
    EventRecorder(home.runs / key, "slurm-6").epoch(key, _epoch(1), 2)
    with open(home.runs / key / "events.jsonl", "a") as fh:
        fh.write('{"type": "epo')  # killed mid-write
    EventRecorder(home.runs / key, "slurm-7").epoch(key, _epoch(2), 2)  # the next attempt
    Ingester(catalog, home).fold([key])
    assert [e["epoch"] for e in catalog.epochs(key)] == [1, 2]


def test_folding_again_changes_nothing(claimed):
    catalog, home, key = claimed
    recorder = EventRecorder(home.runs / key, "slurm-7")
    recorder.write("started", host="node1", pid=1)
    for n in (1, 2):
        recorder.epoch(key, _epoch(n), 2)
    recorder.result(key, "t" * 20, "SqueezeNet", "clean", 0.5, 1.2, 60)
    recorder.write("heartbeat")
    catalog.db.execute("UPDATE jobs SET heartbeat = 0")
    ingester = Ingester(catalog, home)
    ingester.fold([key])
    assert catalog.job(key)["heartbeat"] > time.time() - 60  # the job's beats reached it
    before = [_count(catalog, t) for t in ("epochs", "results")]
    assert before == [2, 1]
    ingester.fold([key])
    Ingester(catalog, home).fold([key])  # a fresh one reads the file from its start
    assert [_count(catalog, t) for t in ("epochs", "results")] == before
    assert catalog.result(key)["accuracy"] == 0.5 and catalog.job(key)["status"] == "running"


def test_a_done_event_ends_the_job_of_its_worker_only(claimed):
    catalog, home, key = claimed
    EventRecorder(home.runs / key, "slurm-6").write("done", artifact="/old", cost={})
    ingester = Ingester(catalog, home)
    assert ingester.fold([key]) == {key: None}  # an earlier attempt's end
    assert catalog.job(key)["status"] == "running"
    EventRecorder(home.runs / key, "slurm-7").write(
        "done", artifact="/out", cost={"wall_s": 3.5, "cpu_s": 3.0, "peak_rss_mb": 100.0,
                                       "peak_gpu_mb": None, "gpu_hours": None})
    assert ingester.fold([key]) == {key: "done"}
    job = catalog.job(key)
    assert (job["status"], job["artifact"], job["wall_s"]) == ("done", "/out", 3.5)
    assert Ingester(catalog, home).fold([key]) == {key: None}  # already ended


def test_a_failed_event_fails_the_job_with_its_error(claimed):
    catalog, home, key = claimed
    EventRecorder(home.runs / key, "slurm-7").write("failed", error="ValueError: bad", cost={})
    assert Ingester(catalog, home).fold([key]) == {key: "failed"}
    assert (catalog.job(key)["status"], catalog.job(key)["error"]) == ("failed", "ValueError: bad")


# -- the executor's loop ------------------------------------------------------------------


def _queued(tmp_path, text: str):
    """What `ensui headless` does before running: the plan, recorded and queued."""
    spec_file = write(tmp_path, text)
    spec, home = load_spec(spec_file), Home(tmp_path / "h")
    catalog = Catalog(home.catalog)
    plan = make_plan(spec, catalog, spec_file)
    catalog.record_experiment(plan.experiment_id, spec.name, str(spec_file.resolve()),
                              text, [(j.key, j.member) for j in plan.jobs])
    catalog.enqueue(plan.experiment_id, plan.jobs)
    return spec, plan, catalog, home


ONE_MEMBER = SPEC.replace("  - deit_tiny_p16_224\n", "")


def _deadline(seconds: float):
    """A progress callback that stops a run going on too long (a failing test, not a hang)."""
    stop = time.time() + seconds

    def poll():
        if time.time() > stop:
            raise AssertionError(f"the run still goes on after {seconds} s")

    return poll


def test_a_job_that_dies_without_events_fails_naming_its_slurm_job(tmp_path, monkeypatch):
    def dies(*args):
        os._exit(1)  # like a node lost or an out-of-memory kill: no event written

    monkeypatch.setattr(slurm, "run_remote", dies)
    spec, plan, catalog, home = _queued(tmp_path, ONE_MEMBER)
    slurm.run_on_slurm(spec, plan, catalog, home, _deadline(60))  # returns: all ended
    train = catalog.job(plan.of_kind("train")[0].key)
    assert (train["status"], train["attempts"]) == ("failed", MAX_ATTEMPTS)
    job_id = train["worker"].removeprefix("slurm-")
    log = home.root / "slurm" / f"{job_id}_0_log.err"
    assert f"Slurm job {job_id} ended" in train["error"] and str(log) in train["error"]
    assert f"failed after {MAX_ATTEMPTS} attempts" in train["error"]
    evaluate = catalog.job(plan.of_kind("evaluate")[0].key)
    assert evaluate["status"] == "failed" and "needs failed" in evaluate["error"]


def test_interrupt_cancels_the_slurm_jobs_and_requeues_theirs(tmp_path, monkeypatch):
    def sleeps(*args):
        time.sleep(120)

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(slurm, "run_remote", sleeps)
    spec, plan, catalog, home = _queued(tmp_path, SPEC)
    with pytest.raises(KeyboardInterrupt):
        slurm.run_on_slurm(spec, plan, catalog, home, interrupt)
    trains = [catalog.job(j.key) for j in plan.of_kind("train")]
    assert [(j["status"], j["error"]) for j in trains] == [("queued", slurm.INTERRUPTED)] * 2
    for job in trains:  # the controller (its pid is the job id) was stopped
        pid = int(re.search(r"(\d+)_0_log\.err", job["log"]).group(1))
        assert _ends(pid), f"submitit job {pid} still runs"


def test_a_cancel_from_the_user_stops_the_slurm_job(tmp_path, monkeypatch):
    def sleeps(*args):
        time.sleep(120)

    monkeypatch.setattr(slurm, "run_remote", sleeps)
    spec, plan, catalog, home = _queued(tmp_path, ONE_MEMBER)
    train = plan.of_kind("train")[0].key
    deadline = _deadline(60)

    def cancel():  # `ensui cancel`
        catalog.cancel_job(train, "not needed")
        deadline()

    slurm.run_on_slurm(spec, plan, catalog, home, cancel)
    job = catalog.job(train)
    assert (job["status"], job["error"]) == ("cancelled", "not needed")
    assert catalog.job(plan.of_kind("evaluate")[0].key)["status"] == "failed"
    assert _ends(int(job["worker"].removeprefix("slurm-")))


def _ends(pid: int, within_s: float = 15.0) -> bool:
    """Whether the process exits (is gone or a zombie) within `within_s`."""
    stop = time.time() + within_s
    while time.time() < stop:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.2)
    return False


def test_without_submitit_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails
    with pytest.raises(EnsuiError, match=r"pip install 'ensui\[slurm\]'"):
        slurm.run_on_slurm(None, None, None, None, lambda: None)
