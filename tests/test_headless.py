"""`ensui headless` end to end on the embedded digits: tiny real runs, through the CLI."""

import json
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import write

SPEC = """\
name: smoke
training: {epochs: 1, batch_size: 64, crop_scale: [0.5, 1.0], hflip: 0.0}
validation: {sets: [clean, noise, contrast], severities: [2], limit: 120}
members:
  - SqueezeNet
  - model: MNASNET_1
    name: mnas
  - deit_tiny_p16_224
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real run shared by the tests below (training is the slow part)."""
    root = tmp_path_factory.mktemp("headless")
    spec = write(root, SPEC)
    home = root / "home"
    proc = subprocess.run([sys.executable, "-m", "ensui", "--home", str(home), "headless",
                           "--spec", str(spec), "--json"], capture_output=True, text=True,
                          timeout=900)
    return spec, home, proc


def test_run_prints_json_table_and_exits_0(finished):
    _, _, proc = finished
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["sets"] == ["clean", "noise", "contrast"]
    members = {m["member"]: m for m in data["members"]}
    assert set(members) == {"SqueezeNet", "mnas", "deit_tiny_p16_224"}
    assert members["mnas"]["model_id"] == "MNASNET_1"
    assert members["mnas"]["reported_top1"] == 54.408
    for m in members.values():
        assert m["status"] == "done"
        assert all(0 <= acc <= 100 for acc in m["accuracy"].values())
    assert "epoch 1/1" in proc.stderr  # progress goes to stderr


def test_catalog_records_jobs_epochs_and_results(finished):
    _, home, _ = finished
    conn = sqlite3.connect(home / "catalog.db")
    statuses = conn.execute("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status").fetchall()
    assert sorted(statuses) == [("evaluate", "done", 9), ("train", "done", 3)]
    assert conn.execute("SELECT count(*) FROM epochs").fetchone()[0] == 3
    sizes = dict(conn.execute("SELECT val_set, max(n) FROM results GROUP BY val_set").fetchall())
    # noise pools its 3 corruptions at the one chosen severity
    assert sizes == {"clean": 120, "noise": 360, "contrast": 120}


def test_outputs_cached_with_sample_order(finished):
    _, home, _ = finished
    conn = sqlite3.connect(home / "catalog.db")
    folder, = conn.execute(
        "SELECT j.artifact FROM jobs j JOIN results r ON r.job_key = j.key "
        "WHERE r.val_set = 'noise' AND r.model_id = 'MNASNET_1'").fetchone()
    from pathlib import Path

    logits = np.load(Path(folder) / "logits.npy")
    ids = np.load(Path(folder) / "ids.npy")
    labels = np.load(Path(folder) / "labels.npy")
    assert logits.dtype == np.float16 and logits.shape == (360, 10)
    assert ids[0].startswith("gaussian_noise/2/") and ids[-1].startswith("impulse_noise/2/")
    assert len(set(ids)) == 360 and labels.shape == (360,)
    (acc,) = conn.execute("SELECT accuracy FROM results r WHERE r.val_set = 'noise' "
                          "AND r.model_id = 'MNASNET_1'").fetchone()
    assert acc == pytest.approx((logits.astype(np.float32).argmax(1) == labels).mean(), abs=1e-2)


def test_rerun_skips_everything_and_recomputes_a_damaged_artifact(finished):
    spec, home, first = finished
    conn = sqlite3.connect(home / "catalog.db")
    (folder,) = conn.execute("SELECT artifact FROM jobs WHERE kind = 'evaluate' LIMIT 1").fetchone()
    from pathlib import Path

    damaged = Path(folder) / "logits.npy"
    damaged.write_bytes(damaged.read_bytes()[:-40])  # truncated
    proc = subprocess.run([sys.executable, "-m", "ensui", "--home", str(home), "headless",
                           "--spec", str(spec), "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "epoch" not in proc.stderr  # nothing trained again
    assert proc.stderr.count("cached") == 11  # 3 trainings + 8 of 9 evaluations
    assert np.load(damaged).shape[1] == 10  # rewritten whole
    assert json.loads(proc.stdout)["members"] == json.loads(first.stdout)["members"]


def test_dry_run_prints_plan_and_writes_nothing(cli, tmp_path, home):
    spec = write(tmp_path, SPEC)
    code, out, _ = cli("headless", "--spec", spec, "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and len(plan["jobs"]) == 12
    assert {j["state"] for j in plan["jobs"]} == {"new"}
    assert not home.exists()


def test_failed_member_exits_1_and_others_finish(cli, tmp_path, home):
    spec = write(tmp_path, textwrap.dedent("""\
        name: diverge
        training: {epochs: 1, batch_size: 128}
        validation: {sets: [clean], limit: 50}
        members:
          - model: SqueezeNet
            lr: 1.0e+12
          - model: SqueezeNet
            name: ok
        """))
    code, out, err = cli("headless", "--spec", spec, "--json")
    assert code == 1
    members = {m["member"]: m for m in json.loads(out)["members"]}
    assert members["ok"]["status"] == "done" and members["ok"]["accuracy"]["clean"] is not None
    assert members["SqueezeNet"]["status"] == "failed"
    assert "loss became" in " ".join(members["SqueezeNet"]["errors"])
    assert "Traceback" not in err


def test_interrupt_then_rerun_resumes(tmp_path):
    """SIGINT mid-training: exit 130, the job goes back to queued, a re-run finishes it."""
    import signal
    import time

    spec = write(tmp_path, textwrap.dedent("""\
        name: interrupt
        training: {epochs: 12, batch_size: 64}
        validation: {sets: [clean], limit: 50}
        members: [SqueezeNet]
        """))
    home = tmp_path / "home"
    args = [sys.executable, "-m", "ensui", "--home", str(home), "headless", "--spec", str(spec)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    db = home / "catalog.db"
    while time.time() < deadline:  # wait for two finished epochs
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT count(*) FROM epochs").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command to resume" in err and "Traceback" not in err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM jobs WHERE kind = 'train'").fetchone()[0] == "queued"
    kept = conn.execute("SELECT max(epoch) FROM epochs").fetchone()[0]
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    first_resumed = int(again.stderr.split("epoch ")[1].split("/")[0])
    # resumed after the last recorded epoch (or the one whose checkpoint beat its record)
    assert kept + 1 <= first_resumed <= kept + 2, (kept, again.stderr)
    assert "epoch 12/12" in again.stderr


def test_study_is_printed_and_recorded(finished):
    _, home, proc = finished
    study = json.loads(proc.stdout)["study"]
    figure = study["figure_b"]
    assert figure["sets"] == ["clean", "noise", "contrast"]
    assert figure["metrics"] == ["label_disagreement", "q_diversity", "double_fault_diversity",
                                 "kw_variance", "average_accuracy"]
    assert [len(row) for row in figure["values"]] == [3] * 5
    assert study["teams"][0]["teams"] == 4  # three pairs and one triple
    conn = sqlite3.connect(home / "catalog.db")
    assert conn.execute("SELECT count(*) FROM team_results").fetchone()[0] == 12
    assert conn.execute("SELECT count(*) FROM figure_b").fetchone()[0] == 15
    from ensui.engine.diversity.prediction import PAIRWISE, PROBABILITY

    stored = conn.execute("SELECT count(*) FROM pairwise WHERE val_set = 'clean'").fetchone()[0]
    assert stored == len(PAIRWISE) + len(PROBABILITY)  # one member x member matrix each


def test_study_numbers_match_the_cached_outputs(finished):
    """An independent recomputation of one team's accuracy and disagreement from the files."""
    from pathlib import Path

    _, home, _ = finished
    conn = sqlite3.connect(home / "catalog.db")
    folders = dict(conn.execute(
        "SELECT j.member, j.artifact FROM jobs j JOIN results r ON r.job_key = j.key "
        "WHERE r.val_set = 'noise'").fetchall())
    logits = {m: np.load(Path(f) / "logits.npy").astype(np.float64) for m, f in folders.items()}
    labels = np.load(Path(folders["mnas"]) / "labels.npy")
    probs = {m: np.exp(z - z.max(1, keepdims=True)) for m, z in logits.items()}
    probs = {m: p / p.sum(1, keepdims=True) for m, p in probs.items()}
    mean = (probs["SqueezeNet"] + probs["mnas"]) / 2
    accuracy, diversity = conn.execute(
        "SELECT accuracy, diversity FROM team_results WHERE val_set = 'noise' "
        "AND team = 'SqueezeNet + mnas'").fetchone()
    assert accuracy == pytest.approx((mean.argmax(1) == labels).mean())
    disagreement = (logits["SqueezeNet"].argmax(1) != logits["mnas"].argmax(1)).mean()
    assert json.loads(diversity)["label_disagreement"] == pytest.approx(disagreement)
