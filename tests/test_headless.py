"""`ensui headless` end to end on the embedded digits: tiny real runs, through the CLI."""

import json
import sqlite3
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import write

SPEC = """\
name: smoke
training: {epochs: 1, batch_size: 64, crop_scale: [0.5, 1.0], hflip: 0.0}
validation: {sets: [clean, noise, contrast], severities: [2], limit: 120}
analysis:
  reference_member: SqueezeNet
  attribution: {samples: 24, n_steps: 8, methods: [integrated_gradients, saliency]}
  activation: {samples: 100, batch_size: 32}
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
    assert sorted(statuses) == [("activations", "done", 9), ("attribute", "done", 18),
                                ("evaluate", "done", 9), ("study", "done", 1),
                                ("train", "done", 3)]
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


def test_rerun_skips_everything_and_recomputes_a_damaged_artifact(finished, ensui):
    spec, home, first = finished
    conn = sqlite3.connect(home / "catalog.db")
    (folder,) = conn.execute("SELECT artifact FROM jobs WHERE kind = 'evaluate' LIMIT 1").fetchone()
    from pathlib import Path

    damaged = Path(folder) / "logits.npy"
    damaged.write_bytes(damaged.read_bytes()[:-40])  # truncated
    (maps_folder,) = conn.execute("SELECT artifact FROM jobs WHERE kind = 'attribute' "
                                  "LIMIT 1").fetchone()
    maps = Path(maps_folder) / "maps.npy"
    before = np.load(maps)
    maps.write_bytes(maps.read_bytes()[:-40])
    # in this process (no worker): what is cached, and what is not, is the point
    proc = ensui(home, "headless", "--spec", spec, "--json", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert "epoch" not in proc.stderr  # nothing trained again
    # all but the two damaged jobs and the study they made stale
    assert proc.stderr.count("cached") == 11 + 9 + 17
    assert np.load(damaged).shape[1] == 10  # rewritten whole
    np.testing.assert_array_equal(np.load(maps), before)  # recomputed, the same
    def results(stdout):  # a recomputed job costs again: compare what was measured
        return [{k: v for k, v in m.items() if k != "cost"} for m in json.loads(stdout)["members"]]

    assert results(proc.stdout) == results(first.stdout)


def test_dry_run_prints_plan_and_writes_nothing(cli, tmp_path, home):
    spec = write(tmp_path, SPEC)
    code, out, _ = cli("headless", "--spec", spec, "--dry-run", "--json")
    plan = json.loads(out)
    # + features, 2 attribution methods, the study
    assert code == 0 and len(plan["jobs"]) == 12 + 9 + 18 + 1
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


def test_interrupt_then_rerun_resumes(tmp_path, ensui):
    """SIGINT mid-training: exit 130, the job goes back to queued, a re-run finishes it."""
    import signal
    import time

    spec = write(tmp_path, textwrap.dedent("""\
        name: interrupt
        training: {epochs: 8, batch_size: 64}
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
    again = ensui(home, *args[5:])  # the re-run in this process: no second torch import
    assert again.returncode == 0, again.stderr
    first_resumed = int(again.stderr.split("epoch ")[1].split("/")[0])
    # resumed after the last recorded epoch (or the one whose checkpoint beat its record)
    assert kept + 1 <= first_resumed <= kept + 2, (kept, again.stderr)
    assert "epoch 8/8" in again.stderr
    attempts = dict(sqlite3.connect(db).execute("SELECT kind, attempts FROM jobs").fetchall())
    assert attempts["train"] == 1  # re-queued by the interrupt, resumed once: no job twice
    assert attempts["evaluate"] == 1 and "cached" not in again.stderr


def test_study_is_printed_and_recorded(finished):
    _, home, proc = finished
    study = json.loads(proc.stdout)["study"]
    figure = study["figure_b"]
    assert figure["sets"] == ["clean", "noise", "contrast"]
    assert figure["metrics"] == ["label_disagreement", "attribution_diversity",
                                 "activation_diversity", "average_accuracy"]
    assert [len(row) for row in figure["values"]] == [3] * 4
    assert study["teams"][0]["teams"] == 4  # three pairs and one triple
    assert study["choices"]["attribution"]["methods"] == ["integrated_gradients", "saliency"]
    assert study["choices"]["activation"]["estimator"] == "unbiased"
    conn = sqlite3.connect(home / "catalog.db")
    assert conn.execute("SELECT count(*) FROM team_results").fetchone()[0] == 12
    assert conn.execute("SELECT count(*) FROM figure_b").fetchone()[0] == 12
    from ensui.engine.diversity.prediction import PAIRWISE, PROBABILITY

    stored = conn.execute("SELECT count(*) FROM pairwise WHERE val_set = 'clean'").fetchone()[0]
    # one member x member matrix each, + activation and attribution (first and per method)
    assert stored == len(PAIRWISE) + len(PROBABILITY) + 4


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


@pytest.fixture
def ensui(cli):
    """`ensui --home HOME ARGS` in this process (a new one would import torch again); its
    (returncode, stdout, stderr)."""
    def run(home, *args):
        code, out, err = cli("--home", home, *args)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


def test_export_every_table(finished, tmp_path, ensui):
    import csv

    _, home, _ = finished
    proc = ensui(home, "export", "smoke", "--out", tmp_path / "csv")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "csv").iterdir())
    assert names == ["correlations.csv", "corruption_errors.csv", "epochs.csv", "members.csv",
                     "pairwise.csv", "resilience.csv", "teams.csv"]
    with open(tmp_path / "csv" / "members.csv") as fh:
        members = list(csv.DictReader(fh))
    assert len(members) == 9 and {m["val_set"] for m in members} == {"clean", "noise", "contrast"}
    proc = ensui(home, "export", "smoke", "--format", "json", "--out", tmp_path / "json")
    teams = json.loads((tmp_path / "json" / "teams.json").read_text())
    assert len(teams) == 12 and "label_disagreement" in teams[0]
    pairwise = json.loads((tmp_path / "json" / "pairwise.json").read_text())
    assert len(pairwise) == 3 * 13 * 9  # sets x metrics x (3 x 3 members)


def test_plot_writes_png_and_pdf(finished, tmp_path, ensui):
    _, home, _ = finished
    proc = ensui(home, "plot", "smoke", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    png = (tmp_path / "figure_b.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (tmp_path / "figure_b.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "pairwise-noise-label_disagreement.png").exists()


def test_unknown_experiment_and_format_are_clear(finished, ensui):
    _, home, _ = finished
    proc = ensui(home, "plot", "smok")
    assert proc.returncode == 2 and "did you mean 'smoke'" in proc.stderr
    proc = ensui(home, "export", "smoke", "--format", "xlsx")
    assert proc.returncode == 2 and "unknown format 'xlsx'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corruption_error_against_the_reference_member(finished):
    """CE recomputed from the cached files: error of mnas / error of the reference, per corruption."""
    from pathlib import Path

    _, home, proc = finished
    conn = sqlite3.connect(home / "catalog.db")
    errors = {}
    for member, folder in conn.execute(
            "SELECT j.member, j.artifact FROM jobs j JOIN results r ON r.job_key = j.key "
            "WHERE r.val_set = 'noise'"):
        logits, labels = np.load(Path(folder) / "logits.npy"), np.load(Path(folder) / "labels.npy")
        ids = np.load(Path(folder) / "ids.npy")
        wrong = logits.astype(np.float32).argmax(1) != labels
        errors[member] = {c: wrong[[i.startswith(c + "/") for i in ids]].mean()
                          for c in ("gaussian_noise", "shot_noise", "impulse_noise")}
    stored = dict(conn.execute(
        "SELECT corruption, ce FROM corruption_errors WHERE member = 'mnas'").fetchall())
    for corruption in ("gaussian_noise", "shot_noise", "impulse_noise"):
        expected = errors["mnas"][corruption] / errors["SqueezeNet"][corruption]
        assert stored[corruption] == pytest.approx(expected)
    assert set(stored) == {"gaussian_noise", "shot_noise", "impulse_noise", "contrast"}
    (team_ce,) = conn.execute("SELECT ce FROM corruption_errors WHERE member = "
                              "'SqueezeNet + mnas' AND corruption = 'shot_noise'").fetchone()
    folders = dict(conn.execute("SELECT j.member, j.artifact FROM jobs j JOIN results r "
                                "ON r.job_key = j.key WHERE r.val_set = 'noise'").fetchall())
    logits = {m: np.load(Path(f) / "logits.npy").astype(np.float64) for m, f in folders.items()}
    probs = {m: np.exp(z - z.max(1, keepdims=True)) for m, z in logits.items()}
    mean = sum(p / p.sum(1, keepdims=True) for m, p in probs.items() if m != "deit_tiny_p16_224")
    labels = np.load(Path(folders["mnas"]) / "labels.npy")
    shot = [i.startswith("shot_noise/") for i in np.load(Path(folders["mnas"]) / "ids.npy")]
    team_error = (mean.argmax(1) != labels)[shot].mean()
    assert team_ce == pytest.approx(team_error / errors["SqueezeNet"]["shot_noise"], rel=1e-6)
    study = json.loads(proc.stdout)["study"]
    reference = next(r for r in study["resilience"] if r["member"] == "SqueezeNet")
    assert reference["mce"] == pytest.approx(1.0) and reference["mce_alexnet"] is None


def test_parquet_export(finished, tmp_path, ensui):
    _, home, _ = finished
    proc = ensui(home, "export", "smoke", "--format", "parquet", "--out", tmp_path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert proc.returncode == 2 and "Parquet export needs pyarrow" in proc.stderr
        return
    assert proc.returncode == 0 and pq.read_table(tmp_path / "members.parquet").num_rows == 9


def _probe_arrays(home, kind: str, val_set: str, method: str | None = None) -> dict:
    from pathlib import Path

    conn = sqlite3.connect(home / "catalog.db")
    rows = conn.execute("SELECT member, artifact, params FROM jobs WHERE kind = ?", [kind])
    found = {}
    for member, folder, params in rows:
        params = json.loads(params)
        if params["val_set"] == val_set and params.get("method") == method:
            found[member] = {p.stem: np.load(p) for p in Path(folder).glob("*.npy")}
    return found


def test_attribution_and_activation_diversity_match_the_cached_arrays(finished):
    """Team values recomputed independently from the maps and features on disk."""
    from ensui.engine.diversity.activation import hsic

    _, home, _ = finished
    maps = _probe_arrays(home, "attribute", "noise", "integrated_gradients")
    a, b = maps["SqueezeNet"]["maps"].astype(np.float64), maps["mnas"]["maps"].astype(np.float64)
    assert a.shape == (24, 196) and np.array_equal(maps["SqueezeNet"]["ids"], maps["mnas"]["ids"])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    feats = _probe_arrays(home, "activations", "noise")
    x, y = (feats[m]["features"].astype(np.float64) for m in ("SqueezeNet", "mnas"))
    assert len(x) == 100
    batches = [slice(s, s + 32) for s in (0, 32, 64)]  # the last 4 rows are dropped
    kl, kk, ll = (np.mean([hsic(p[s] @ p[s].T, q[s] @ q[s].T) for s in batches])
                  for p, q in ((x, y), (x, x), (y, y)))
    conn = sqlite3.connect(home / "catalog.db")
    (diversity,) = conn.execute("SELECT diversity FROM team_results WHERE val_set = 'noise' "
                                "AND team = 'SqueezeNet + mnas'").fetchone()
    diversity = json.loads(diversity)
    assert diversity["attribution_diversity"] == pytest.approx(1 - cosine.mean())
    assert diversity["attribution_diversity:integrated_gradients"] == pytest.approx(
        1 - cosine.mean())
    assert diversity["activation_diversity"] == pytest.approx(1 - kl / np.sqrt(kk * ll))
    assert "attribution_diversity:saliency" in diversity


def test_attribution_targets_are_the_true_labels(finished):
    _, home, _ = finished
    maps = _probe_arrays(home, "attribute", "clean", "saliency")["deit_tiny_p16_224"]
    conn = sqlite3.connect(home / "catalog.db")
    (folder,) = conn.execute("SELECT j.artifact FROM jobs j JOIN results r ON r.job_key = j.key "
                             "WHERE r.val_set = 'clean' AND j.member = 'SqueezeNet'").fetchone()
    from pathlib import Path

    ids = list(np.load(Path(folder) / "ids.npy"))
    labels = np.load(Path(folder) / "labels.npy")
    expected = [labels[ids.index(i)] for i in maps["ids"]]
    assert maps["targets"].tolist() == expected


def test_ensemble_target_reuses_training_and_attributes_the_ensemble_prediction(finished, ensui):
    from pathlib import Path

    spec, home, _ = finished
    text = spec.read_text().replace("methods: [integrated_gradients, saliency]",
                                    "methods: [saliency], target: ensemble")
    other = write(spec.parent, text.replace("name: smoke", "name: smoke-ensemble"), "ensemble.yaml")
    proc = ensui(home, "headless", "--spec", other, "--json", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert "epoch" not in proc.stderr and proc.stderr.count("cached") == 3 + 9 + 9
    conn = sqlite3.connect(home / "catalog.db")
    outputs = dict(conn.execute(
        "SELECT j.member, j.artifact FROM jobs j JOIN results r ON r.job_key = j.key "
        "WHERE r.val_set = 'contrast'").fetchall())
    probs = 0
    for folder in outputs.values():
        z = np.load(Path(folder) / "logits.npy").astype(np.float32)
        e = np.exp(z - z.max(1, keepdims=True))
        probs = probs + e / e.sum(1, keepdims=True)
    ids = list(np.load(Path(outputs["mnas"]) / "ids.npy"))
    for params, folder in conn.execute("SELECT params, artifact FROM jobs WHERE kind = 'attribute'"):
        params = json.loads(params)
        if params["target"] == "ensemble" and params["val_set"] == "contrast":
            maps_ids = np.load(Path(folder) / "ids.npy")
            expected = [probs[ids.index(i)].argmax() for i in maps_ids]
            assert np.load(Path(folder) / "targets.npy").tolist() == expected
            assert len(params["target_from"]) == 3


def test_layer_cka_of_a_pair(finished, tmp_path, ensui):
    _, home, _ = finished
    proc = ensui(home, "cka", "smoke", "mnas", "mnas", "--samples", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    same = json.loads(proc.stdout)
    assert same["rows"] == same["cols"] and same["rows"][-1] == "penultimate"
    np.testing.assert_allclose(np.diag(same["values"]), 1.0, atol=1e-9)  # a layer with itself
    proc = ensui(home, "cka", "smoke", "SqueezeNet", "deit_tiny_p16_224", "--set", "noise",
                  "--samples", "64", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "block4" in proc.stdout and "features.12" in proc.stdout
    assert (tmp_path / "layer-cka-noise-SqueezeNet-deit_tiny_p16_224.png").is_file()
    proc = ensui(home, "cka", "smoke", "mnas", "resnet")
    assert proc.returncode == 2 and "'resnet' is not a member" in proc.stderr
    assert "Traceback" not in proc.stderr
